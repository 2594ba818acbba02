package caddymodule

import (
	"os"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/chromedp"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/internal/browsertest"
)

// TestBrowserDiscoveredRules: the rules form discovery proposes for a page
// (a classic form, a button widget with no <form>, a form in a modal),
// pasted into the Caddyfile as they are, capture each form in Chromium.
func TestBrowserDiscoveredRules(t *testing.T) {
	raw, err := os.ReadFile("../intercept/testdata/browser/discover.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]intercept.Found{}
	for _, f := range intercept.Discover(doc, "/p/discover.html") {
		rules[f.Selector] = f
	}
	if !rules["form.order"].InModal || rules["#callback"].InModal {
		t.Errorf("in_modal: the modal's form %v, the page's %v", rules["form.order"].InModal, rules["#callback"].InModal)
	}
	browser := browsertest.Launch(t)
	cases := []struct {
		selector string
		steps    []chromedp.Action[chromedp.Void]
		path     string
		want     map[string]string
	}{
		{"#callback", []chromedp.Action[chromedp.Void]{
			chromedp.SetValue(chromedp.CSS(`[name=name]`), "Иван"),
			chromedp.SetValue(chromedp.CSS(`[name=phone]`), "+7 999 123-45-67"),
			chromedp.Click(chromedp.CSS(`#callback button`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		}, "/send-callback", map[string]string{"title": "Обратный звонок", "mechanism": "submit", "name": "Иван", "phone": "+79991234567"}},
		{"button.quiz-send", []chromedp.Action[chromedp.Void]{
			chromedp.SetValue(chromedp.CSS(`#quiz-phone`), "8 912 000-00-01"),
			chromedp.SetValue(chromedp.CSS(`#quiz-name`), "Ольга"),
			chromedp.Click(chromedp.CSS(`.quiz-send`)),
		}, "/ajax/quiz", map[string]string{"title": "Рассчитать стоимость", "mechanism": "click", "name": "Ольга", "phone": "+79120000001"}},
		{"form.order", []chromedp.Action[chromedp.Void]{
			chromedp.Click(chromedp.CSS(`#open-order`)),
			chromedp.SetValue(chromedp.CSS(`[name="data[Lead][phone]"]`), "+79990001122"),
			chromedp.SetValue(chromedp.CSS(`[name="data[Lead][email]"]`), "anna@example.com"),
			chromedp.Click(chromedp.CSS(`#order-send`)),
		}, "/ajax/order", map[string]string{"title": "Заказ в окне", "mechanism": "submit", "phone": "+79990001122", "email": "anna@example.com"}},
	}
	for _, c := range cases {
		f, ok := rules[c.selector]
		if !ok {
			t.Fatalf("discovery did not propose %s (got %v)", c.selector, rules)
		}
		t.Run(f.Title, func(t *testing.T) {
			s := newE2EBrowserSite(t, browser, "\t\t"+strings.ReplaceAll(f.Rule, "\n", "\n\t\t"))
			s.open(t, "discover.html")
			s.tab.Do(t, c.steps...)
			if c.path != "/send-callback" {
				s.tab.WaitText(t, "#status", "sent")
			}
			s.settle(t, 1, map[string]int{c.path: 1})
			e2eBrowserCheck(t, s.oneLead(t), c.want)
		})
	}
}
