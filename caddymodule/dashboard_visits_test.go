package caddymodule

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/leadproxy/leadproxy/internal/browsertest"
)

// TestDashboardLanguageZoneReportExport: the dashboard in Russian and
// English, times in the site's zone, the report view with its chart, the
// CSV link, and a 400 for an unknown status.
func TestDashboardLanguageZoneReportExport(t *testing.T) {
	f := newDashFixture(t, 50)
	d := f.client(t)
	ru := func(r *http.Request) { r.Header.Set("Accept-Language", "ru-RU,ru;q=0.9,en;q=0.8") }

	t.Run("language from Accept-Language, switchable", func(t *testing.T) {
		html := dashExpect(t, d.do("GET", "", nil, ru), nil, 200)
		for _, want := range []string{`<html lang="ru">`, "<h1>Заявки</h1>", "Доставлена", "Не отправлена", "Выгрузить CSV", `hreflang="en"`} {
			if !strings.Contains(html, want) {
				t.Errorf("Russian list lacks %q", want)
			}
		}
		if strings.Contains(html, "not sent") || strings.Contains(html, ">Delivered<") {
			t.Error("English left in the Russian list")
		}
		// ?lang=en switches and is remembered, whatever the browser asks.
		html = dashExpect(t, d.do("GET", "?lang=en", nil, ru), nil, 200)
		if !strings.Contains(html, `<html lang="en">`) || !strings.Contains(html, "<h1>Leads</h1>") || !strings.Contains(html, "Not sent") {
			t.Error("?lang=en did not switch to English")
		}
		if html = dashExpect(t, d.do("GET", "", nil, ru), nil, 200); !strings.Contains(html, `<html lang="en">`) {
			t.Error("the language choice was not remembered")
		}
		dashExpect(t, d.do("GET", "?lang=ru", nil, nil), nil, 200)
	})

	t.Run("times in the site's time zone", func(t *testing.T) {
		html := d.page("?lead="+f.ids["anna@example.com"], 200)
		m := regexp.MustCompile(`<time datetime="([^"]+)">([^<]+)</time>`).FindStringSubmatch(html)
		if m == nil {
			t.Fatal("no time on the lead page")
		}
		at, err := time.Parse(time.RFC3339, m[1])
		if err != nil {
			t.Fatal(err)
		}
		msk, _ := time.LoadLocation("Europe/Moscow")
		if want := at.In(msk).Format("02.01.2006 15:04:05 MST"); m[2] != want {
			t.Errorf("time shown %q, want %q (Moscow)", m[2], want)
		}
	})

	t.Run("unknown status", func(t *testing.T) {
		html := d.page("?status=sent", 400)
		if !strings.Contains(html, "want one of pending, retrying, delivered, failed, skipped") {
			t.Errorf("no allowed values in %q", html)
		}
	})

	t.Run("report", func(t *testing.T) {
		today := time.Now().In(mustLoc(t, "Europe/Moscow")).Format("2006-01-02")
		html := d.page("?view=report&by=form&from="+today+"&to="+today, 200)
		for _, want := range []string{"Откуда заявки", `<table class="report" data-by="form">`, `data-key="api"`, `data-key="Обратный звонок"`, `<svg class="chart"`, "<rect "} {
			if !strings.Contains(html, want) {
				t.Errorf("report lacks %q", want)
			}
		}
		row := regexp.MustCompile(`(?s)<tr class="group" data-key="api">.*?<td class="num leads">(\d+)</td>`).FindStringSubmatch(html)
		if row == nil || row[1] != "4" {
			t.Errorf("api leads in the report: %v", row)
		}
		if html := d.page("?view=report&from=2026-13-01", 400); !strings.Contains(html, `from=&#34;2026-13-01&#34;: want a date like 2026-12-01`) {
			t.Error("a bad date is not explained")
		}
		resp := d.do("GET", "?view=report", nil, nil)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("report CSP %q", csp)
		}
		resp.Body.Close()
	})

	t.Run("export", func(t *testing.T) {
		html := d.page("?status=delivered", 200)
		link := regexp.MustCompile(`<a href="([^"]+)" class="btn export"`).FindStringSubmatch(html)
		if link == nil {
			t.Fatal("no export link")
		}
		href := strings.ReplaceAll(link[1], "&amp;", "&")
		if href != "?export=csv&status=delivered" {
			t.Errorf("export link %q keeps the filter?", href)
		}
		resp := d.do("GET", href, nil, nil)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export: %d %v", resp.StatusCode, resp.Header)
		}
		rows := readCSVWithPython(t, raw)
		names := map[string]string{}
		for _, r := range rows {
			names[r["email"]] = r["name"]
			if r["status"] != "delivered" {
				t.Errorf("row of status %q in a delivered export", r["status"])
			}
		}
		if names["anna@example.com"] != "Анна Смирнова" || names[`xss@example.com`] != xssName {
			t.Errorf("export rows %v", names)
		}
	})
}

func mustLoc(t *testing.T, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestBrowserDashboardReport: the report view in Chromium under the
// dashboard's CSP: the chart is drawn (no CSP report, no console error),
// in Russian when switched to it.
func TestBrowserDashboardReport(t *testing.T) {
	f := newDashFixture(t, 50)
	browser := browsertest.Launch(t)
	tab := newDashTab(t, browser)
	tab.Do(t, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(f.c.URL("PORT_SITE")+"/leads?view=report&by=source&lang=ru"),
		chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	if n := tab.Eval(t, `String(document.querySelectorAll("svg.chart rect").length)`); n != "60" {
		t.Errorf("%s bars, want 60 (30 days, visits and leads)", n)
	}
	if h := tab.Eval(t, `document.querySelector("h1").textContent`); h != "Откуда заявки" {
		t.Errorf("heading %q", h)
	}
	if w := tab.Eval(t, `String(document.querySelector("svg.chart").getBoundingClientRect().width > 300)`); w != "true" {
		t.Error("the chart is not laid out")
	}
	tab.Quiet(t)
	saveScreenshot(t, tab.screenshot(t), "report.png")
}

// saveScreenshot keeps a screenshot with the test's artifacts and, with
// LEADPROXY_SCREENSHOT=1, as docs/<name> for the README.
func saveScreenshot(t *testing.T, shot []byte, name string) {
	t.Helper()
	out := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	if os.Getenv("LEADPROXY_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "docs", name), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowserDashboardSearchAsTyped: typing a phone as a visitor would
// write it narrows the list without pressing Filter.
func TestBrowserDashboardSearchAsTyped(t *testing.T) {
	f := newDashFixture(t, 50)
	browser := browsertest.Launch(t)
	tab := newDashTab(t, browser)
	rows := `String(document.querySelectorAll("#results tr.lead").length)`
	tab.Do(t, chromedp.Navigate(f.c.URL("PORT_SITE")+"/leads?lang=en"), chromedp.WaitVisible(chromedp.CSS("table.leads")))
	if n := tab.Eval(t, rows); n != "5" {
		t.Fatalf("%s rows before the search", n)
	}
	tab.Do(t, chromedp.SendKeys(chromedp.CSS(`input[name=q]`), "8 912 000-11"))
	ctx, cancel := context.WithTimeout(tab.Ctx, browsertest.Wait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll("#results tr.lead").length === 1`)); err != nil {
		t.Fatalf("the list did not narrow as the phone was typed: %s rows", tab.Eval(t, rows))
	}
	if who := tab.Eval(t, `document.querySelector("#results tr.lead td.contact").textContent`); !strings.Contains(who, "+79120001122") {
		t.Errorf("found %q", who)
	}
	if href := tab.Eval(t, `document.querySelector("a.export").getAttribute("href")`); !strings.Contains(href, "q=8+912+000-11") {
		t.Errorf("export link %q does not follow the search", href)
	}
	if u := tab.Eval(t, `location.search`); !strings.Contains(u, "q=8+912") {
		t.Errorf("the address %q does not keep the search", u)
	}
	tab.Quiet(t)
}
