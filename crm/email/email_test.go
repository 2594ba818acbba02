package email_test

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/email"
	"github.com/leadproxy/leadproxy/crm/email/emailtest"
	"github.com/leadproxy/leadproxy/lead"
)

func start(t *testing.T, implicit bool) *emailtest.Server {
	t.Helper()
	s, err := emailtest.Start(t.TempDir(), implicit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func provisioned(t *testing.T, block string) *email.Email {
	return crmtest.ProvisionedAs(t, new(email.Email), block)
}

func testLead() *lead.Lead {
	l := crmtest.SampleLead()
	l.ID = "01KBHX3V6Q0000000000000000"
	l.CreatedAt = time.Date(2026, 12, 3, 9, 41, 5, 0, time.UTC)
	l.Form = "Обратный звонок"
	l.Extra = map[string]string{"city": "Москва <центр>"}
	return l
}

// The message, headers and both bodies, byte for byte, through implicit
// TLS and STARTTLS alike.
func TestMessageBytes(t *testing.T) {
	for _, implicit := range []bool{true, false} {
		s := start(t, implicit)
		e := provisioned(t, "email {\n"+s.Caddyfile()+"\nsubject \"Заявка: {lead.form} ({lead.phone})\"\ntemplate `<b>{lead.form}</b>\n{lead.fields}\n{lead.page}`\n}")
		id, err := crmtest.Send(e, testLead())
		if err != nil {
			t.Fatalf("implicit=%v: %v", implicit, err)
		}
		if id != "<01KBHX3V6Q0000000000000000@leadproxy>" {
			t.Errorf("id %q", id)
		}
		got := s.Received.All()
		if len(got) != 1 {
			t.Fatalf("%d messages", len(got))
		}
		m := got[0]
		if m.From != emailtest.From || strings.Join(m.To, " ") != "sales@example.com boss@example.com" {
			t.Errorf("envelope %s → %v", m.From, m.To)
		}
		head, plain, htmlPart := parts(t, m.Data)
		if head != wantHead {
			t.Errorf("implicit=%v: headers\n%s\nwant\n%s", implicit, head, wantHead)
		}
		if plain != wantPlain {
			t.Errorf("implicit=%v: text/plain\n%q\nwant\n%q", implicit, plain, wantPlain)
		}
		if htmlPart != wantHTML {
			t.Errorf("implicit=%v: text/html\n%q\nwant\n%q", implicit, htmlPart, wantHTML)
		}
	}
}

const wantHead = "Date: Thu, 03 Dec 2026 09:41:05 +0000\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Message-ID: <01KBHX3V6Q0000000000000000@leadproxy>\r\n" +
	"Subject:\r\n" +
	" =?UTF-8?q?=D0=97=D0=B0=D1=8F=D0=B2=D0=BA=D0=B0:_=D0=9E=D0=B1=D1=80=D0=B0?=\r\n" +
	" =?UTF-8?q?=D1=82=D0=BD=D1=8B=D0=B9_=D0=B7=D0=B2=D0=BE=D0=BD=D0=BE=D0=BA_(?=\r\n" +
	" =?UTF-8?q?+7_(999)_123-45-67)?=\r\n" +
	"User-Agent: leadproxy\r\n" +
	"X-Mailer: leadproxy\r\n" +
	"From: <alerts@example.com>\r\n" +
	"To: <sales@example.com>, <boss@example.com>\r\n" +
	"Reply-To: <ivan@example.com>\r\n" +
	"Content-Type: multipart/alternative;\r\n" +
	" boundary=leadproxy-01KBHX3V6Q0000000000000000"

const wantPlain = "Обратный звонок\r\n" +
	"name: Иван Петров\r\n" +
	"phone: +7 (999) 123-45-67\r\n" +
	"email: ivan@example.com\r\n" +
	"comment: Перезвоните после 18:00\r\n" +
	"city: Москва <центр>\r\n" +
	"https://example.com/contacts"

const wantHTML = "<!DOCTYPE html>\r\n<html><body>\r\n" +
	"<b>Обратный звонок</b><br>\r\n" +
	"name: Иван Петров<br>\r\n" +
	"phone: +7 (999) 123-45-67<br>\r\n" +
	"email: ivan@example.com<br>\r\n" +
	"comment: Перезвоните после 18:00<br>\r\n" +
	"city: Москва &lt;центр&gt;<br>\r\n" +
	"https://example.com/contacts\r\n" +
	"</body></html>\r\n"

// parts splits a message into its raw header block and its two decoded
// parts, checking each part's headers on the way.
func parts(t *testing.T, data []byte) (head, plain, html string) {
	t.Helper()
	h, _, ok := strings.Cut(string(data), "\r\n\r\n")
	if !ok {
		t.Fatalf("no header end in %q", data)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var bodies []string
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
			t.Errorf("part %v", p.Header)
		}
		b, err := io.ReadAll(quotedprintable.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, p.Header.Get("Content-Type")+"\n"+string(b))
	}
	if len(bodies) != 2 {
		t.Fatalf("%d parts", len(bodies))
	}
	pt, pb, _ := strings.Cut(bodies[0], "\n")
	ht, hb, _ := strings.Cut(bodies[1], "\n")
	if pt != "text/plain; charset=UTF-8" || ht != "text/html; charset=UTF-8" {
		t.Errorf("part types %q, %q", pt, ht)
	}
	return h, pb, hb
}

// A lead value with CR/LF adds no header: the subject folds it to a space,
// an email that is not exactly one address gives no Reply-To.
func TestHeaderInjection(t *testing.T) {
	s := start(t, true)
	e := provisioned(t, "email {\n"+s.Caddyfile()+"\nsubject \"Lead {lead.name}\"\n}")
	l := testLead()
	l.Name = "Eve\r\nBcc: victim@example.org\r\nX-Injected: 1"
	l.Email = "eve@example.org\r\nBcc: victim@example.org"
	if _, err := crmtest.Send(e, l); err != nil {
		t.Fatal(err)
	}
	m := s.Received.All()[0]
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Bcc", "X-Injected", "Reply-To"} {
		if v, ok := msg.Header[h]; ok {
			t.Errorf("header %s: %q", h, v)
		}
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if subj != "Lead Eve Bcc: victim@example.org X-Injected: 1" {
		t.Errorf("subject %q", subj)
	}
	if strings.Join(m.To, " ") != "sales@example.com boss@example.com" {
		t.Errorf("recipients %v", m.To)
	}
	for _, bad := range []string{"a@b.c, d@e.f", "Name <a@b.c>", "not an address", ""} {
		if r := email.ReplyTo(&lead.Lead{Email: bad}); r != "" {
			t.Errorf("ReplyTo(%q) = %q", bad, r)
		}
	}
	if r := email.ReplyTo(&lead.Lead{Email: "ivan@example.com"}); r != "ivan@example.com" {
		t.Errorf("ReplyTo = %q", r)
	}
}

// SMTP answers: 5xx permanent, 4xx and a dropped connection retried; the
// password never shows in an error.
func TestFailures(t *testing.T) {
	s := start(t, false)
	e := provisioned(t, "email {\n"+s.Caddyfile()+"\n}")
	for _, c := range []struct {
		fault     crmtest.Fault
		permanent bool
		want      string
	}{
		{crmtest.Unauthorized, true, "535"},
		{crmtest.Validation, true, "550"},
		{crmtest.RateJSON, false, "450"},
		{crmtest.ServerError, false, "451"},
		{crmtest.Unavailable, false, "421"},
		{crmtest.Reset, false, ""},
	} {
		s.Faults.Push(c.fault)
		_, err := crmtest.Send(e, testLead())
		if err == nil || lead.IsPermanent(err) != c.permanent || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want permanent=%v with %q", c.fault, err, c.permanent, c.want)
		}
		if err != nil && strings.Contains(err.Error(), emailtest.Password) {
			t.Errorf("%s: the password in %v", c.fault, err)
		}
	}
	// A recipient the server refuses is permanent too.
	e = provisioned(t, crmtest.Block("email", s.Caddyfile(), "to nobody@elsewhere.test"))
	if _, err := crmtest.Send(e, testLead()); !lead.IsPermanent(err) {
		t.Errorf("refused recipient: err = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for block, want := range map[string]string{
		"email {\nserver smtp.example.com\n}":       `server: "smtp.example.com": want <host>:<port>`,
		"email {\nserver a:25\ntls none\n}":         `tls: want implicit or starttls, got "none"`,
		"email {\nserver a:25\nto bob\n}":           `to: "bob" is not an email address`,
		"email {\nserver a:25\nsubject {lead.x}\n}": "unknown placeholder {lead.x}",
	} {
		err := new(email.Email).UnmarshalCaddyfile(caddyfile.NewTestDispenser(block))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ", at Testfile:") {
			t.Errorf("%q: err = %v, want %q with file and line", block, err, want)
		}
	}
	e := &email.Email{Server: "a:25", From: "a@b.c", To: []string{"d@e.f"}, Username: "u"}
	if err := e.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "username and password go together") {
		t.Errorf("username alone: %v", err)
	}
	e = &email.Email{Server: "a:25", From: "a@b.c", To: []string{"d@e.f"}, CAFile: "/nonexistent.pem"}
	if err := e.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("ca_file: %v", err)
	}
}

// The dry run's preview is the message the server then receives, byte for
// byte, with the envelope, and previewing sends nothing.
func TestPreviewIsTheMessage(t *testing.T) {
	s := start(t, false)
	e := provisioned(t, "email {\n"+s.Caddyfile()+"\n}")
	l := testLead()
	p := crmtest.Preview(t, e, l)
	if n := len(s.Received.All()); n != 0 {
		t.Fatalf("preview sent %d messages", n)
	}
	if _, err := crmtest.Send(e, l); err != nil {
		t.Fatal(err)
	}
	got := s.Received.All()
	if len(p) != 1 || len(got) != 1 {
		t.Fatalf("%d previews, %d messages", len(p), len(got))
	}
	if p[0].Method != "SMTP" || !strings.HasPrefix(p[0].URL, "smtp://") {
		t.Errorf("preview %s %s", p[0].Method, p[0].URL)
	}
	if p[0].Header["MAIL FROM"][0] != got[0].From || strings.Join(p[0].Header["RCPT TO"], " ") != strings.Join(got[0].To, " ") {
		t.Errorf("envelope %v, received %s → %v", p[0].Header, got[0].From, got[0].To)
	}
	if p[0].Body != string(got[0].Data) {
		t.Errorf("preview\n%q\nreceived\n%q", p[0].Body, got[0].Data)
	}
}
