package caddymodule

// The dashboard through the real binary, behind basic_auth: leads in every
// status (a webhook receiver that accepts, rejects or is down, chosen by the
// lead's email), then the HTML: list, filters, pagination, detail, escaping,
// retry and delete with their CSRF checks. TestBrowserDashboard does the
// same in headless Chromium and takes the screenshot.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	stdhtml "html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/leadproxy/leadproxy/crm/webhook"
	"github.com/leadproxy/leadproxy/internal/browsertest"
	"github.com/leadproxy/leadproxy/lead"
)

const (
	dashUser     = "manager"
	dashPassword = "correct horse battery staple"
	dashSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

const dashSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		timezone Europe/Moscow
		destination crm webhook {
			url {{HOOK}}/crm
			secret {env.TEST_WEBHOOK_SECRET}
		}
		destination sheet webhook {
			url {{HOOK}}/sheet
			secret {env.TEST_WEBHOOK_SECRET}
		}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		api_key dash-key
		form "Обратный звонок" {
			post    /callback
			require phone
		}
	}
	handle /leads* {
		basic_auth {
			{{USER}} {{HASH}}
		}
		leadproxy_dashboard {
			page_size {{PAGE}}
		}
	}
	respond "site" 200
}
`

// dashReceiver is two destinations. /sheet takes every lead; /crm answers
// by the lead's email: fail@ gets a permanent 400 until healed, retry@ a
// 503 with an hour's Retry-After, the rest a deal id.
type dashReceiver struct {
	*httptest.Server
	hold        chan struct{} // slow@ leads wait on /crm until it closes
	holding     atomic.Int64
	healed      atomic.Bool
	deals, rows atomic.Int64
}

func newDashReceiver(t *testing.T) *dashReceiver {
	d := &dashReceiver{hold: make(chan struct{})}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env webhook.Envelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil || env.Data == nil {
			http.Error(w, "bad body", 400)
			return
		}
		switch {
		case r.URL.Path == "/sheet":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"row-%d"}`, d.rows.Add(1))
		case strings.HasPrefix(env.Data.Email, "fail@") && !d.healed.Load():
			http.Error(w, "manager_id 7 does not exist", http.StatusBadRequest)
		case strings.HasPrefix(env.Data.Email, "retry@"):
			w.Header().Set("Retry-After", "3600")
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case strings.HasPrefix(env.Data.Email, "slow@"):
			d.holding.Add(1)
			select {
			case <-d.hold:
			case <-r.Context().Done():
			}
			http.Error(w, "slow", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"deal-%d"}`, 9774765+d.deals.Add(1))
		}
	}))
	t.Cleanup(d.Close)
	t.Cleanup(func() { close(d.hold) }) // first: Close waits for handlers
	return d
}

type dashFixture struct {
	c    *caddyProc
	recv *dashReceiver
	ids  map[string]string // by email
}

// xssTitle and xssName must come out as text, never as markup.
const (
	xssTitle = `<script>window.__xss=1</script>Заказ`
	xssName  = `"><img src=x onerror="window.__xss=2">`
)

// newDashFixture starts Caddy and captures five leads, one per situation,
// waiting until each has reached its status.
func newDashFixture(t *testing.T, pageSize int) *dashFixture {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(dashPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	recv := newDashReceiver(t)
	t.Setenv("TEST_WEBHOOK_SECRET", dashSecret)
	c := startCaddy(t, dashSite, map[string]string{"HOOK": recv.URL, "USER": dashUser, "HASH": string(hash), "PAGE": fmt.Sprint(pageSize)})
	api := c.URL("PORT_SITE") + "/_leadproxy/api/proxy/1.0/leads/add"
	get := func(v url.Values) {
		t.Helper()
		v.Set("key", "dash-key")
		resp, err := noCompress.Get(api + "?" + v.Encode())
		dashExpect(t, resp, err, 200)
	}
	post := func(path string, v url.Values) {
		t.Helper()
		resp, err := noCompress.Post(c.URL("PORT_SITE")+path, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
		dashExpect(t, resp, err, 200)
	}
	get(url.Values{"title": {"Заявка с лендинга"}, "name": {"Анна Смирнова"}, "phone": {"+7 999 111-22-33"}, "email": {"anna@example.com"}, "comment": {"Перезвоните после 18:00"}})
	post("/callback", url.Values{"name": {"Борис"}, "phone": {"8 912 000 11 22"}, "email": {"fail@example.com"}})
	post("/_leadproxy/api/proxy/1.0/leads/add", url.Values{"key": {"dash-key"}, "title": {"Расчёт стоимости"}, "name": {"Вера"}, "phone": {"+79035551234"}, "email": {"retry@example.com"}})
	get(url.Values{"title": {"Тестовая заявка"}, "name": {"Глеб"}, "phone": {"+79260001122"}, "email": {"skip@example.com"}, "is_skip_sending": {"1"}})
	get(url.Values{"title": {xssTitle}, "name": {xssName}, "phone": {"+79161234567"}, "email": {"xss@example.com"}, "comment": {"<b>bold</b>"}})

	f := &dashFixture{c: c, recv: recv, ids: map[string]string{}}
	want := map[string]string{"anna@example.com": lead.StatusDelivered, "fail@example.com": lead.StatusFailed,
		"retry@example.com": lead.StatusRetrying, "skip@example.com": lead.StatusSkipped, "xss@example.com": lead.StatusDelivered}
	waitFor(t, "leads to reach their statuses", 60*time.Second, func() bool {
		var list leadList
		c.AdminJSON("/leadproxy/leads", &list)
		ok := len(list.Leads) == len(want)
		for _, l := range list.Leads {
			f.ids[l.Email] = l.ID
			if l.Status() != want[l.Email] {
				ok = false
			}
		}
		return ok
	})
	return f
}

func dashExpect(t *testing.T, resp *http.Response, err error, status int) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, status, b)
	}
	return string(b)
}

// dashClient is a browser-like client: basic auth, a cookie jar, no
// redirects followed.
type dashClient struct {
	t    *testing.T
	base string
	jar  map[string]*http.Cookie
}

func (f *dashFixture) client(t *testing.T) *dashClient {
	return &dashClient{t: t, base: f.c.URL("PORT_SITE") + "/leads", jar: map[string]*http.Cookie{}}
}

func (d *dashClient) do(method, query string, form url.Values, edit func(*http.Request)) *http.Response {
	d.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, d.base+query, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.SetBasicAuth(dashUser, dashPassword)
	for _, c := range d.jar {
		req.AddCookie(c)
	}
	if edit != nil {
		edit(req)
	}
	resp, err := noCompress.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		d.jar[c.Name] = c
	}
	return resp
}

// page GETs a dashboard view and returns its HTML.
func (d *dashClient) page(query string, status int) string {
	d.t.Helper()
	resp := d.do("GET", query, nil, nil)
	return dashExpect(d.t, resp, nil, status)
}

var (
	dashRowRE   = regexp.MustCompile(`<tr class="lead" data-id="([^"]+)" data-status="([^"]+)">`)
	dashCSRFRE  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	dashOlderRE = regexp.MustCompile(`<a href="([^"]+)" class="btn next">`)
)

func dashRows(html string) (ids []string, status map[string]string) {
	status = map[string]string{}
	for _, m := range dashRowRE.FindAllStringSubmatch(html, -1) {
		ids = append(ids, m[1])
		status[m[1]] = m[2]
	}
	return ids, status
}

func TestDashboardAdapt(t *testing.T) {
	out, err := adapt(t, "example.com {\n\thandle /leads* {\n\t\tbasic_auth {\n\t\t\tadmin $2a$04$abcdefghijklmnopqrstuuJ3l6Gq0W6Xz6bHqkQd0Nq5bH1p7y0qW\n\t\t}\n\t\tleadproxy_dashboard\n\t}\n\trespond ok\n}\n")
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	s := string(out)
	auth, dash := strings.Index(s, `"handler":"authentication"`), strings.Index(s, `"handler":"leadproxy_dashboard"`)
	if auth < 0 || dash < 0 || auth > dash {
		t.Fatalf("want basic_auth before leadproxy_dashboard with no order line:\n%s", s)
	}
	out, err = adapt(t, "example.com {\n\tleadproxy_dashboard {\n\t\tpage_size 20\n\t}\n}\n")
	if err != nil || !strings.Contains(string(out), `"page_size":20`) {
		t.Fatalf("page_size: %v %s", err, out)
	}
	for _, bad := range []struct{ body, want string }{
		{"\t\tpage_size lots", `page_size "lots": want a number from 1 to 500`},
		{"\t\tpagesize 10", `leadproxy_dashboard: unknown option "pagesize" (want page_size)`},
	} {
		_, err := adapt(t, "example.com {\n\tleadproxy_dashboard {\n"+bad.body+"\n\t}\n}\n")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("error %v, want %q", err, bad.want)
		}
	}
}

func TestDashboardHTTP(t *testing.T) {
	f := newDashFixture(t, 2)
	d := f.client(t)

	t.Run("basic_auth", func(t *testing.T) {
		resp, err := noCompress.Get(d.base)
		dashExpect(t, resp, err, http.StatusUnauthorized)
	})

	t.Run("list, escaped", func(t *testing.T) {
		resp := d.do("GET", "?status=delivered", nil, nil)
		html := dashExpect(t, resp, nil, 200)
		for h, want := range map[string]string{"Cache-Control": "no-store, no-transform", "X-Frame-Options": "DENY"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s: %q, want %q", h, got, want)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("CSP %q", csp)
		}
		ids, status := dashRows(html)
		if len(ids) != 2 || status[f.ids["anna@example.com"]] != "delivered" || status[f.ids["xss@example.com"]] != "delivered" {
			t.Fatalf("delivered rows: %v", status)
		}
		for _, raw := range []string{"<script>window.__xss", "<img src=x", "<b>bold"} {
			if strings.Contains(html, raw) {
				t.Errorf("unescaped %q in the page", raw)
			}
		}
		for _, want := range []string{"&lt;script&gt;window.__xss=1&lt;/script&gt;Заказ", "&#34;&gt;&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;"} {
			if !strings.Contains(html, want) {
				t.Errorf("list lacks %q", want)
			}
		}
		text := stdhtml.UnescapeString(html)
		for _, want := range []string{"Анна Смирнова", "+79991112233", "anna@example.com", `data-destination="crm" data-status="delivered"`, `href="#i-delivered"`, "deal-"} {
			if !strings.Contains(text, want) {
				t.Errorf("list lacks %q", want)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		cases := []struct {
			query string
			want  []string // emails
		}{
			{"?status=failed", []string{"fail@example.com"}},
			{"?status=retrying", []string{"retry@example.com"}},
			{"?status=skipped", []string{"skip@example.com"}},
			{"?" + url.Values{"form": {"Обратный звонок"}}.Encode(), []string{"fail@example.com"}},
			{"?" + url.Values{"q": {"вера"}}.Encode(), []string{"retry@example.com"}},
			{"?" + url.Values{"q": {"+7999111"}, "status": {"delivered"}}.Encode(), []string{"anna@example.com"}},
			{"?q=nobody", nil},
		}
		for _, c := range cases {
			html := d.page(c.query, 200)
			ids, _ := dashRows(html)
			var want []string
			for _, e := range c.want {
				want = append(want, f.ids[e])
			}
			if fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Errorf("%s: rows %v, want %v", c.query, ids, want)
			}
		}
		if html := d.page("?q=nobody", 200); !strings.Contains(html, "No leads match this filter") {
			t.Error("empty filter result not said")
		}
	})

	t.Run("pagination", func(t *testing.T) {
		var seen []string
		query := ""
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("more pages than leads")
			}
			html := d.page(query, 200)
			ids, _ := dashRows(html)
			if len(ids) == 0 || len(ids) > 2 {
				t.Fatalf("page %d: %d rows", pages, len(ids))
			}
			seen = append(seen, ids...)
			m := dashOlderRE.FindStringSubmatch(html)
			if m == nil {
				break
			}
			query = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		var list leadList
		f.c.AdminJSON("/leadproxy/leads", &list)
		var want []string
		for _, l := range list.Leads {
			want = append(want, l.ID)
		}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("pages listed %v, want newest first %v", seen, want)
		}
	})

	t.Run("detail", func(t *testing.T) {
		html := stdhtml.UnescapeString(d.page("?lead="+f.ids["fail@example.com"], 200))
		for _, want := range []string{"Обратный звонок", "Борис", "+79120001122", `<tr class="delivery" data-destination="crm" data-status="failed">`,
			`<tr class="delivery" data-destination="sheet" data-status="delivered">`, "HTTP 400", "manager_id 7 does not exist",
			`<tr class="attempt" data-destination="crm" data-outcome="failed">`, `name="action" value="retry"`, "row-"} {
			if !strings.Contains(html, want) {
				t.Errorf("detail lacks %q", want)
			}
		}
		d.page("?lead=01NOSUCHLEAD0000000000000", http.StatusNotFound)
	})

	t.Run("assets", func(t *testing.T) {
		resp := d.do("GET", "?asset=app.css", nil, nil)
		if css := dashExpect(t, resp, nil, 200); !strings.Contains(css, ".st-delivered") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
			t.Errorf("app.css: %s", resp.Header.Get("Content-Type"))
		}
		dashExpect(t, d.do("GET", "?asset=../dashboard.go", nil, nil), nil, http.StatusNotFound)
		dashExpect(t, d.do("PUT", "", nil, nil), nil, http.StatusMethodNotAllowed)
	})

	t.Run("retry and delete", func(t *testing.T) {
		failID, skipID := f.ids["fail@example.com"], f.ids["skip@example.com"]
		html := d.page("?lead="+failID, 200)
		m := dashCSRFRE.FindStringSubmatch(html)
		if m == nil {
			t.Fatal("no csrf token in the form")
		}
		token := m[1]
		retry := url.Values{"csrf": {token}, "action": {"retry"}, "lead": {failID}}
		// Refused: no token; a token from another cookie; a cross-site post.
		noToken := url.Values{"action": {"retry"}, "lead": {failID}}
		dashExpect(t, d.do("POST", "?lead="+failID, noToken, nil), nil, http.StatusForbidden)
		other := &dashClient{t: t, base: d.base, jar: map[string]*http.Cookie{}}
		other.page("", 200) // its own cookie
		dashExpect(t, other.do("POST", "?lead="+failID, retry, nil), nil, http.StatusForbidden)
		dashExpect(t, d.do("POST", "?lead="+failID, retry, func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }), nil, http.StatusForbidden)
		dashExpect(t, d.do("POST", "?lead="+failID, retry, func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }), nil, http.StatusForbidden)
		var l lead.Lead
		f.c.AdminJSON("/leadproxy/leads/"+failID, &l)
		if d := l.Delivery("crm"); l.Status() != lead.StatusFailed || d == nil || d.Attempts != 1 {
			t.Fatalf("a refused post changed the lead: %+v", l.Deliveries)
		}

		f.recv.healed.Store(true)
		resp := d.do("POST", "?lead="+failID, retry, nil)
		dashExpect(t, resp, nil, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "?done=retry&lead="+failID {
			t.Errorf("Location %q", loc)
		}
		waitFor(t, "the retried lead delivered", 30*time.Second, func() bool {
			f.c.AdminJSON("/leadproxy/leads/"+failID, &l)
			return l.Status() == lead.StatusDelivered
		})
		if html := d.page("?done=retry&lead="+failID, 200); !strings.Contains(html, "Queued for sending now.") || !strings.Contains(html, `<tr class="attempt" data-destination="crm" data-outcome="delivered">`) {
			t.Error("after retry: no flash or no delivered attempt")
		}

		del := url.Values{"csrf": {token}, "action": {"delete"}, "lead": {skipID}}
		resp = d.do("POST", "?lead="+skipID, del, nil)
		dashExpect(t, resp, nil, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "?done=delete" {
			t.Errorf("Location after delete %q", loc)
		}
		if code := f.c.AdminJSON("/leadproxy/leads/"+skipID, nil); code != http.StatusNotFound {
			t.Errorf("deleted lead: admin API answers %d", code)
		}
		dashExpect(t, d.do("POST", "", del, nil), nil, http.StatusNotFound)
	})
}

// TestBrowserDashboard opens the dashboard in headless Chromium behind
// basic_auth: the list with a status icon per destination, the detail
// view, the retry button; it saves a screenshot into the test's artifact
// directory (go test -artifacts keeps it) and, with LEADPROXY_SCREENSHOT=1,
// into docs/dashboard.png for the README.
func TestBrowserDashboard(t *testing.T) {
	browser := browsertest.Launch(t, chromedp.Flag("hide-scrollbars", true), chromedp.Flag("lang", "en-US"))
	f := newDashFixture(t, 50)
	tab := newDashTab(t, browser)
	base := f.c.URL("PORT_SITE") + "/leads"

	type destIcon struct{ Name, Status, Icon, Color string }
	type row struct {
		ID, Status, Title, Contact, Error, CRM string
		Dests                                  []destIcon
	}
	readRows := func() map[string]row {
		var rows []row
		tab.evalJSON(t, `JSON.stringify([...document.querySelectorAll("tr.lead")].map(tr => ({
			ID: tr.dataset.id, Status: tr.dataset.status,
			Title: tr.querySelector("td.title a").textContent,
			Contact: tr.querySelector("td.contact").innerText,
			Error: tr.querySelector("td.err").innerText,
			CRM: tr.querySelector("td.crm").innerText.trim(),
			Dests: [...tr.querySelectorAll(".dest")].map(d => {
				const use = d.querySelector("svg use"), box = d.querySelector("svg").getBoundingClientRect();
				return {Name: d.innerText.trim(), Status: d.dataset.status,
					Icon: box.width > 0 && document.querySelector(use.getAttribute("href")) ? use.getAttribute("href") : "",
					Color: getComputedStyle(d.querySelector(".st")).color};
			}),
		})))`, &rows)
		byEmail := map[string]row{}
		for email, id := range f.ids {
			for _, r := range rows {
				if r.ID == id {
					byEmail[email] = r
				}
			}
		}
		if len(rows) != len(byEmail) {
			t.Fatalf("%d rows, %d of them known leads", len(rows), len(byEmail))
		}
		return byEmail
	}

	tab.Do(t, chromedp.EmulateViewport(1280, 720), chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("table.leads")))
	rows := readRows()
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5", len(rows))
	}
	// One icon per destination, drawn, in the status's colour.
	colors := map[string]string{"delivered": "rgb(21, 128, 61)", "failed": "rgb(185, 28, 28)", "retrying": "rgb(180, 83, 9)", "skipped": "rgb(107, 114, 128)"}
	want := map[string]map[string]string{ // email → destination → status
		"anna@example.com":  {"crm": "delivered", "sheet": "delivered"},
		"fail@example.com":  {"crm": "failed", "sheet": "delivered"},
		"retry@example.com": {"crm": "retrying", "sheet": "delivered"},
		"skip@example.com":  {"Not sent": "skipped"}, // the one name of the no-CRM state
		"xss@example.com":   {"crm": "delivered", "sheet": "delivered"},
	}
	for email, r := range rows {
		got := map[string]string{}
		for _, d := range r.Dests {
			got[d.Name] = d.Status
			if d.Icon != "#i-"+d.Status || d.Color != colors[d.Status] {
				t.Errorf("%s: %s icon %+v", email, d.Name, d)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[email]) {
			t.Errorf("%s: destinations %v, want %v", email, got, want[email])
		}
	}
	if anna := rows["anna@example.com"]; anna.Title != "Заявка с лендинга" || !strings.Contains(anna.Contact, "Анна Смирнова\n+79991112233\nanna@example.com") ||
		!strings.Contains(anna.CRM, "deal-") || !strings.Contains(anna.CRM, "row-") || anna.Status != "delivered" {
		t.Errorf("delivered row: %+v", anna)
	}
	if fail := rows["fail@example.com"]; fail.Status != "failed" || !strings.Contains(fail.Error, "HTTP 400") {
		t.Errorf("failed row: %+v", fail)
	}
	if xss := rows["xss@example.com"]; xss.Title != xssTitle || !strings.Contains(xss.Contact, xssName) {
		t.Errorf("markup in lead values not shown as text: %+v", xss)
	}
	if v := tab.Eval(t, `String(window.__xss || "")`); v != "" {
		t.Fatalf("lead values ran as script: %s", v)
	}

	// The screenshot, without the markup lead.
	req, _ := http.NewRequest("DELETE", f.c.Admin+"/leadproxy/leads/"+f.ids["xss@example.com"], nil)
	resp, err := http.DefaultClient.Do(req)
	dashExpect(t, resp, err, http.StatusNoContent)
	delete(f.ids, "xss@example.com")
	tab.Do(t, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table.leads")))
	if n := len(readRows()); n != 4 {
		t.Fatalf("%d rows after a delete", n)
	}
	saveScreenshot(t, tab.screenshot(t), "dashboard.png")

	// The failed lead's page: each delivery and attempt; then retry.
	failID := f.ids["fail@example.com"]
	tab.Do(t, chromedp.Click(chromedp.CSS(`tr.lead[data-id="`+failID+`"] td.title a`)), chromedp.WaitVisible(chromedp.CSS("table.deliveries")))
	type detailView struct{ Deliveries, Attempts, Badge string }
	readDetail := func() detailView {
		var v detailView
		tab.evalJSON(t, `JSON.stringify({
			Deliveries: [...document.querySelectorAll("tr.delivery")].map(tr => tr.dataset.destination + ":" + tr.dataset.status + ":" +
				tr.querySelector("td.num").innerText + ":" + tr.querySelector("td.err").innerText).join(" | "),
			Attempts: [...document.querySelectorAll("tr.attempt[data-destination=crm]")].map(a => a.dataset.outcome).join(","),
			Badge: document.querySelector("h1 .badge").innerText.trim(),
		})`, &v)
		return v
	}
	if v := readDetail(); v.Deliveries != "crm:failed:1:HTTP 400: manager_id 7 does not exist | sheet:delivered:1:" || v.Attempts != "failed" || v.Badge != "Failed" {
		t.Errorf("detail view: %+v", v)
	}
	f.recv.healed.Store(true)
	tab.Do(t, chromedp.Click(chromedp.CSS("button.retry")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if flash := tab.Eval(t, `document.querySelector(".flash").innerText`); flash != "Queued for sending now." {
		t.Errorf("flash %q", flash)
	}
	waitFor(t, "the retried lead delivered", 30*time.Second, func() bool {
		var l lead.Lead
		f.c.AdminJSON("/leadproxy/leads/"+failID, &l)
		return l.Status() == lead.StatusDelivered
	})
	tab.Do(t, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table.deliveries")))
	if v := readDetail(); v.Deliveries != "crm:delivered:2: | sheet:delivered:1:" || v.Attempts != "delivered,failed" || v.Badge != "Delivered" {
		t.Errorf("after retry: %+v", v)
	}
	if n := tab.Eval(t, `String(document.querySelectorAll("button.retry").length)`); n != "0" {
		t.Errorf("a delivered lead still offers retry (%s buttons)", n)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "dashboard-lead.png"), tab.screenshot(t), 0o644); err != nil {
		t.Fatal(err)
	}

	// A delivery in flight (the CRM has not answered yet) is pending, with
	// its own icon and colour.
	v := url.Values{"key": {"dash-key"}, "title": {"Долгий ответ"}, "name": {"Дина"}, "phone": {"+79035550000"}, "email": {"slow@example.com"}}
	resp, err = noCompress.Get(f.c.URL("PORT_SITE") + "/_leadproxy/api/proxy/1.0/leads/add?" + v.Encode())
	dashExpect(t, resp, err, 200)
	waitFor(t, "the slow delivery in flight", 30*time.Second, func() bool {
		var list leadList
		f.c.AdminJSON("/leadproxy/leads", &list)
		for _, l := range list.Leads {
			if l.Email == "slow@example.com" {
				f.ids[l.Email] = l.ID
				if d := l.Delivery("sheet"); d == nil || d.Status != lead.StatusDelivered {
					return false
				}
			}
		}
		return f.recv.holding.Load() > 0 && f.ids["slow@example.com"] != ""
	})
	tab.Do(t, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("table.leads")))
	slow := readRows()["slow@example.com"]
	got := map[string]string{}
	for _, d := range slow.Dests {
		got[d.Name] = d.Status
		if want := map[string]string{"crm": "pending", "sheet": "delivered"}[d.Name]; d.Status != want || d.Icon != "#i-"+want ||
			d.Color != map[string]string{"pending": "rgb(107, 114, 128)", "delivered": colors["delivered"]}[want] {
			t.Errorf("in-flight lead: %s icon %+v", d.Name, d)
		}
	}
	if slow.Status != "pending" || len(got) != 2 {
		t.Errorf("in-flight lead row: %+v", slow)
	}
	tab.Quiet(t)
}

// dashTab is a tab that sends the dashboard's basic auth with every
// request and records console errors (CSP violations among them).
type dashTab struct{ *browsertest.Tab }

func newDashTab(t *testing.T, browser context.Context) *dashTab {
	t.Helper()
	tab := &dashTab{browsertest.NewTab(t, browser)}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(dashUser+":"+dashPassword))
	tab.Do(t, chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		if _, err := cdp.Call(ctx, target, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, target, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	}))
	return tab
}

func (b *dashTab) evalJSON(t *testing.T, js string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(b.Eval(t, js)), v); err != nil {
		t.Fatal(err)
	}
}

func (b *dashTab) screenshot(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, browsertest.Wait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return png
}
