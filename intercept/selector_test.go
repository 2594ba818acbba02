package intercept

import (
	"strings"
	"testing"
)

// browserSelectors are selectors the browser's querySelector runs, and
// foreignSelectors ones it rejects or that match nothing there, with a
// word the refusal must carry. TestBrowserSelectorVerdicts checks both
// lists against Chromium itself.
var browserSelectors = []string{
	"#contact-form", "form.lead", "form[action$='/send']", `input[name="a:contains"]`,
	"form:has(input[type=email])", "form:not(.search)", "div > form:first-child",
	"li:nth-child(2n+1) form", "form:last-of-type", `input[name*=phone i]`, `#a\:b`,
	"form:empty", ":root form", "input:checked", "input:disabled", "a:link",
	".a, .b", "form:has(input):has(button)", "form:not(:has(input[type=search]))",
}

var foreignSelectors = []struct{ sel, why string }{
	{"form:contains(Отправить)", ":contains is a jQuery extension"},
	{"form:has(button:contains('Send'))", ":contains"},
	{"form:containsOwn(x)", ":containsown"},
	{"form:matches(^a)", ":matches"},
	{"div:haschild(form)", ":haschild"},
	{"form :input", ":input"},
	{"form:eq(0)", ":eq"},
	{"form:first", ":first"},
	{"form:last", ":last"},
	{"form:visible", ":visible"},
	{"form:hidden", ":hidden"},
	{"option:selected", ":selected"},
	{"form:not(:first)", ":first"},
	{"input[name!=q]", "!="},
	{"form::before", "pseudo-element"},
	{"form:after", "pseudo-element"},
	{"form:has(div:has(input))", ":has() inside :has()"},
	{"form:has(:not(:has(input)))", ":has() inside :has()"},
	{"form[", "does not compile"},
	{"", "empty"},
}

func TestCheckSelector(t *testing.T) {
	for _, sel := range browserSelectors {
		if err := CheckSelector(sel); err != nil {
			t.Errorf("CheckSelector(%q) = %v, want nil", sel, err)
		}
	}
	for _, c := range foreignSelectors {
		err := CheckSelector(c.sel)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.why)) {
			t.Errorf("CheckSelector(%q) = %v, want an error about %s", c.sel, err, c.why)
		}
	}
}

func TestRuleValidateRefusesForeignSelectors(t *testing.T) {
	r := &Rule{Title: "A", Submit: "form:contains(Отправить)"}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), `form "A": submit selector "form:contains(Отправить)" :contains is a jQuery extension`) {
		t.Errorf("submit: %v", err)
	}
	r = &Rule{Title: "A", Submit: "#f", Phone: &Source{Kind: SourceSelector, Value: "input:visible"}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), ":visible") {
		t.Errorf("selector source: %v", err)
	}
}

// FuzzCheckSelector: any text gets an answer without a panic, and what it
// accepts the audit can compile.
func FuzzCheckSelector(f *testing.F) {
	for _, s := range browserSelectors {
		f.Add(s)
	}
	for _, c := range foreignSelectors {
		f.Add(c.sel)
	}
	f.Add(`a[b="\"]:contains(x)"]`)
	f.Add(`\:contains`)
	f.Fuzz(func(t *testing.T, sel string) {
		if CheckSelector(sel) != nil {
			return
		}
		if _, err := compileBrowserSelector(sel); err != nil {
			t.Fatalf("CheckSelector accepts %q, the audit cannot compile it: %v", sel, err)
		}
	})
}
