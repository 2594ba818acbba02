package caddymodule

// The capture script end to end: Debian's headless Chromium, driven by
// chromedp, loads pages through the real binary (leadproxy in front of a Go
// upstream that serves the pages of intercept/testdata/browser and records
// every POST). The upstream takes the script tag out of each page: here
// leadproxy injects it. Each case asserts exactly one
// lead in the admin API, with the right fields, and that the upstream got
// every POST byte for byte as the browser sent it.
//
// Without a browser TestBrowserE2E skips, unless LEADPROXY_REQUIRE_BROWSER=1
// (CI), which makes it fail.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/text/encoding/charmap"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/internal/browsertest"
	"github.com/leadproxy/leadproxy/lead"
)

// e2eBrowserWait bounds every wait of these tests: it only turns a hang into
// a failure, it measures nothing.
const e2eBrowserWait = browsertest.Wait

// e2eScriptTag is the tag the shared test pages carry, removed by the
// upstream so that Caddy's injection has to put it back.
const e2eScriptTag = `<script src="/_leadproxy/c.js" defer></script>`

// e2eBrowserUpstream is the site behind leadproxy: it serves the pages of
// intercept/testdata/browser, less their script tag, under /p/ ({{other}} is its own direct URL, a second
// origin; cp1251.html is sent in windows-1251) and records every POST.
// POSTs to /send* answer 303 to /thanks, other POSTs answer JSON.
type e2eBrowserUpstream struct {
	*httptest.Server
	mu    sync.Mutex
	posts []e2eBrowserPost
}

type e2eBrowserPost struct {
	Path, ContentType, Cookie string
	Body                      []byte
	Proxied                   bool // came through Caddy, not straight from the browser
}

func newE2EBrowserUpstream(t *testing.T) *e2eBrowserUpstream {
	u := &e2eBrowserUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *e2eBrowserUpstream) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		u.mu.Lock()
		u.posts = append(u.posts, e2eBrowserPost{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Cookie: r.Header.Get("Cookie"),
			Body: body, Proxied: r.Header.Get("X-Forwarded-For") != ""})
		u.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/send") {
			http.Redirect(w, r, "/thanks", http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	case strings.HasPrefix(r.URL.Path, "/p/"):
		name := filepath.Base(r.URL.Path)
		// The intercept tests' pages, which carry the tag themselves.
		b, err := os.ReadFile(filepath.Join("..", "intercept", "testdata", "browser", name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		before, after, ok := strings.Cut(string(b), e2eScriptTag+"\n")
		if !ok {
			http.Error(w, name+" has no script tag to take out: the page would not test injection", 500)
			return
		}
		page := strings.ReplaceAll(before+after, "{{other}}", u.URL)
		charset := "utf-8"
		if name == "cp1251.html" {
			charset = "windows-1251"
			if page, err = charmap.Windows1251.NewEncoder().String(page); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		w.Header().Set("Content-Type", "text/html; charset="+charset)
		io.WriteString(w, page)
	case r.URL.Path == "/thanks":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><meta charset="utf-8"><title>ok</title></head><body><h1 id="thanks">Спасибо</h1></body></html>`)
	default:
		// favicon and anything else: empty, so no 404 reaches the console.
		w.WriteHeader(http.StatusNoContent)
	}
}

func (u *e2eBrowserUpstream) got(path string) []e2eBrowserPost {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []e2eBrowserPost
	for _, p := range u.posts {
		if p.Path == path {
			out = append(out, p)
		}
	}
	return out
}

// e2eBrowserTab is one tab, the requests it sent (with their bodies, as the
// browser put them on the wire) and what its pages logged as errors.
type e2eBrowserTab struct {
	*browsertest.Tab
	ctx  context.Context
	mu   sync.Mutex
	reqs []*e2eBrowserReq
	byID map[network.RequestID]*e2eBrowserReq
}

type e2eBrowserReq struct {
	Method  string
	URL     *url.URL
	Body    []byte
	HasBody bool
	Status  int64
	Done    bool
	Failed  string
}

func newE2EBrowserTab(t *testing.T, browser context.Context) *e2eBrowserTab {
	t.Helper()
	bt := browsertest.NewTab(t, browser)
	tab := &e2eBrowserTab{Tab: bt, ctx: bt.Ctx, byID: map[network.RequestID]*e2eBrowserReq{}}
	if err := chromedp.Listen(bt.Ctx, tab.event); err != nil {
		t.Fatal(err)
	}
	return tab
}

// event runs on chromedp's reading goroutine: it only records.
func (b *e2eBrowserTab) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if prev := b.byID[ev.RequestID]; prev != nil && ev.RedirectResponse != nil {
			prev.Done, prev.Status = true, ev.RedirectResponse.Status
		}
		u, err := url.Parse(ev.Request.URL)
		if err != nil {
			return
		}
		r := &e2eBrowserReq{Method: ev.Request.Method, URL: u, HasBody: ev.Request.HasPostData}
		for _, e := range ev.Request.PostDataEntries {
			r.Body = append(r.Body, e.Bytes...)
		}
		b.reqs = append(b.reqs, r)
		b.byID[ev.RequestID] = r
	case *network.EventResponseReceived:
		if r := b.byID[ev.RequestID]; r != nil {
			r.Status = ev.Response.Status
		}
	case *network.EventLoadingFinished:
		if r := b.byID[ev.RequestID]; r != nil {
			r.Done = true
		}
	case *network.EventLoadingFailed:
		if r := b.byID[ev.RequestID]; r != nil {
			r.Done, r.Failed = true, ev.ErrorText
		}
	}
}

// dump lists the tab's requests, for failure messages.
func (b *e2eBrowserTab) dump() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	for _, r := range b.reqs {
		fmt.Fprintf(&sb, "  %s %s: status %d done %v %s, body %d bytes\n", r.Method, r.URL, r.Status, r.Done, r.Failed, len(r.Body))
	}
	return sb.String()
}

// posts returns a copy of the POSTs the tab sent to path.
func (b *e2eBrowserTab) posts(path string) []e2eBrowserReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []e2eBrowserReq
	for _, r := range b.reqs {
		if r.Method == http.MethodPost && r.URL.Path == path {
			out = append(out, *r)
		}
	}
	return out
}

// doubleClick is what a visitor's double click sends: two presses, the
// second with clickCount 2, so two click events and two submits.
func (b *e2eBrowserTab) doubleClick(t *testing.T, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, e2eBrowserWait)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	b.Do(t, chromedp.MouseClickNode(nodes[0]), chromedp.MouseClickNode(nodes[0], chromedp.ClickCount(2)))
}

// e2eBrowserSite is one case: an upstream, a Caddy with the case's
// leadproxy block in front of it (fresh storage, so lead counts are exact)
// and a tab.
type e2eBrowserSite struct {
	caddy *caddyProc
	up    *e2eBrowserUpstream
	tab   *e2eBrowserTab
	// stepReports: the page sends reports without contact data (a
	// multi-step form's early steps), which collect answers 202.
	stepReports bool
}

const e2eBrowserCaddyfile = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	log {
		output stderr
		format json
	}
	leadproxy {
{{LP}}
	}
	reverse_proxy {{UPSTREAM}}
}
`

func newE2EBrowserSite(t *testing.T, browser context.Context, lp string) *e2eBrowserSite {
	t.Helper()
	up := newE2EBrowserUpstream(t)
	c := startCaddy(t, e2eBrowserCaddyfile, map[string]string{"UPSTREAM": up.URL, "LP": lp})
	return &e2eBrowserSite{caddy: c, up: up, tab: newE2EBrowserTab(t, browser)}
}

func (s *e2eBrowserSite) url(pathAndQuery string) string {
	return s.caddy.URL("PORT_SITE") + pathAndQuery
}

// open loads a page through Caddy and checks that leadproxy injected the
// script (the pages have no tag of their own) and that it runs.
func (s *e2eBrowserSite) open(t *testing.T, page string) {
	t.Helper()
	s.tab.Do(t, chromedp.Navigate(s.url("/p/"+page)))
	if n := s.tab.Eval(t, `String(document.querySelectorAll('script[src$="/_leadproxy/c.js"]').length)`); n != "1" {
		t.Fatalf("%s: %s injected script tags, want 1", page, n)
	}
	ctx, cancel := context.WithTimeout(s.tab.ctx, e2eBrowserWait)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`!!(window.leadproxy && window.leadproxy.version === "1")`)); err != nil {
		t.Fatalf("capture script not running on %s: %v", page, err)
	}
}

// handled returns the statuses of the requests Caddy's access log shows for
// method and path. Caddy logs a request when its handler chain has returned:
// for a POST after the capture, for a report after it was stored.
func (s *e2eBrowserSite) handled(method, path string) []int {
	var out []int
	for _, line := range strings.Split(s.caddy.logs.String(), "\n") {
		if !strings.Contains(line, `"handled request"`) {
			continue
		}
		var e struct {
			Request struct{ Method, URI string }
			Status  int
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Request.Method != method {
			continue
		}
		if p, _, _ := strings.Cut(e.Request.URI, "?"); p == path {
			out = append(out, e.Status)
		}
	}
	return out
}

const e2eBrowserCollect = "/_leadproxy/collect"

// settle waits until the upstream got posts[path] POSTs for each path,
// Caddy has answered every one of them that came through it, and it has
// answered at least reports reports to collect (and at least as many as the
// tab saw leave). The handler stores a lead before it answers, so after
// settle the leads are final and a count is exact.
//
// Caddy's log is the truth here, not the tab's network events: a beacon
// sent as the page navigates away goes on, but the tab reports no answer.
func (s *e2eBrowserSite) settle(t *testing.T, reports int, posts map[string]int) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("requests of the tab:\n%s", s.tab.dump())
		}
	}()
	waitFor(t, fmt.Sprintf("%d reports and upstream posts %v", reports, posts), e2eBrowserWait, func() bool {
		for p, n := range posts {
			got := s.up.got(p)
			if len(got) < n {
				return false
			}
			proxied := 0
			for _, g := range got {
				if g.Proxied {
					proxied++
				}
			}
			if len(s.handled(http.MethodPost, p)) < proxied {
				return false
			}
		}
		want := max(reports, len(s.tab.posts(e2eBrowserCollect)))
		return len(s.handled(http.MethodPost, e2eBrowserCollect)) >= want
	})
	for _, st := range s.handled(http.MethodPost, e2eBrowserCollect) {
		if st != http.StatusNoContent && !(st == http.StatusAccepted && s.stepReports) {
			t.Errorf("a report to collect was answered %d, want 204", st)
		}
	}
	for p, n := range posts {
		if got := len(s.up.got(p)); got != n {
			t.Errorf("upstream got %d POSTs to %s, want %d", got, p, n)
		}
	}
}

// oneLead asserts the store holds exactly one lead and returns it.
func (s *e2eBrowserSite) oneLead(t *testing.T) lead.Lead {
	t.Helper()
	var list leadList
	waitFor(t, "a lead", e2eBrowserWait, func() bool {
		list = leadList{}
		s.caddy.AdminJSON("/leadproxy/leads?limit=100", &list)
		return len(list.Leads) > 0
	})
	if len(list.Leads) != 1 {
		b, _ := json.MarshalIndent(list.Leads, "", "  ")
		t.Fatalf("%d leads, want exactly one:\n%s", len(list.Leads), b)
	}
	var l lead.Lead
	if code := s.caddy.AdminJSON("/leadproxy/leads/"+list.Leads[0].ID, &l); code != 200 {
		t.Fatalf("GET lead: %d", code)
	}
	return l
}

// forwarded asserts that the upstream got each POST the browser sent to
// path with the very bytes the browser sent, and returns what it got.
func (s *e2eBrowserSite) forwarded(t *testing.T, path string, n int) []e2eBrowserPost {
	t.Helper()
	// The tab's events travel apart from the requests: let them catch up.
	waitFor(t, fmt.Sprintf("the tab's record of %d POSTs to %s", n, path), e2eBrowserWait, func() bool {
		return len(s.tab.posts(path)) >= n
	})
	sent, got := s.tab.posts(path), s.up.got(path)
	if len(sent) != n || len(got) != n {
		t.Fatalf("POST %s: browser sent %d, upstream got %d, want %d", path, len(sent), len(got), n)
	}
	left := append([]e2eBrowserPost(nil), got...)
	for _, r := range sent {
		if !r.HasBody || len(r.Body) == 0 {
			t.Fatalf("POST %s: the browser reported no body", path)
		}
		i := 0
		for i < len(left) && string(left[i].Body) != string(r.Body) {
			i++
		}
		if i == len(left) {
			t.Fatalf("POST %s: the upstream got no body equal to the browser's:\nsent %q\ngot  %q", path, r.Body, bodiesOf(got))
		}
		left = append(left[:i], left[i+1:]...)
	}
	return got
}

func bodiesOf(ps []e2eBrowserPost) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p.Body))
	}
	return out
}

// hasMarker reports whether a request's Cookie header carries the marker.
func (p e2eBrowserPost) hasMarker() bool {
	r := http.Request{Header: http.Header{"Cookie": {p.Cookie}}}
	_, err := r.Cookie(intercept.MarkerCookie)
	return err == nil
}

// e2eBrowserCheck compares a lead's values to want; keys are main fields
// (name, phone, email, comment, title, form, mechanism), "extra:<label>",
// "crm:<key>" and "field:<name>"; a want of "-" means absent.
func e2eBrowserCheck(t *testing.T, l lead.Lead, want map[string]string) {
	t.Helper()
	for k, w := range want {
		var got string
		var ok bool
		switch kind, key, _ := strings.Cut(k, ":"); kind {
		case "extra":
			got, ok = l.Extra[key]
		case "crm":
			got, ok = l.CRM[key]
		case "field":
			got, ok = l.Fields[key]
		default:
			got = map[string]string{"name": l.Name, "phone": l.Phone, "email": l.Email, "comment": l.Comment,
				"title": l.Title, "form": l.Form, "mechanism": l.Mechanism}[k]
			ok = got != ""
		}
		if w == "-" {
			if ok {
				t.Errorf("lead %s = %q, want it absent", k, got)
			}
		} else if got != w {
			t.Errorf("lead %s = %q, want %q", k, got, w)
		}
	}
	if len(l.SubmissionID) < 16 {
		t.Errorf("lead submission id %q, want the script's (16+ chars)", l.SubmissionID)
	}
	if l.Visit == nil || l.Visit.ID == "" || l.Visit.IP != "127.0.0.1" {
		t.Errorf("lead visit %+v: want the script's visit id and the client IP", l.Visit)
	}
	if t.Failed() {
		b, _ := json.MarshalIndent(l, "", "  ")
		t.Logf("lead:\n%s", b)
	}
}

func TestBrowserE2E(t *testing.T) {
	browser := browsertest.Launch(t)

	t.Run("classic POST with redirect", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Классика" {
			submit  "#contact"
			name    field Name
			phone   field Phone
			extra   "Город" selector "#city"
			crm     status_id js "return 140 + 2"
		}`)
		s.open(t, "classic.html?utm_source=yandex&utm_campaign=spring")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=Name]`), "Иван"),
			chromedp.SetValue(chromedp.CSS(`[name=Phone]`), "+7 999 123-45-67"),
			chromedp.SetValue(chromedp.CSS(`[name=email]`), "ivan@example.com"),
			chromedp.SetValue(chromedp.CSS(`#city`), "Казань"),
			chromedp.Click(chromedp.CSS(`#send`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		)
		s.settle(t, 1, map[string]int{"/send": 1})
		got := s.forwarded(t, "/send", 1)
		if !got[0].hasMarker() || !strings.Contains(string(got[0].Body), "csrf-secret-4f1c") {
			t.Errorf("upstream got cookie %q body %q: want the marker and the CSRF token passed on", got[0].Cookie, got[0].Body)
		}
		l := s.oneLead(t)
		e2eBrowserCheck(t, l, map[string]string{
			"title": "Классика", "form": "Классика", "mechanism": "submit",
			"name": "Иван", "phone": "+79991234567", "email": "ivan@example.com",
			"extra:Город": "Казань", "crm:status_id": "142",
			"field:Name": "Иван", "field:agree": "yes", "field:_token": "-",
		})
		if v := l.Visit; v == nil || v.UTM["source"] != "yandex" || v.UTM["campaign"] != "spring" || !strings.Contains(v.Landing, "/p/classic.html") {
			t.Errorf("lead visit %+v: want the landing page and its utm values", v)
		}
		s.tab.Quiet(t)
	})

	t.Run("fetch with preventDefault and multipart FormData", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "CF7" {
			submit ".wpcf7-form"
		}`)
		s.open(t, "fetch.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=your-name]`), "Анна"),
			chromedp.SetValue(chromedp.CSS(`[name=your-phone]`), "+79990001122"),
			chromedp.SetValue(chromedp.CSS(`[name=your-message]`), "Перезвоните после 18:00"),
			chromedp.Click(chromedp.CSS(`#submit`)),
		)
		s.tab.WaitText(t, "#status", "sent;")
		path := "/wp-json/contact-form-7/v1/contact-forms/1/feedback"
		s.settle(t, 1, map[string]int{path: 1})
		got := s.forwarded(t, path, 1)
		if !strings.HasPrefix(got[0].ContentType, "multipart/form-data; boundary=") || !got[0].hasMarker() {
			t.Errorf("upstream got %q, cookie %q: want multipart with the marker", got[0].ContentType, got[0].Cookie)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "CF7", "mechanism": "submit",
			"name": "Анна", "phone": "+79990001122", "comment": "Перезвоните после 18:00",
			"field:_wpcf7": "1", "field:your-phone": "+79990001122", "field:_wpnonce": "-",
		})
		s.tab.Quiet(t)
	})

	t.Run("jQuery-style XHR urlencoded", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Обратный звонок" {
			click ".js-send"
			name  field name
			phone field phone
		}`)
		s.open(t, "xhr.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=name]`), "Пётр"),
			chromedp.SetValue(chromedp.CSS(`[name=phone]`), "8 (999) 765-43-21"),
			chromedp.Click(chromedp.CSS(`.js-send span`)), // the click lands inside the button
		)
		s.tab.WaitText(t, "#status", "sent")
		s.settle(t, 1, map[string]int{"/ajax/callback": 1})
		got := s.forwarded(t, "/ajax/callback", 1)
		if got[0].ContentType != "application/x-www-form-urlencoded; charset=UTF-8" || !got[0].hasMarker() {
			t.Errorf("upstream got %q, cookie %q", got[0].ContentType, got[0].Cookie)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Обратный звонок", "mechanism": "click",
			"name": "Пётр", "phone": "+79997654321", "field:phone": "8 (999) 765-43-21",
		})
		s.tab.Quiet(t)
	})

	t.Run("inputs without name through selector sources", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Заказ кухни" {
			click   "#order"
			name    selector "#client-name"
			phone   selector ".order .phone-input"
			comment selector "#msg"
			extra   "Товар" selector ".product-title"
		}`)
		s.open(t, "noname.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`#client-name`), "Ольга"),
			chromedp.SetValue(chromedp.CSS(`.phone-input`), "+7 912 000-00-01"),
			chromedp.SetValue(chromedp.CSS(`#msg`), "Нужен замер"),
			chromedp.Click(chromedp.CSS(`#order`)),
		)
		s.tab.WaitText(t, "#status", "sent")
		s.settle(t, 1, map[string]int{"/ajax/order": 1})
		s.forwarded(t, "/ajax/order", 1)
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Заказ кухни", "mechanism": "click",
			"name": "Ольга", "phone": "+79120000001", "comment": "Нужен замер", "extra:Товар": "Кухня «Верона»",
			"field:client": "Ольга", // the page's JSON body
		})
		s.tab.Quiet(t)
	})

	t.Run("js source", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Квиз" {
			submit "#quiz"
			extra  "Город" js "return document.querySelector('#city').value.toUpperCase()"
			extra  "Ответ" js "return this.elements.answer.value // this is the form"
			crm    broken js "return window.noSuchWidget.value"
		}`)
		s.open(t, "jssource.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=phone]`), "+79991112233"),
			chromedp.SetValue(chromedp.CSS(`[name=answer]`), "Угловая"),
			chromedp.Click(chromedp.CSS(`#go`)),
		)
		// The throwing source did not stop the page's own handler.
		s.tab.WaitText(t, "#status", "sent")
		s.settle(t, 1, map[string]int{"/ajax/quiz": 1})
		s.forwarded(t, "/ajax/quiz", 1)
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Квиз", "mechanism": "submit", "phone": "+79991112233",
			"extra:Город": "КАЗАНЬ", "extra:Ответ": "Угловая", "crm:broken": "-",
		})
		// At the default level the module names the failing source; the
		// browser's message (which may quote page data) is logged at debug.
		if logs := s.caddy.Logs(t); !strings.Contains(logs, `"sources":["js source crm:broken"]`) {
			t.Errorf("the failing source was not named in the module's log")
		}
		s.tab.Quiet(t)
	})

	// widgetCall: the widget page, a phone typed and the call-me button
	// (outside any form) clicked; its report and JSON post are in.
	widgetCall := func(t *testing.T) *e2eBrowserSite {
		s := newE2EBrowserSite(t, browser, `
		form "Виджет" {
			click ".call-me"
		}`)
		s.open(t, "widget.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=widget_phone]`), "+79995556677"),
			chromedp.Click(chromedp.CSS(`.call-me i`)),
		)
		s.tab.WaitText(t, "#status", "sent;")
		s.settle(t, 1, map[string]int{"/ajax/widget": 1})
		return s
	}

	t.Run("button outside any form", func(t *testing.T) {
		s := widgetCall(t)
		if got := s.forwarded(t, "/ajax/widget", 1); !got[0].hasMarker() {
			t.Errorf("upstream got cookie %q: want the marker", got[0].Cookie)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Виджет", "mechanism": "click", "phone": "+79995556677",
			"field:widget_phone": "+79995556677", // from the report: the document's fields
			"field:phone":        "+79995556677", // from the page's JSON post
		})
		s.tab.Quiet(t)
	})

	// A click marker names no path (the script cannot know where the page
	// will post): it must serve the POST that follows the click, not every
	// POST of the next minute.
	t.Run("click marker serves one POST, not a later unrelated one", func(t *testing.T) {
		s := widgetCall(t)
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=q]`), "кухни недорого"),
			chromedp.Click(chromedp.CSS(`#find`)),
		)
		s.tab.WaitText(t, "#status", "search;")
		s.settle(t, 1, map[string]int{"/ajax/widget": 1, "/ajax/search": 1})
		if got := s.forwarded(t, "/ajax/search", 1); got[0].hasMarker() {
			t.Errorf("the unrelated POST carried the click's marker: %q", got[0].Cookie)
		}
		// The report of the click holds the document's fields: q, empty then.
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Виджет", "phone": "+79995556677", "field:q": "",
		})
		if c := s.tab.Eval(t, `document.cookie`); strings.Contains(c, intercept.MarkerCookie+"=") {
			t.Errorf("the marker outlived the POST it was set for: %s", c)
		}
		s.tab.Quiet(t)
	})

	t.Run("form inserted after load", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Попап" {
			submit ".popup-form"
		}`)
		s.open(t, "dynamic.html")
		s.tab.Do(t,
			chromedp.Click(chromedp.CSS(`#open`)),
			chromedp.WaitVisible(chromedp.CSS(`.popup-form [name=phone]`)),
			chromedp.SetValue(chromedp.CSS(`.popup-form [name=name]`), "Игорь"),
			chromedp.SetValue(chromedp.CSS(`.popup-form [name=phone]`), "+79990002233"),
			chromedp.Click(chromedp.CSS(`.popup-form button`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		)
		s.settle(t, 1, map[string]int{"/send-popup": 1})
		if got := s.forwarded(t, "/send-popup", 1); !got[0].hasMarker() {
			t.Errorf("upstream got cookie %q: want the marker", got[0].Cookie)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Попап", "mechanism": "submit", "name": "Игорь", "phone": "+79990002233",
		})
		s.tab.Quiet(t)
	})

	t.Run("cross-origin action reported through collect", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Партнёр" {
			submit "#partner"
		}`)
		// The form posts straight to the upstream's own origin (same host,
		// another port: it would see a marker cookie, had one been set).
		s.open(t, "cross.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=name]`), "Мария"),
			chromedp.SetValue(chromedp.CSS(`[name=phone]`), "+79993334455"),
			chromedp.Click(chromedp.CSS(`#send`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)), // the partner's 303
		)
		s.settle(t, 1, map[string]int{"/send-lead": 1})
		sent := s.tab.posts("/send-lead")
		if len(sent) != 1 || sent[0].URL.Host == strings.TrimPrefix(s.url(""), "http://") {
			t.Fatalf("the form did not post to the other origin: %+v", sent)
		}
		if got := s.forwarded(t, "/send-lead", 1); got[0].hasMarker() {
			t.Errorf("the other origin got a marker: %q", got[0].Cookie)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Партнёр", "mechanism": "submit", "name": "Мария", "phone": "+79993334455",
			"field:name": "Мария",
		})
		s.tab.Quiet(t)
	})

	t.Run("windows-1251 page", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Заявка 1251" {
			submit  "#zayavka"
			name    field fio
			phone   field telefon
			comment field vopros
		}`)
		s.open(t, "cp1251.html")
		if cs := s.tab.Eval(t, `document.characterSet`); cs != "windows-1251" {
			t.Fatalf("page charset %q", cs)
		}
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=fio]`), "Иван Петров"),
			chromedp.SetValue(chromedp.CSS(`[name=telefon]`), "+79990001111"),
			chromedp.SetValue(chromedp.CSS(`[name=vopros]`), "Сколько стоит?"),
			chromedp.Click(chromedp.CSS(`#send`)),
			chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
		)
		s.settle(t, 1, map[string]int{"/send-1251": 1})
		got := s.forwarded(t, "/send-1251", 1)
		// The body went upstream as the browser encoded it: in 1251.
		raw, err := url.QueryUnescape(string(got[0].Body))
		if err != nil || utf8.ValidString(raw) {
			t.Errorf("upstream body %q is not windows-1251", got[0].Body)
		}
		if fio, _ := charmap.Windows1251.NewDecoder().String(raw); !strings.Contains(fio, "fio=Иван Петров") {
			t.Errorf("upstream body decodes to %q", fio)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"title": "Заявка 1251", "mechanism": "submit",
			"name": "Иван Петров", "phone": "+79990001111", "comment": "Сколько стоит?",
			"field:fio": "Иван Петров", "field:vopros": "Сколько стоит?",
		})
		s.tab.Quiet(t)
	})

	t.Run("double click on submit", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "CF7" {
			submit ".wpcf7-form"
		}`)
		s.open(t, "fetch.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=your-name]`), "Анна"),
			chromedp.SetValue(chromedp.CSS(`[name=your-phone]`), "+79990001122"),
		)
		s.tab.doubleClick(t, `#submit`)
		// The page sends twice; the site gets both, the store one lead.
		s.tab.WaitText(t, "#status", "sent;sent;")
		path := "/wp-json/contact-form-7/v1/contact-forms/1/feedback"
		s.settle(t, 1, map[string]int{path: 2})
		s.forwarded(t, path, 2)
		l := s.oneLead(t)
		e2eBrowserCheck(t, l, map[string]string{"title": "CF7", "name": "Анна", "phone": "+79990001122"})
		if l.DuplicateOf != "" {
			t.Errorf("lead is a duplicate of %s", l.DuplicateOf)
		}
		s.tab.Quiet(t)
	})

	t.Run("password never reaches the lead", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		form "Регистрация" {
			submit  "#signup"
			comment selector "#pin-field"
		}`)
		s.open(t, "secret.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=email]`), "olga@example.com"),
			chromedp.SetValue(chromedp.CSS(`[name=pin]`), "hunter2-pin"),
			chromedp.SetValue(chromedp.CSS(`[name=ccn]`), "4111 1111 1111 1111"),
			chromedp.SetValue(chromedp.CSS(`[name=card_cvc]`), "cvc-737"),
			chromedp.Click(chromedp.CSS(`#go`)),
		)
		s.tab.WaitText(t, "#status", "sent")
		s.settle(t, 1, map[string]int{"/ajax/signup": 1})
		// The site itself gets everything, as the browser sent it.
		got := s.forwarded(t, "/ajax/signup", 1)
		if !strings.Contains(string(got[0].Body), "hunter2-pin") {
			t.Errorf("upstream body lacks the password: %q", got[0].Body)
		}
		l := s.oneLead(t)
		e2eBrowserCheck(t, l, map[string]string{
			"title": "Регистрация", "email": "olga@example.com", "comment": "-",
			"field:pin": "-", "field:ccn": "-", "field:card_cvc": "-", "field:authenticity_token": "-",
		})
		b, _ := json.Marshal(l)
		for _, secret := range []string{"hunter2-pin", "4111 1111", "cvc-737", "tok-7e1f0c"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("lead carries %q: %s", secret, b)
			}
		}
		s.tab.Quiet(t)
	})

	t.Run("auto on captures a form with an email field", func(t *testing.T) {
		s := newE2EBrowserSite(t, browser, `
		auto on`)
		s.open(t, "auto.html")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=q]`), "кухни"),
			chromedp.Click(chromedp.CSS(`#find`)),
		)
		s.tab.WaitText(t, "#status", "search;")
		s.tab.Do(t,
			chromedp.SetValue(chromedp.CSS(`[name=contact]`), "news@example.com"),
			chromedp.Click(chromedp.CSS(`#sub`)),
		)
		s.tab.WaitText(t, "#status", "subscribe;")
		s.settle(t, 1, map[string]int{"/ajax/search": 1, "/ajax/subscribe": 1})
		if got := s.forwarded(t, "/ajax/search", 1); got[0].hasMarker() {
			t.Errorf("the search form got a marker: %q", got[0].Cookie)
		}
		if got := s.forwarded(t, "/ajax/subscribe", 1); !got[0].hasMarker() {
			t.Errorf("the subscribe form got no marker: %q", got[0].Cookie)
		}
		e2eBrowserCheck(t, s.oneLead(t), map[string]string{
			"form": "auto", "title": "Заявка с сайта", "mechanism": "auto",
			"email": "news@example.com", "field:contact": "news@example.com", "field:q": "-",
		})
		s.tab.Quiet(t)
	})
}

// TestCaptureMarkerOnePostNoSecrets is the handler's side of two fixes the
// browser cases above found, without a browser: a marker serves the one post
// it matched (the answer deletes it), and the fields the script named secret
// (o: a type=password field with an innocent name) stay out of the lead
// while the upstream still gets them.
func TestCaptureMarkerOnePostNoSecrets(t *testing.T) {
	up := newE2EBrowserUpstream(t)
	c := startCaddy(t, e2eBrowserCaddyfile, map[string]string{"UPSTREAM": up.URL, "LP": `
		form "Виджет" {
			click ".call-me"
		}
		form "Регистрация" {
			submit "#signup"
		}`})
	post := func(path, ctype, body string, m *intercept.Marker) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", c.URL("PORT_SITE")+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		if m != nil {
			v, err := intercept.EncodeCookieJSON(m)
			if err != nil {
				t.Fatal(err)
			}
			req.AddCookie(&http.Cookie{Name: intercept.MarkerCookie, Value: v})
		}
		resp, err := noCompress.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := up.got(path); len(got) == 0 || string(got[len(got)-1].Body) != body {
			t.Fatalf("POST %s: upstream did not get the body as sent", path)
		}
		return resp
	}
	expired := func(resp *http.Response) bool {
		for _, ck := range resp.Cookies() {
			if ck.Name == intercept.MarkerCookie && ck.MaxAge < 0 {
				return true
			}
		}
		return false
	}
	leads := func() []lead.Lead {
		var list leadList
		c.AdminJSON("/leadproxy/leads?limit=100", &list)
		return list.Leads
	}

	site := c.URL("PORT_SITE")
	click := &intercept.Marker{V: 1, Rule: intercept.RuleID("Виджет"), SID: "click-sid-0123456789", Values: map[string]string{"phone": "+79995556677"},
		Token: siteToken(t, site, intercept.RuleID("Виджет"))}
	if resp := post("/ajax/widget", "application/json", `{"phone":"+79995556677"}`, click); !expired(resp) {
		t.Errorf("the answer to the marked post keeps the marker: %q", resp.Header.Values("Set-Cookie"))
	}
	if n := len(leads()); n != 1 {
		t.Fatalf("%d leads after the click's post, want 1", n)
	}
	// A marker for another path is not this post's: not used, not deleted.
	signed := siteToken(t, site, intercept.RuleID("Регистрация"))
	other := &intercept.Marker{V: 1, Rule: intercept.RuleID("Регистрация"), SID: "submit-sid-0123456789", Action: "/elsewhere", Token: signed}
	if resp := post("/ajax/signup", "application/x-www-form-urlencoded", "email=olga%40example.com", other); expired(resp) {
		t.Error("a marker for another path was deleted")
	}
	if n := len(leads()); n != 1 {
		t.Fatalf("%d leads after an unmarked post, want 1", n)
	}

	signup := &intercept.Marker{V: 1, Rule: intercept.RuleID("Регистрация"), SID: "submit-sid-0123456789", Action: "/ajax/signup", Omit: []string{"pin"}, Token: signed}
	post("/ajax/signup", "application/x-www-form-urlencoded", "email=olga%40example.com&pin=hunter2-pin", signup)
	ls := leads()
	if len(ls) != 2 {
		t.Fatalf("%d leads, want 2", len(ls))
	}
	for _, l := range ls {
		if l.Form == "Регистрация" {
			if _, ok := l.Fields["pin"]; ok || l.Email != "olga@example.com" {
				t.Errorf("signup lead: email %q fields %q: want the email and no pin", l.Email, l.Fields)
			}
		}
	}
}
