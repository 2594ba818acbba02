package intercept

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// An attempt makes a report only when it goes out and the site accepts it:
// a submit the page refuses (its analytics goal carries no form value) and
// one the site answers 422 make none; the accepted one makes one report,
// with its own values.
func TestBrowserOnlyTheAttemptThatWentOut(t *testing.T) {
	rule := &Rule{Title: "Заявка", Submit: "#lead"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "attempt.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=name]`), "Ирина"),
		chromedp.SetValue(chromedp.CSS(`[name=email]`), "irina.example.com"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	tab.WaitText(t, "#status", "refused1;")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=email]`), "irina@example.com"),
		chromedp.SetValue(chromedp.CSS(`[name=comment]`), "please refuse"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	tab.WaitText(t, "#status", "422;")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=comment]`), "перезвоните"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	tab.WaitText(t, "#status", "200;")
	// Three goals, the refused post and the accepted one.
	s.waitFor(t, 5, 1)
	s.settle(t, tab)
	posts, reps := s.got()
	if len(posts) != 5 || len(reps) != 1 || reps[0].Err != nil {
		t.Fatalf("site got %d posts and %d reports, want 5 and exactly 1 (valid): %v", len(posts), len(reps), reps)
	}
	rep := reps[0].Report
	if rep.Rule != rule.ID() {
		t.Errorf("report rule %q", rep.Rule)
	}
	wantMap(t, "report f", rep.Fields, map[string]string{"name": "Ирина", "email": "irina@example.com", "comment": "перезвоните"})
	// The page's own 422 is the page's; nothing else may be logged.
	for _, p := range tab.Problems() {
		if !strings.Contains(p, "422") {
			t.Errorf("console: %s", p)
		}
	}
}

// A form in an open shadow root made before the capture script ran (a
// component defined by a classic script) is found by the walk at start.
func TestBrowserShadowRootMadeBeforeTheScript(t *testing.T) {
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Auto: true})
	tab := s.open(t, "shadow-early.html")
	tab.Do(t, chromedp.Evaluate[chromedp.Void](`(function (r) {
		r.querySelector("[name=phone]").value = "+79990001122";
		r.querySelector("button").click();
	})(document.querySelector("call-back").shadowRoot)`),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
	)
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, "auto", 1)
	if post.Path != "/send-shadow" || post.Marker.Action != "/send-shadow" {
		t.Errorf("post %s marker action %q", post.Path, post.Marker.Action)
	}
	wantMap(t, "report f", rep.Fields, map[string]string{"phone": "+79990001122"})
	tab.Quiet(t)
}

// HTML5 constraint validation refuses before any submit event: the refused
// attempt leaves nothing, the corrected one is the one submission.
func TestBrowserConstraintValidationRetry(t *testing.T) {
	rule := &Rule{Title: "Заявка", Submit: "#contact"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "html5.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=name]`), "Ян"),
		chromedp.SetValue(chromedp.CSS(`[name=email]`), "yan@"),
		chromedp.Click(chromedp.CSS(`#send`)),
	)
	if v := tab.Eval(t, `String(document.querySelector("[name=email]").matches(":invalid") && !/_lp_s=/.test(document.cookie))`); v != "true" {
		t.Fatalf("after the refused submit: invalid and no marker = %s", v)
	}
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=email]`), "yan@example.com"),
		chromedp.Click(chromedp.CSS(`#send`)),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
	)
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	want := map[string]string{"name": "Ян", "email": "yan@example.com"}
	wantMap(t, "post body", post.fields(t), want)
	wantMap(t, "report f", rep.Fields, want)
	tab.Quiet(t)
}
