package telegram_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/telegram"
	"github.com/leadproxy/leadproxy/crm/telegram/telegramtest"
	"github.com/leadproxy/leadproxy/lead"
)

func provisioned(t *testing.T, block string) *telegram.Telegram {
	return crmtest.ProvisionedAs(t, new(telegram.Telegram), block)
}

// Every lead value is escaped: the Bot API parses the text as HTML, and the
// chat shows the values as typed.
func TestEscapedValues(t *testing.T) {
	f := telegramtest.New()
	defer f.Close()
	tg := provisioned(t, "telegram {\nbase_url "+f.URL+"\ntoken "+telegramtest.Token+"\nchat "+telegramtest.User+
		"\ntemplate `<b>{lead.form}</b> from {lead.name}\n{lead.fields}\n{lead.page} · {lead.source}`\n}")
	l := crmtest.SampleLead()
	l.Form = "Call <b>me</b> & \"co\""
	l.Name = "</b><script>x</script>&amp;"
	l.Extra = map[string]string{"question": "a > b?"}
	l.Visit.Page = "https://example.com/?a=1&b=<2>"
	id, err := crmtest.Send(tg, l)
	if err != nil {
		t.Fatal(err)
	}
	sent := f.Sent.All()
	if len(sent) != 1 || id != telegramtest.User+":1" {
		t.Fatalf("id %q, sent %+v", id, sent)
	}
	m := sent[0]
	if m.ParseMode != "HTML" || m.ChatID != telegramtest.User {
		t.Errorf("message %+v", m.Message)
	}
	want := "Call <b>me</b> & \"co\" from </b><script>x</script>&amp;\n" +
		"name: </b><script>x</script>&amp;\nphone: +7 (999) 123-45-67\nemail: ivan@example.com\ncomment: Перезвоните после 18:00\nquestion: a > b?\n" +
		"https://example.com/?a=1&b=<2> · yandex"
	if m.Plain != want {
		t.Errorf("the chat shows\n%q\nwant\n%q", m.Plain, want)
	}
	if !strings.HasPrefix(m.Text, "<b>Call &lt;b&gt;me&lt;/b&gt; &amp; &#34;co&#34;</b>") {
		t.Errorf("text %q", m.Text)
	}
}

// 429 with parameters.retry_after is retried after that long.
func TestRetryAfter(t *testing.T) {
	f := telegramtest.New()
	defer f.Close()
	tg := provisioned(t, "telegram {\nbase_url "+f.URL+"\ntoken "+telegramtest.Token+"\nchat "+telegramtest.User+"\n}")
	f.Flood(telegramtest.User, 35)
	_, err := crmtest.Send(tg, crmtest.SampleLead())
	var se *lead.SendError
	if !errors.As(err, &se) || se.Permanent || se.RetryAfter != 35*time.Second || se.Status != 429 {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), "Too Many Requests: retry after 35") {
		t.Errorf("err = %v", err)
	}
}

// A chat the bot is not in (a mistyped id) or that blocked it is a
// permanent failure, named in the error.
func TestPermanent(t *testing.T) {
	f := telegramtest.New()
	defer f.Close()
	tg := provisioned(t, "telegram {\nbase_url "+f.URL+"\ntoken "+telegramtest.Token+"\nchat 999\n}")
	_, err := crmtest.Send(tg, crmtest.SampleLead())
	if !lead.IsPermanent(err) || lead.HTTPStatusOf(err) != 400 || !strings.Contains(err.Error(), "chat 999: HTTP 400: Bad Request: chat not found") {
		t.Errorf("unknown chat: err = %v", err)
	}
	f.Block(telegramtest.User)
	tg = provisioned(t, "telegram {\nbase_url "+f.URL+"\ntoken "+telegramtest.Token+"\nchat "+telegramtest.User+"\n}")
	if _, err := crmtest.Send(tg, crmtest.SampleLead()); !lead.IsPermanent(err) || !strings.Contains(err.Error(), "bot was blocked") {
		t.Errorf("blocked: err = %v", err)
	}
	tg = provisioned(t, "telegram {\nbase_url "+f.URL+"\ntoken 123456789:wrong\nchat "+telegramtest.User+"\n}")
	_, err = crmtest.Send(tg, crmtest.SampleLead())
	if !lead.IsPermanent(err) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong token: err = %v", err)
	}
}

// When one chat fails after another took the alert, the retry alerts only
// the chat still missing it.
func TestPartialRetry(t *testing.T) {
	f := telegramtest.New()
	defer f.Close()
	tg := provisioned(t, "telegram {\nbase_url "+f.URL+"\ntoken "+telegramtest.Token+"\nchat "+telegramtest.User+" "+telegramtest.Group+"\n}")
	l := crmtest.SampleLead()
	f.Flood(telegramtest.Group, 3)
	if _, err := crmtest.Send(tg, l); err == nil || lead.IsPermanent(err) {
		t.Fatalf("first attempt: %v", err)
	}
	id, err := crmtest.Send(tg, l)
	if err != nil {
		t.Fatal(err)
	}
	if id != telegramtest.User+":1,"+telegramtest.Group+":2" {
		t.Errorf("id = %q", id)
	}
	var chats []string
	for _, m := range f.Sent.All() {
		chats = append(chats, m.ChatID)
	}
	if strings.Join(chats, " ") != telegramtest.User+" "+telegramtest.Group {
		t.Errorf("messages went to %v", chats)
	}
	// A resend (a new delivery of the same lead) alerts every chat again.
	if _, err := crmtest.Send(tg, l); err != nil || f.Sent.Len() != 4 {
		t.Errorf("resend: %v, %d messages", err, f.Sent.Len())
	}
}

func TestConfigErrors(t *testing.T) {
	for block, want := range map[string]string{
		"telegram {\ntoken {env.X}\nchat abc\n}":                    "chat: \"abc\" is not a chat id",
		"telegram {\ntoken {env.X}\ntemplate {lead.nam}\nchat 1\n}": "template: unknown placeholder {lead.nam}",
	} {
		err := new(telegram.Telegram).UnmarshalCaddyfile(caddyfile.NewTestDispenser(block))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Testfile:3") {
			t.Errorf("%q: err = %v, want %q at Testfile:3", block, err, want)
		}
	}
	tg := &telegram.Telegram{Token: "not-a-token-secret", Chats: []string{"1"}}
	if err := tg.Provision(caddy.Context{}); err == nil || strings.Contains(err.Error(), "not-a-token-secret") || !strings.Contains(err.Error(), "telegram: token") {
		t.Errorf("bad token: err = %v", err)
	}
	tg = &telegram.Telegram{Token: telegramtest.Token, Chats: []string{"1"}}
	if err := tg.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if n, per := tg.DefaultRate(); n != 1 || per != time.Second {
		t.Errorf("a user chat: DefaultRate = %d/%v, want 1/1s", n, per)
	}
}

// A heredoc gives a several-line template, its indentation dropped.
func TestHeredocTemplate(t *testing.T) {
	tg := new(telegram.Telegram)
	err := tg.UnmarshalCaddyfile(caddyfile.NewTestDispenser("telegram {\n\ttoken {env.X}\n\tchat 1\n\ttemplate <<TEXT\n\t\tЗаявка: <b>{lead.form}</b>\n\t\t{lead.fields}\n\t\tTEXT\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if tg.Template != "Заявка: <b>{lead.form}</b>\n{lead.fields}" {
		t.Errorf("template %q", tg.Template)
	}
}
