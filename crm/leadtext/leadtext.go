// Package leadtext is the message template the alert destinations share
// (telegram, email): plain text with {lead.X} placeholders and a few HTML
// tags for emphasis. Lead values are always escaped for the output they go
// into; the template's own text is trusted (it comes from the config).
//
//	Новая заявка: <b>{lead.form}</b>
//	{lead.fields}
//	Страница: {lead.page}
//	Источник: {lead.source}
//
// Placeholders (an unknown one is a config error, at Provision):
//
//	{lead.id} {lead.site} {lead.form} {lead.title}
//	{lead.name} {lead.phone} {lead.email} {lead.comment}
//	{lead.field.<key>}   one extra field by the form's key
//	{lead.fields}        every non-empty field, one "key: value" line each
//	{lead.page} {lead.landing} {lead.referrer}
//	{lead.utm.<key>}     one UTM value: {lead.utm.campaign}
//	{lead.source}        utm_source, else the referrer's host, else empty
//	{lead.created}       the capture time, RFC 3339 UTC
//
// Tags: <b> <i> <u> <s> <code> <pre> and their closing forms, written in
// the template, are kept in HTML outputs (Telegram's parse_mode HTML, the
// email's HTML body) and dropped from plain text. Any other '<', '>' or '&'
// in the template is text and is escaped like a value.
package leadtext

import (
	"fmt"
	"html"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/leadproxy/leadproxy/lead"
)

// MaxValue caps one value in runes (a form may post a novel into a comment;
// Telegram refuses a message over 4096 characters). A longer value ends
// with "…".
const MaxValue = 1000

// Default is the template when a destination's block sets none.
const Default = "Новая заявка: <b>{lead.form}</b>\n{lead.fields}\nСтраница: {lead.page}\nИсточник: {lead.source}"

// Template is a parsed template.
type Template struct {
	parts []part
}

type part struct {
	text string // literal text (kind 0) or tag (kind 2)
	kind int    // 0 text, 1 placeholder, 2 tag
	name string // placeholder: "name", "field", "utm", ...
	key  string // for field and utm
}

var (
	placeholder = regexp.MustCompile(`\{lead\.([a-z_]+)(?:\.([^{}\s]+))?\}`)
	tag         = regexp.MustCompile(`^</?(b|i|u|s|code|pre)>`)
	simple      = map[string]bool{"id": true, "site": true, "form": true, "title": true, "name": true,
		"phone": true, "email": true, "comment": true, "fields": true, "page": true, "landing": true,
		"referrer": true, "source": true, "created": true}
)

// Parse parses a template; "" is Default.
func Parse(s string) (*Template, error) {
	if s == "" {
		s = Default
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("template: not valid UTF-8")
	}
	t := &Template{}
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(s, -1) {
		t.text(s[last:m[0]])
		name := s[m[2]:m[3]]
		key := ""
		if m[4] >= 0 {
			key = s[m[4]:m[5]]
		}
		switch {
		case (name == "field" || name == "utm") && key != "":
		case simple[name] && key == "":
		default:
			return nil, fmt.Errorf("template: unknown placeholder %s (want {lead.name}, {lead.phone}, {lead.email}, {lead.comment}, {lead.form}, {lead.fields}, {lead.field.<key>}, {lead.page}, {lead.source}, {lead.utm.<key>}, ...)", s[m[0]:m[1]])
		}
		t.parts = append(t.parts, part{kind: 1, name: name, key: key})
		last = m[1]
	}
	t.text(s[last:])
	for _, p := range t.parts {
		if i := strings.Index(p.text, "{lead."); p.kind == 0 && i >= 0 {
			bad, _, _ := strings.Cut(p.text[i:], "\n")
			return nil, fmt.Errorf("template: malformed placeholder %q", bad)
		}
	}
	return t, nil
}

// text splits literal text into text and allowed tags.
func (t *Template) text(s string) {
	for s != "" {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			t.parts = append(t.parts, part{text: s})
			return
		}
		if m := tag.FindString(s[i:]); m != "" {
			if i > 0 {
				t.parts = append(t.parts, part{text: s[:i]})
			}
			t.parts = append(t.parts, part{kind: 2, text: m})
			s = s[i+len(m):]
			continue
		}
		t.parts = append(t.parts, part{text: s[:i+1]})
		s = s[i+1:]
	}
}

// HTML renders the template for an HTML output: text and values escaped,
// the template's tags kept, newlines kept as they are (Telegram) — see
// HTMLBody for an email body.
func (t *Template) HTML(l *lead.Lead) string { return t.render(l, true) }

// Text renders the template as plain text: tags dropped, nothing escaped.
func (t *Template) Text(l *lead.Lead) string { return t.render(l, false) }

// HTMLBody is HTML with each newline a <br>, for an email's text/html part.
func (t *Template) HTMLBody(l *lead.Lead) string {
	return strings.ReplaceAll(t.render(l, true), "\n", "<br>\n")
}

func (t *Template) render(l *lead.Lead, asHTML bool) string {
	var b strings.Builder
	esc := func(s string) string {
		if asHTML {
			return html.EscapeString(s)
		}
		return s
	}
	for _, p := range t.parts {
		switch p.kind {
		case 0:
			b.WriteString(esc(p.text))
		case 2:
			if asHTML {
				b.WriteString(p.text)
			}
		case 1:
			if p.name == "fields" {
				for i, kv := range Fields(l) {
					if i > 0 {
						b.WriteByte('\n')
					}
					b.WriteString(esc(kv[0] + ": " + clip(kv[1])))
				}
				continue
			}
			b.WriteString(esc(clip(Value(l, p.name, p.key))))
		}
	}
	return b.String()
}

// Fields is the lead's non-empty fields as {key, value}: name, phone,
// email, comment, then the extra fields by key.
func Fields(l *lead.Lead) [][2]string {
	var out [][2]string
	add := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	add("name", l.Name)
	add("phone", l.Phone)
	add("email", l.Email)
	add("comment", l.Comment)
	for _, k := range lead.SortedKeys(l.Extra) {
		add(k, l.Extra[k])
	}
	return out
}

// Value is one placeholder's value for l ("" when the lead has none).
func Value(l *lead.Lead, name, key string) string {
	v := l.Visit
	if v == nil {
		v = &lead.Visit{}
	}
	switch name {
	case "id":
		return l.ID
	case "site":
		return l.Site
	case "form":
		return l.Form
	case "title":
		return l.Title
	case "name":
		return l.Name
	case "phone":
		return l.Phone
	case "email":
		return l.Email
	case "comment":
		return l.Comment
	case "field":
		if s, ok := l.Extra[key]; ok {
			return s
		}
		return l.Fields[key]
	case "page":
		return v.Page
	case "landing":
		return v.Landing
	case "referrer":
		return v.Referrer
	case "utm":
		return v.UTM[key]
	case "source":
		return Source(l)
	case "created":
		if l.CreatedAt.IsZero() {
			return ""
		}
		return l.CreatedAt.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	return ""
}

// Source is where the visitor came from: utm_source, else the referrer's
// host, else "".
func Source(l *lead.Lead) string {
	if l.Visit == nil {
		return ""
	}
	if s := l.Visit.UTM["source"]; s != "" {
		return s
	}
	if u, err := url.Parse(l.Visit.Referrer); err == nil && u.Host != "" {
		return u.Host
	}
	return ""
}

func clip(s string) string {
	if utf8.RuneCountInString(s) <= MaxValue {
		return s
	}
	n := 0
	for i := range s {
		if n == MaxValue {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
