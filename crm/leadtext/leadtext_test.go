package leadtext

import (
	"strings"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
)

func sample() *lead.Lead {
	return &lead.Lead{
		ID: "01J0000000000000000000000A", CreatedAt: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC),
		Form: "Call <me> & co", Name: "Иван <b>", Phone: "+79991234567", Email: "ivan@example.com",
		Comment: "after 6 pm\nplease", Extra: map[string]string{"city": "Москва", "z": " "},
		Visit: &lead.Visit{Page: "https://example.com/?a=1&b=2", Referrer: "https://ya.ru/search",
			UTM: map[string]string{"campaign": "spring"}},
	}
}

func TestRender(t *testing.T) {
	tpl, err := Parse("New <b>{lead.form}</b> a<b & {lead.field.city}\n{lead.fields}\n{lead.page} {lead.source} {lead.utm.campaign} {lead.created}")
	if err != nil {
		t.Fatal(err)
	}
	l := sample()
	wantHTML := "New <b>Call &lt;me&gt; &amp; co</b> a&lt;b &amp; Москва\n" +
		"name: Иван &lt;b&gt;\nphone: +79991234567\nemail: ivan@example.com\ncomment: after 6 pm\nplease\ncity: Москва\n" +
		"https://example.com/?a=1&amp;b=2 ya.ru spring 2026-12-03T09:00:00Z"
	if got := tpl.HTML(l); got != wantHTML {
		t.Errorf("HTML:\n%q\nwant\n%q", got, wantHTML)
	}
	wantText := "New Call <me> & co a<b & Москва\n" +
		"name: Иван <b>\nphone: +79991234567\nemail: ivan@example.com\ncomment: after 6 pm\nplease\ncity: Москва\n" +
		"https://example.com/?a=1&b=2 ya.ru spring 2026-12-03T09:00:00Z"
	if got := tpl.Text(l); got != wantText {
		t.Errorf("Text:\n%q\nwant\n%q", got, wantText)
	}
	if got := tpl.HTMLBody(l); !strings.Contains(got, "Москва<br>\nname:") {
		t.Errorf("HTMLBody: %q", got)
	}
	l.Visit.UTM["source"] = "yandex"
	if Source(l) != "yandex" {
		t.Errorf("Source = %q", Source(l))
	}
	if Source(&lead.Lead{}) != "" {
		t.Error("no visit: a source")
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"{lead.nme}":    "unknown placeholder {lead.nme}",
		"{lead.field}":  "unknown placeholder {lead.field}",
		"{lead.name.x}": "unknown placeholder",
		"hi {lead.name": `malformed placeholder "{lead.name"`,
		"bad \xff":      "UTF-8",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", in, err, want)
		}
	}
	if tpl, err := Parse(""); err != nil || !strings.Contains(tpl.Text(sample()), "Новая заявка: Call <me> & co") {
		t.Errorf("default: %v", err)
	}
}

func TestClip(t *testing.T) {
	l := &lead.Lead{Comment: strings.Repeat("я", MaxValue+5)}
	tpl, _ := Parse("{lead.comment}")
	if got := tpl.Text(l); got != strings.Repeat("я", MaxValue)+"…" {
		t.Errorf("clip: %d runes", len([]rune(got)))
	}
}

func FuzzParse(f *testing.F) {
	f.Add("<b>{lead.form}</b> {lead.field.x} <i")
	f.Fuzz(func(t *testing.T, s string) {
		tpl, err := Parse(s)
		if err != nil {
			return
		}
		out := tpl.HTML(sample())
		if strings.Contains(out, "<me>") {
			t.Fatalf("a value unescaped: %q", out)
		}
	})
}
