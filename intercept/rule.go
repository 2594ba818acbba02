// Package intercept is the HTTP side of capture with no Caddy types: form
// rules and their sources, request matching, body parsing, the marker and
// visit cookies, lead extraction, the capture script, and HTML injection.
package intercept

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
)

// Source kinds: where a field's value comes from.
const (
	SourceStatic   = "static"   // the text itself
	SourceField    = "field"    // the form field with this name attribute
	SourceSelector = "selector" // value (or text) of the first element matching a CSS selector, read in the browser
	SourceJS       = "js"       // a function body returning the value, run in the browser
)

// Source says where one value of the lead comes from.
type Source struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// ParseSource reads `static "<text>"`, `field <name>`, `selector "<css>"` or
// `js "<code>"` from two Caddyfile arguments.
func ParseSource(args []string) (Source, error) {
	if len(args) == 0 {
		return Source{}, fmt.Errorf("missing source: want static, field, selector or js")
	}
	s := Source{Kind: args[0]}
	switch s.Kind {
	case SourceStatic, SourceField, SourceSelector, SourceJS:
	default:
		return s, fmt.Errorf("unknown source %q: want static, field, selector or js", args[0])
	}
	if len(args) != 2 {
		return s, fmt.Errorf("source %s takes exactly one value, got %d", s.Kind, len(args)-1)
	}
	s.Value = args[1]
	return s, s.Validate()
}

// Validate checks the source; selectors must compile.
func (s Source) Validate() error {
	switch s.Kind {
	case SourceStatic:
		return nil
	case SourceField, SourceJS:
		if strings.TrimSpace(s.Value) == "" {
			return fmt.Errorf("%s source: empty value", s.Kind)
		}
		return nil
	case SourceSelector:
		if err := CheckSelector(s.Value); err != nil {
			return fmt.Errorf("selector %q %v", s.Value, err)
		}
		return nil
	}
	return fmt.Errorf("unknown source %q: want static, field, selector or js", s.Kind)
}

// Browser reports whether the value can only be read in the browser.
func (s Source) Browser() bool { return s.Kind == SourceSelector || s.Kind == SourceJS }

// Labeled is an extra or CRM field: a label (or CRM key) and its source.
type Labeled struct {
	Label  string `json:"label"`
	Source Source `json:"source"`
}

// Roles of the main fields; extra and crm values use "extra:<label>" and
// "crm:<key>" in the marker cookie and reports.
const (
	RoleName    = "name"
	RolePhone   = "phone"
	RoleEmail   = "email"
	RoleComment = "comment"
)

// Rule is one `form "<title>"` block: how to recognise a submission and
// where each value of the lead comes from. Its JSON is the handler's config.
type Rule struct {
	// Title names the form and becomes the lead's title. Unique per site.
	Title string `json:"title"`
	// Submit is a CSS selector of <form> elements captured on submit.
	Submit string `json:"submit,omitempty"`
	// Click is a CSS selector of buttons whose click sends the form by AJAX.
	Click string `json:"click,omitempty"`
	// Post is a path pattern: a POST there carrying every Require field is
	// captured server-side, with or without the script. "*" at the end
	// matches any rest of the path; elsewhere it matches within a segment.
	Post string `json:"post,omitempty"`
	// Require lists the fields a Post must carry.
	Require []string `json:"require,omitempty"`
	// Main fields; nil means found by the usual names and input types.
	Name    *Source `json:"name,omitempty"`
	Phone   *Source `json:"phone,omitempty"`
	Email   *Source `json:"email,omitempty"`
	Comment *Source `json:"comment,omitempty"`
	// Extra fields, shown on the lead and in the CRM comment.
	Extra []Labeled `json:"extra,omitempty"`
	// CRM holds CRM-specific fields, keys as the reference page lists them.
	CRM []Labeled `json:"crm,omitempty"`
	// SendTo overrides the site's destinations for this form.
	SendTo []string `json:"send_to,omitempty"`
	// AllowNoContact captures a submission with neither phone nor email.
	AllowNoContact bool `json:"allow_no_contact,omitempty"`
	// DryRun, when set, overrides the site's dry_run for this form: its
	// leads are listed with what would be sent, and not sent.
	DryRun *bool `json:"dry_run,omitempty"`

	id string
}

// RuleID is the stable id of a rule title (see docs/capture-protocol.md).
func RuleID(title string) string {
	sum := sha256.Sum256([]byte(title))
	return hex.EncodeToString(sum[:5])
}

// ID returns the rule's id.
func (r *Rule) ID() string {
	if r.id == "" {
		r.id = RuleID(r.Title)
	}
	return r.id
}

// Mechanism returns how submissions of this rule are seen by the script:
// "submit" or "click", or "post" for a server-side-only rule.
func (r *Rule) Mechanism() string {
	switch {
	case r.Submit != "":
		return "submit"
	case r.Click != "":
		return "click"
	}
	return "post"
}

// Sources lists the rule's sources by role ("name", "extra:Город", "crm:tags").
func (r *Rule) Sources() map[string]Source {
	m := map[string]Source{}
	for role, s := range map[string]*Source{RoleName: r.Name, RolePhone: r.Phone, RoleEmail: r.Email, RoleComment: r.Comment} {
		if s != nil {
			m[role] = *s
		}
	}
	for _, x := range r.Extra {
		m["extra:"+x.Label] = x.Source
	}
	for _, x := range r.CRM {
		m["crm:"+x.Label] = x.Source
	}
	return m
}

// Validate checks the rule as the config loader does: a mechanism, CSS
// selectors that compile, known source kinds, a sane post pattern.
func (r *Rule) Validate() error {
	if strings.TrimSpace(r.Title) == "" {
		return fmt.Errorf("form: empty title")
	}
	if r.Submit == "" && r.Click == "" && r.Post == "" {
		return fmt.Errorf("form %q: needs submit, click or post", r.Title)
	}
	for what, sel := range map[string]string{"submit": r.Submit, "click": r.Click} {
		if sel == "" {
			continue
		}
		if err := CheckSelector(sel); err != nil {
			return fmt.Errorf("form %q: %s selector %q %v", r.Title, what, sel, err)
		}
	}
	if r.Post != "" {
		if !strings.HasPrefix(r.Post, "/") {
			return fmt.Errorf("form %q: post %q: want a path starting with /", r.Title, r.Post)
		}
		if _, err := path.Match(r.Post, "/"); err != nil {
			return fmt.Errorf("form %q: post %q: %v", r.Title, r.Post, err)
		}
	}
	if len(r.Require) > 0 && r.Post == "" {
		return fmt.Errorf("form %q: require goes with post", r.Title)
	}
	for role, s := range r.Sources() {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("form %q: %s: %v", r.Title, role, err)
		}
	}
	// An empty label would become a nameless CRM field or extra line.
	for _, f := range r.Extra {
		if strings.TrimSpace(f.Label) == "" {
			return fmt.Errorf("form %q: extra: empty label", r.Title)
		}
	}
	for _, f := range r.CRM {
		if strings.TrimSpace(f.Label) == "" {
			return fmt.Errorf("form %q: crm: empty key", r.Title)
		}
	}
	return nil
}

// MatchPath reports whether p matches the rule's post pattern.
func (r *Rule) MatchPath(p string) bool {
	return MatchPathPattern(r.Post, p)
}

// MatchPathPattern matches a post pattern: exact, "prefix*", or a glob.
func MatchPathPattern(pattern, p string) bool {
	if pattern == "" {
		return false
	}
	if strings.HasSuffix(pattern, "*") && !strings.ContainsAny(pattern[:len(pattern)-1], "*?[") {
		return strings.HasPrefix(p, pattern[:len(pattern)-1])
	}
	if !strings.ContainsAny(pattern, "*?[") {
		return p == pattern || p == pattern+"/" && !strings.HasSuffix(pattern, "/")
	}
	ok, _ := path.Match(pattern, p)
	return ok
}
