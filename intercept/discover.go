package intercept

// Form discovery: from a sampled page, every form and every likely lead
// widget (a phone or email input and a button, with or without a <form>,
// in a modal or not), with a selector the browser accepts, its fields and
// their roles, and a form rule ready to paste into the Caddyfile.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"
)

// Found is one form or widget seen on a page.
type Found struct {
	Path     string       `json:"path"`
	Kind     string       `json:"kind"`     // "form" (a <form>: submit rule) or "widget" (a button: click rule)
	Selector string       `json:"selector"` // the <form>, or the widget's button
	Title    string       `json:"title"`    // a suggested rule title: the nearest heading, else the selector
	InModal  bool         `json:"in_modal,omitempty"`
	Fields   []FoundField `json:"fields"`
	// Lead is true when a field has the phone or email role.
	Lead bool   `json:"lead"`
	Rule string `json:"rule"` // the Caddyfile form block
	// CoveredBy are the titles of the rules whose submit or click
	// selector catches it (the audit fills it in).
	CoveredBy []string  `json:"covered_by,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`

	node *html.Node // the form, or the widget's button
}

// FoundField is one input of a found form.
type FoundField struct {
	Name   string `json:"name,omitempty"`
	Type   string `json:"type"`
	Role   string `json:"role,omitempty"`   // name, phone, email, comment, or ""
	Source string `json:"source,omitempty"` // the rule's source for it: field <name> or selector "<css>"
}

var (
	identRE = regexp.MustCompile(`^-?[A-Za-z_][A-Za-z0-9_-]*$`)
	modalRE = regexp.MustCompile(`(?i)(^|[-_ ])(modal|popup|dialog|lightbox|overlay)($|[-_ ])`)
)

// Discover lists the forms and lead widgets of doc, a page served at path.
func Discover(doc *goquery.Document, path string) []Found {
	var out []Found
	doc.Find("form").Each(func(_ int, f *goquery.Selection) {
		fields := foundFields(doc, f.Find("input, select, textarea"))
		if len(fields) == 0 {
			return
		}
		if sel := stableSelector(doc, f); sel != "" {
			out = append(out, finish(doc, Found{Path: path, Kind: "form", Selector: sel, Fields: fields, node: f.Get(0)}, f))
		}
	})
	// Widgets: contact inputs outside any form, grouped by the nearest
	// ancestor that also holds a button.
	seen := map[*html.Node]bool{}
	doc.Find(`input[type=tel], input[type=email], input[name], input[id]`).Each(func(_ int, in *goquery.Selection) {
		if in.Closest("form").Length() > 0 || contactRole(in) == "" {
			return
		}
		for box := in.Parent(); box.Length() > 0 && !box.Is("body, html"); box = box.Parent() {
			btn := box.Find(`button, input[type=button], input[type=submit], [role=button]`).First()
			if btn.Length() == 0 {
				continue
			}
			if seen[box.Get(0)] {
				return
			}
			seen[box.Get(0)] = true
			if sel := stableSelector(doc, btn); sel != "" {
				fields := foundFields(doc, box.Find("input, select, textarea"))
				out = append(out, finish(doc, Found{Path: path, Kind: "widget", Selector: sel, Fields: fields, node: btn.Get(0)}, box))
			}
			return
		}
	})
	return out
}

func finish(doc *goquery.Document, f Found, box *goquery.Selection) Found {
	for _, fl := range f.Fields {
		if fl.Role == RolePhone || fl.Role == RoleEmail {
			f.Lead = true
		}
	}
	for n := box; n.Length() > 0; n = n.Parent() {
		cls, _ := n.Attr("class")
		id, _ := n.Attr("id")
		role, _ := n.Attr("role")
		if n.Is("dialog") || role == "dialog" || modalRE.MatchString(cls) || modalRE.MatchString(id) {
			f.InModal = true
			break
		}
	}
	f.Title = heading(box)
	if f.Title == "" {
		f.Title = "Форма " + f.Path + " " + f.Selector
	}
	f.Rule = rule(f)
	return f
}

// heading is the form's own legend or heading, else the nearest one before it.
func heading(box *goquery.Selection) string {
	clean := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if h := box.Find("legend, h1, h2, h3, h4, h5").First(); h.Length() > 0 && clean(h.Text()) != "" {
		return clip80(clean(h.Text()))
	}
	// The heading right before it (or before its parent, two levels up).
	n := box
	for i := 0; i < 3 && n.Length() > 0 && !n.Is("body"); i, n = i+1, n.Parent() {
		if h := n.Prev(); h.Is("h1, h2, h3, h4, h5") && clean(h.Text()) != "" {
			return clip80(clean(h.Text()))
		}
	}
	return ""
}

func clip80(s string) string {
	if r := []rune(s); len(r) > 80 {
		return string(r[:80])
	}
	return s
}

func foundFields(doc *goquery.Document, ins *goquery.Selection) []FoundField {
	var out []FoundField
	ins.Each(func(_ int, in *goquery.Selection) {
		typ := strings.ToLower(in.AttrOr("type", goquery.NodeName(in)))
		if in.Is("input") && in.AttrOr("type", "") == "" {
			typ = "text"
		}
		switch typ {
		case "hidden", "submit", "button", "reset", "image", "password", "file":
			return
		}
		name := in.AttrOr("name", "")
		f := FoundField{Name: name, Type: typ, Role: contactRole(in)}
		if f.Role == "" {
			if r := AutoRole(name); r != "" {
				f.Role = r
			} else if r := AutoRole(in.AttrOr("id", "")); r != "" {
				f.Role = r
			} else if typ == "textarea" {
				f.Role = RoleComment
			}
		}
		if name != "" {
			f.Source = "field " + quoteToken(name)
		} else if sel := stableSelector(doc, in); sel != "" {
			f.Source = "selector " + quoteToken(sel)
		}
		out = append(out, f)
	})
	return out
}

// contactRole is phone or email by the input's type, then its name or id.
func contactRole(in *goquery.Selection) string {
	switch strings.ToLower(in.AttrOr("type", "")) {
	case "tel":
		return RolePhone
	case "email":
		return RoleEmail
	case "hidden", "submit", "button", "checkbox", "radio", "password":
		return ""
	}
	for _, s := range []string{in.AttrOr("name", ""), in.AttrOr("id", "")} {
		if r := AutoRole(s); r == RolePhone || r == RoleEmail {
			return r
		}
	}
	return ""
}

// stableSelector is a selector the browser accepts that matches el and
// nothing else on the page: its id, else a distinctive attribute (name,
// action, data-*), else its classes, else a path of :nth-of-type steps from
// the nearest ancestor that has one of those.
func stableSelector(doc *goquery.Document, el *goquery.Selection) string {
	node := el.Get(0)
	uniqueFor := func(target *html.Node) func(string) bool {
		return func(sel string) bool {
			if CheckSelector(sel) != nil {
				return false
			}
			m, err := cascadia.Compile(sel)
			if err != nil {
				return false
			}
			got := cascadia.QueryAll(doc.Get(0), m)
			return len(got) == 1 && got[0] == target
		}
	}
	unique := uniqueFor(node)
	if s := ownSelector(el, unique); s != "" {
		return s
	}
	// A path of child steps up to the nearest ancestor with an id (or an
	// attribute, or body).
	steps := []string{}
	for n := el; n.Length() > 0 && !n.Is("html"); n = n.Parent() {
		steps = append([]string{nthStep(n)}, steps...)
		anchored := n.Is("body")
		if n.Get(0) != node {
			if s := ownSelector(n, uniqueFor(n.Get(0))); s != "" && (strings.HasPrefix(s, "#") || strings.Contains(s, "[")) {
				steps[0], anchored = s, true
			}
		}
		if cand := strings.Join(steps, " > "); anchored && unique(cand) {
			return cand
		}
	}
	if cand := strings.Join(steps, " > "); unique(cand) {
		return cand
	}
	return "" // nothing the browser would read the same way
}

// ownSelector is el's own distinctive selector that passes ok, or "".
func ownSelector(el *goquery.Selection, ok func(string) bool) string {
	tag := goquery.NodeName(el)
	if id, has := el.Attr("id"); has && id != "" {
		if identRE.MatchString(id) && ok("#"+id) {
			return "#" + id
		}
		if s := tag + "[id=" + strconv.Quote(id) + "]"; ok(s) {
			return s
		}
	}
	for _, a := range []string{"name", "data-form", "data-id", "action", "aria-label"} {
		if v, has := el.Attr(a); has && v != "" && !strings.ContainsAny(v, "\"\\\n") {
			if s := fmt.Sprintf("%s[%s=%q]", tag, a, v); ok(s) {
				return s
			}
		}
	}
	if cls := strings.Fields(el.AttrOr("class", "")); len(cls) > 0 {
		s := tag
		for _, c := range cls {
			if identRE.MatchString(c) {
				s += "." + c
			}
		}
		if s != tag && ok(s) {
			return s
		}
	}
	if v, has := el.Attr("type"); has && identRE.MatchString(v) {
		if s := fmt.Sprintf("%s[type=%q]", tag, v); ok(s) {
			return s
		}
	}
	return ""
}

func nthStep(n *goquery.Selection) string {
	tag := goquery.NodeName(n)
	if tag == "body" {
		return tag
	}
	if !identRE.MatchString(tag) { // a tag name CSS cannot write: count every element
		i := 1
		for p := n.Get(0).PrevSibling; p != nil; p = p.PrevSibling {
			if p.Type == html.ElementNode {
				i++
			}
		}
		return fmt.Sprintf(":nth-child(%d)", i)
	}
	i := 1
	for p := n.Get(0).PrevSibling; p != nil; p = p.PrevSibling {
		if p.Type == html.ElementNode && p.Data == tag {
			i++
		}
	}
	return fmt.Sprintf("%s:nth-of-type(%d)", tag, i)
}

// quoteToken quotes a value as one Caddyfile token.
func quoteToken(s string) string {
	if !strings.ContainsAny(s, "`") {
		if !strings.ContainsAny(s, "\"\\") {
			return `"` + s + `"`
		}
		return "`" + s + "`"
	}
	return strconv.Quote(s)
}

// rule is the Caddyfile form block for f.
func rule(f Found) string {
	var b strings.Builder
	fmt.Fprintf(&b, "form %s {\n", quoteToken(f.Title))
	if f.Kind == "form" {
		fmt.Fprintf(&b, "\tsubmit %s\n", quoteToken(f.Selector))
	} else {
		fmt.Fprintf(&b, "\tclick %s\n", quoteToken(f.Selector))
	}
	done := map[string]bool{}
	for _, fl := range f.Fields {
		if fl.Role != "" && !done[fl.Role] && fl.Source != "" {
			done[fl.Role] = true
			fmt.Fprintf(&b, "\t%s %s\n", fl.Role, fl.Source)
		}
	}
	if !f.Lead {
		b.WriteString("\tallow_no_contact\n")
	}
	b.WriteString("}")
	return b.String()
}

// covers reports whether a submit or click selector catches f as the
// capture script does: a submit rule by the form's closest(), a click rule
// by the closest() of the button (a widget's, or any in the form).
func covers(m cascadia.Selector, role string, f *Found) bool {
	if f.node == nil || m == nil {
		return false
	}
	closest := func(n *html.Node) bool {
		for ; n != nil; n = n.Parent {
			if n.Type == html.ElementNode && m.Match(n) {
				return true
			}
		}
		return false
	}
	switch {
	case role == "submit" && f.Kind == "form":
		return closest(f.node)
	case role == "click" && f.Kind == "widget":
		return closest(f.node)
	case role == "click":
		for _, b := range cascadia.QueryAll(f.node, cascadia.MustCompile(`button, input[type=button], input[type=submit], [role=button]`)) {
			if closest(b) {
				return true
			}
		}
	}
	return false
}
