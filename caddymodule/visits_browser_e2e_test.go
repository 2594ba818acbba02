package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/leadproxy/leadproxy/internal/browsertest"
	"github.com/leadproxy/leadproxy/lead"
)

const visitsBrowserSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		api_key test-key
		form "Заявка {utmCampaign}" {
			submit  "#order"
			post    /order
			require phone
			name    field name
			phone   field phone
			comment static "{source}: {landingPage}"
		}
	}
	reverse_proxy {{UPSTREAM}}
}
`

// visitsPage is the site behind the proxy: a landing page with an order
// form (no script tag: leadproxy injects it), a thanks page, and 204s.
func visitsPage(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch {
		case r.Method == http.MethodPost:
			http.Redirect(w, r, "/thanks", http.StatusSeeOther)
		case r.URL.Path == "/thanks":
			io.WriteString(w, `<!doctype html><html><head><meta charset="utf-8"><title>ok</title></head><body><h1 id="thanks">Спасибо</h1></body></html>`)
		case strings.HasPrefix(r.URL.Path, "/land"):
			io.WriteString(w, `<!doctype html><html><head><meta charset="utf-8"><title>Диваны</title></head><body>
<form id="order" method="post" action="/order"><input name="name"><input name="phone" type="tel"><button id="send">Заказать</button></form>
</body></html>`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(up.Close)
	return up
}

// TestBrowserVisits: a real Chromium arrives from an ad and from a social
// network with UTM tags, once with the capture script running and once
// with it blocked; each sends the order form, and the site's backend then
// calls the Roistat API as Roistat's PHP sample does with the visitor's
// roistat_visit cookie and placeholders. Each lead carries its visit, the
// titles are expanded, and the report counts them under their sources.
func TestBrowserVisits(t *testing.T) {
	browser := browsertest.Launch(t)
	up := visitsPage(t)
	c := startCaddy(t, visitsBrowserSite, map[string]string{"UPSTREAM": up.URL})
	site := c.URL("PORT_SITE")

	// Chromium sends a cross-origin referrer as its origin (the default
	// strict-origin-when-cross-origin policy) and none from https to this
	// http site: the referrers are http pages, seen as their origins.
	visitAndOrder := func(t *testing.T, blockScript bool, query, referrer, name, phone string) string {
		tab := browsertest.NewTab(t, browser)
		if blockScript {
			tab.Do(t, chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
				if _, err := cdp.Call(ctx, target, network.Enable, network.EnableParams{}); err != nil {
					return err
				}
				_, err := cdp.Call(ctx, target, network.SetBlockedURLs, network.SetBlockedURLsParams{
					URLPatterns: []*network.BlockPattern{{URLPattern: site + "/_leadproxy/c.js", Block: true}}})
				return err
			}))
		}
		tab.Do(t, chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
			_, err := cdp.Call(ctx, target, cdppage.Navigate, cdppage.NavigateParams{URL: site + "/land?" + query, Referrer: referrer})
			return err
		}), chromedp.WaitVisible(chromedp.CSS(`#order`)))
		running := tab.Eval(t, `String(!!window.leadproxy)`)
		if running != map[bool]string{true: "false", false: "true"}[blockScript] {
			t.Fatalf("capture script running: %s, blocked: %v", running, blockScript)
		}
		id := tab.Eval(t, `(document.cookie.match(/(?:^|; )roistat_visit=(\d+)/) || [])[1] || ""`)
		if id == "" {
			t.Fatalf("no roistat_visit cookie readable by the page: %q", tab.Eval(t, `document.cookie`))
		}
		tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=name]`), name),
			chromedp.SetValue(chromedp.CSS(`[name=phone]`), phone),
			chromedp.Click(chromedp.CSS(`#send`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		)
		tab.Quiet(t)
		return id
	}
	leadOf := func(t *testing.T, name string) lead.Lead {
		t.Helper()
		var found lead.Lead
		waitFor(t, "the lead of "+name, browsertest.Wait, func() bool {
			var list leadList
			c.AdminJSON("/leadproxy/leads?limit=100", &list)
			for _, l := range list.Leads {
				if l.Name == name {
					found = l
					return true
				}
			}
			return false
		})
		return found
	}

	var adVisit string
	t.Run("script running", func(t *testing.T) {
		adVisit = visitAndOrder(t, false, "utm_source=yandex&utm_medium=cpc&utm_campaign=весна&yclid=42", "http://yandex.ru/search/?text=диван", "Иван", "8 912 000-00-01")
		l := leadOf(t, "Иван")
		if l.Mechanism != lead.MechSubmit || l.Visit == nil || l.Visit.ID != adVisit || l.Visit.Source != "ads" || l.Visit.UTM["campaign"] != "весна" ||
			l.Visit.Referrer != "http://yandex.ru/" || l.Title != "Заявка весна" || !strings.HasPrefix(l.Comment, "ads: "+site+"/land?utm_source=yandex") {
			t.Errorf("lead %s %q %q, visit %+v", l.Mechanism, l.Title, l.Comment, l.Visit)
		}
	})
	t.Run("script blocked", func(t *testing.T) {
		id := visitAndOrder(t, true, "utm_source=vk&utm_medium=social&utm_campaign=лето", "http://vk.com/feed", "Ольга", "+7 913 000-00-02")
		l := leadOf(t, "Ольга")
		if l.Mechanism != lead.MechPost || l.Visit == nil || l.Visit.ID != id || l.Visit.Source != "social" || l.Visit.UTM["source"] != "vk" || l.Title != "Заявка лето" {
			t.Errorf("lead %s %q, visit %+v", l.Mechanism, l.Title, l.Visit)
		}
	})
	if adVisit == "" {
		t.Fatal("no ad visit")
	}
	t.Run("PHP client API call", func(t *testing.T) {
		callRoistatPHP(t, site+"/_leadproxy/api/proxy/1.0/leads/add", map[string]string{"key": "test-key", "roistat": adVisit,
			"title": "Звонок: {utmSource} / {utmCampaign}", "name": "Пётр", "phone": "+79140000003", "fields[src]": "{source}"})
		l := leadOf(t, "Пётр")
		if l.Visit == nil || l.Visit.ID != adVisit || l.Title != "Звонок: yandex / весна" || l.CRM["src"] != "ads" {
			t.Errorf("API lead %q %v, visit %+v", l.Title, l.CRM, l.Visit)
		}
	})
	src := getReport(t, c, "source")
	if visitsOf(src["ads"]) != 1 || src["ads"].Leads != 2 || visitsOf(src["social"]) != 1 || src["social"].Leads != 1 {
		t.Errorf("report by source: %+v", src)
	}
}
