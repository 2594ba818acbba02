package caddymodule

// The capture script against real form libraries (docs/form-stacks.md):
// each page of intercept/testdata/browser/stack-*.html loads a library from
// internal/browsertest/testdata/stacks/node_modules (exact versions, package-lock.json,
// `npm ci`), through the real binary as in TestBrowserE2E. Each case asserts
// one lead whose fields are exactly what the page's own request carried, that
// request passed to the site byte for byte, and no console error.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/internal/browsertest"
	"github.com/leadproxy/leadproxy/lead"
)

// newStackSite is newE2EBrowserSite with the libraries served under /npm/.
func newStackSite(t *testing.T, lp string) *e2eBrowserSite {
	t.Helper()
	npm := browsertest.NodeModules(t)
	browser := browsertest.Launch(t)
	up := &e2eBrowserUpstream{}
	mux := http.NewServeMux()
	mux.Handle("/npm/", http.StripPrefix("/npm/", http.FileServer(http.Dir(npm))))
	mux.HandleFunc("/", up.serve)
	up.Server = httptest.NewServer(mux)
	t.Cleanup(up.Close)
	c := startCaddy(t, e2eBrowserCaddyfile, map[string]string{"UPSTREAM": up.URL, "LP": lp})
	return &e2eBrowserSite{caddy: c, up: up, tab: newE2EBrowserTab(t, browser)}
}

// fill sets an input's value as typing and leaving the field do for a
// framework: the input, change and focusout events its bindings (v-model,
// jquery-validation) listen to. The focusout matters: without it the
// plugin's message would go away on the next click's mousedown and move
// the button from under the mouse.
func fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(function (e) {
		e.value = %q;
		e.dispatchEvent(new Event("input", { bubbles: true }));
		e.dispatchEvent(new Event("change", { bubbles: true }));
		e.dispatchEvent(new FocusEvent("focusout", { bubbles: true }));
	})(document.querySelector(%q))`, value, sel))
}

// sameFields asserts the lead's fields are exactly what the site got in
// post (parsed as the handler does, with its exclusions).
func sameFields(t *testing.T, l lead.Lead, post e2eBrowserPost) {
	t.Helper()
	f, err := intercept.ParseBody(post.ContentType, bytes.NewReader(post.Body), "utf-8", "")
	if err != nil {
		t.Fatalf("the page's request: %v", err)
	}
	if want := f.Map(); !maps.Equal(l.Fields, want) {
		t.Errorf("lead fields %q, want what the site got: %q", l.Fields, want)
	}
}

// pageLead checks a case's outcome: the page's one request to path reached
// the site byte for byte, the store holds exactly one lead, with want (as
// e2eBrowserCheck reads it) and exactly the fields of that request, and the
// console stayed quiet. It returns what the site got.
func (s *e2eBrowserSite) pageLead(t *testing.T, path string, want map[string]string) e2eBrowserPost {
	t.Helper()
	s.settle(t, 1, map[string]int{path: 1})
	got := s.forwarded(t, path, 1)
	l := s.oneLead(t)
	e2eBrowserCheck(t, l, want)
	sameFields(t, l, got[0])
	s.tab.Quiet(t)
	return got[0]
}

// TestBrowserStacks runs one library per subtest, each with its own browser
// (run one at a time: go test -run 'TestBrowserStacks/vue').
func TestBrowserStacks(t *testing.T) {
	// jquery-validation refuses a bad email and sends nothing; the visitor
	// corrects it and submits again, natively or (?ajax=1) by $.ajax.
	for _, c := range []struct{ name, page, path, done string }{
		{"jquery-validation native post", "stack-jquery-validation.html", "/send-order", "#thanks"},
		{"jquery-validation ajax", "stack-jquery-validation.html?ajax=1", "/ajax/order", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStackSite(t, `
			form "Заказ" {
				submit "#order"
			}`)
			s.open(t, c.page)
			s.tab.Do(t,
				fill(`[name=name]`, "Иван"),
				fill(`[name=phone]`, "+7 999 123-45-67"),
				fill(`[name=email]`, "ivan@"),
				chromedp.Click(chromedp.CSS(`#go`)),
				// Refused: the plugin shows its message and sends nothing.
				chromedp.WaitVisible(chromedp.CSS(`#email-error`)),
				fill(`[name=email]`, "ivan@example.com"),
				fill(`[name=comment]`, "Позвоните после 18"),
				chromedp.Click(chromedp.CSS(`#go`)),
			)
			if c.done != "" {
				s.tab.Do(t, chromedp.WaitVisible(chromedp.CSS(c.done)))
			} else {
				s.tab.WaitText(t, "#status", "sent")
			}
			s.pageLead(t, c.path, map[string]string{"form": "Заказ", "name": "Иван", "phone": "+79991234567",
				"email": "ivan@example.com", "comment": "Позвоните после 18"})
		})
	}

	// A quiz: under auto on, the steps without a phone match no rule; under
	// a rule for the form, with a request per step (?steps=1), each step is
	// a report without contact data, answered 202 and logged nowhere.
	for _, c := range []struct{ name, lp, page, form string }{
		{"vue multi-step quiz", "auto on", "stack-vue-quiz.html", "auto"},
		{"vue multi-step quiz saving each step", "form \"Квиз\" {\n\t\t\tsubmit \"#quiz\"\n\t\t}", "stack-vue-quiz.html?steps=1", "Квиз"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStackSite(t, c.lp)
			s.stepReports = c.form != "auto"
			s.open(t, c.page)
			s.tab.Do(t,
				chromedp.Click(chromedp.CSS(`input[value="Ванная"]`)),
				chromedp.Click(chromedp.CSS(`#next`)),
				chromedp.WaitVisible(chromedp.CSS(`#next[data-step="2"]`)),
				fill(`[name=budget]`, "150000"),
				chromedp.Click(chromedp.CSS(`#next`)),
				chromedp.WaitVisible(chromedp.CSS(`#next[data-step="3"]`)),
				fill(`[name=name]`, "Анна"),
				fill(`[name=phone]`, "8 (912) 345-67-89"),
				chromedp.Click(chromedp.CSS(`#next`)),
			)
			s.tab.WaitText(t, "#status", "sent")
			if s.stepReports {
				if n := len(s.up.got("/api/quiz-step")); n != 2 {
					t.Fatalf("the site got %d step saves, want 2", n)
				}
			}
			s.pageLead(t, "/api/quiz", map[string]string{"form": c.form, "name": "Анна", "phone": "+79123456789",
				"field:area": "Ванная", "field:budget": "150000"})
			if s.stepReports {
				// Both step saves were reports, answered 202, and quiet.
				accepted := 0
				for _, st := range s.handled(http.MethodPost, e2eBrowserCollect) {
					if st == http.StatusAccepted {
						accepted++
					}
				}
				if accepted != 2 {
					t.Errorf("%d step reports answered 202, want 2", accepted)
				}
			}
		})
	}

	t.Run("lit shadow dom", func(t *testing.T) {
		s := newStackSite(t, `
		auto on`)
		s.open(t, "stack-lit.html")
		root := `document.querySelector("lead-form").shadowRoot`
		ctx, cancel := context.WithTimeout(s.tab.Ctx, e2eBrowserWait)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!(`+root+` && `+root+`.querySelector("form"))`)); err != nil {
			t.Fatalf("the component never rendered: %v", err)
		}
		s.tab.Do(t,
			chromedp.Evaluate[chromedp.Void](`(function (r) {
				r.querySelector("[name=name]").value = "Олег";
				r.querySelector("[name=email]").value = "oleg@example.com";
				r.querySelector("[name=phone]").value = "+7 903 000-11-22";
				r.querySelector("button").click();
			})(`+root+`)`),
		)
		s.tab.WaitText(t, "#status", "sent")
		s.pageLead(t, "/api/lit", map[string]string{"form": "auto", "name": "Олег", "phone": "+79030001122", "email": "oleg@example.com"})
	})

	t.Run("rails form with turbo", func(t *testing.T) {
		s := newStackSite(t, `
		auto on`)
		s.open(t, "stack-turbo.html")
		s.tab.Do(t,
			fill(`#demo_request_name`, "Мария"),
			fill(`#demo_request_phone`, "+7 (916) 111-22-33"),
			fill(`#demo_request_company`, "ООО Ромашка"),
			fill(`#demo_request_comment`, "Демо на 10 человек"),
			chromedp.Click(chromedp.CSS(`#commit`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		)
		got := s.pageLead(t, "/send-demo", map[string]string{"form": "auto", "name": "Мария", "phone": "+79161112233",
			"comment": "Демо на 10 человек", "field:demo_request[company]": "ООО Ромашка", "field:authenticity_token": "-"})
		if !got.hasMarker() || !strings.Contains(string(got.Body), "rails-csrf-7f3a") {
			t.Errorf("upstream got cookie %q body %q: want the marker and the CSRF token passed on", got.Cookie, got.Body)
		}
	})

	t.Run("imask phone", func(t *testing.T) {
		s := newStackSite(t, `
		form "Звонок" {
			submit "#callback"
		}`)
		s.open(t, "stack-imask.html")
		s.tab.Do(t,
			fill(`[name=name]`, "Пётр"),
			chromedp.SendKeys(chromedp.CSS(`#phone`), "999"),
			chromedp.Click(chromedp.CSS(`#go`)),
		)
		// Refused by the page: the mask is not finished.
		s.tab.WaitText(t, "#error", "полностью")
		s.tab.Do(t,
			chromedp.SendKeys(chromedp.CSS(`#phone`), "1234567"),
			chromedp.Click(chromedp.CSS(`#go`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		)
		s.pageLead(t, "/send-callback", map[string]string{"form": "Звонок", "name": "Пётр", "phone": "+79991234567", "field:phone": "+7 (999) 123-45-67"})
	})
}
