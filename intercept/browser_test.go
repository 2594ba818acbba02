package intercept

// The capture script in a real browser: Debian's headless Chromium driven by
// chromedp against a fake "site with leadproxy in front" (see testSite).
// Without a browser these tests skip, unless LEADPROXY_REQUIRE_BROWSER=1 (CI).

import (
	"context"
	"encoding/base64"
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
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/text/encoding/charmap"

	"github.com/leadproxy/leadproxy/internal/browsertest"
)

// The shared browser: started by the first test that needs it, stopped by
// TestMain. Each test gets its own tab in its own browser context, so cookies
// never leak from one test to the next.
var (
	browserOnce sync.Once
	browserCtx  context.Context
	browserStop func()
	browserErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if browserStop != nil {
		browserStop()
	}
	os.Exit(code)
}

func startBrowser() {
	browserCtx, browserStop, browserErr = browsertest.Start()
}

// browserTab is one tab of the shared browser.
type browserTab struct{ *browsertest.Tab }

// newBrowserTab opens a tab in a fresh browser context of the shared browser,
// or skips the test when there is no browser.
func newBrowserTab(t *testing.T) *browserTab {
	t.Helper()
	browserOnce.Do(startBrowser)
	if browserErr != nil {
		browsertest.Unavailable(t, browserErr)
	}
	return &browserTab{browsertest.NewTab(t, browserCtx)}
}

// testSite stands for a site with leadproxy in front: it serves the pages of
// testdata/browser (placeholders {{other}} filled in), the built script at
// /_leadproxy/c.js, and records form posts (with their marker and visit
// cookies decoded as the handler does) and /_leadproxy/collect reports.
// POSTs to /send* answer 303 to /thanks, to */refuse 422; other POSTs
// answer JSON.
type testSite struct {
	srv     *httptest.Server
	script  []byte
	etag    string
	charset string            // the pages' charset; "" is utf-8
	vars    map[string]string // {{name}} in pages

	mu       sync.Mutex
	posts    []sitePost
	reports  []siteReport
	sentinel int
}

type sitePost struct {
	Path, ContentType string
	Body              []byte
	Marker            *Marker // nil when the request had no _lp_s cookie
	MarkerErr         error
	MarkerJSON        string // the decoded cookie, for leak checks
	Visit             *VisitInfo
}

type siteReport struct {
	Raw    string
	Report *Report
	Err    error
}

const sitePrefix = "/_leadproxy"

func newTestSite(t *testing.T, cfg ScriptConfig) *testSite {
	t.Helper()
	s := &testSite{vars: map[string]string{}}
	if cfg.Prefix != "" {
		var err error
		if s.script, s.etag, err = BuildScript(cfg); err != nil {
			t.Fatal(err)
		}
	}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *testSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == sitePrefix+"/c.js" && s.script != nil:
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("ETag", s.etag)
		w.Write(s.script)
	case r.URL.Path == sitePrefix+"/collect" && r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		rep, err := ParseReport(body)
		s.record(func() { s.reports = append(s.reports, siteReport{string(body), rep, err}) })
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_sentinel":
		s.record(func() { s.sentinel++ })
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(r.URL.Path, "/p/"):
		s.servePage(w, r)
	case r.URL.Path == "/thanks":
		io.WriteString(w, `<!doctype html><meta charset="utf-8"><h1 id="thanks">Спасибо</h1>`)
	case r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		p := sitePost{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body, Visit: ReadVisit(r)}
		if c, err := r.Cookie(MarkerCookie); err == nil {
			p.Marker, p.MarkerErr = ParseMarker(c.Value)
			raw, _ := base64.RawURLEncoding.DecodeString(c.Value)
			p.MarkerJSON = string(raw)
		}
		s.record(func() { s.posts = append(s.posts, p) })
		if strings.HasPrefix(r.URL.Path, "/send") {
			http.Redirect(w, r, "/thanks", http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/refuse") {
			// The site's own validation refuses the submission.
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		io.WriteString(w, `{"ok":true}`)
	default:
		// favicon and anything else: empty, so no 404 reaches the console.
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *testSite) servePage(w http.ResponseWriter, r *http.Request) {
	b, err := os.ReadFile(filepath.Join("testdata", "browser", filepath.Base(r.URL.Path)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	page := string(b)
	for k, v := range s.vars {
		page = strings.ReplaceAll(page, "{{"+k+"}}", v)
	}
	charset := "utf-8"
	if s.charset == "windows-1251" {
		charset = s.charset
		if page, err = charmap.Windows1251.NewEncoder().String(page); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset="+charset)
	io.WriteString(w, page)
}

func (s *testSite) record(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// open loads a page of testdata/browser in a new tab and waits for the
// script to be running.
func (s *testSite) open(t *testing.T, page string) *browserTab {
	t.Helper()
	tab := newBrowserTab(t)
	tab.Do(t, chromedp.Navigate(s.srv.URL+"/p/"+page))
	if s.script != nil {
		if v := tab.Eval(t, `window.leadproxy ? window.leadproxy.version : ""`); v != "1" {
			t.Fatalf("script not running on %s: version %q", page, v)
		}
	}
	return tab
}

// waitFor waits until the site has at least posts posts and reports reports.
func (s *testSite) waitFor(t *testing.T, posts, reports int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s.mu.Lock()
		np, nr := len(s.posts), len(s.reports)
		s.mu.Unlock()
		if np >= posts && nr >= reports {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("site got %d posts and %d reports, want %d and %d", np, nr, posts, reports)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle makes the page send one more request and waits for it, so that any
// report queued before it has had its chance to arrive; then the counts the
// test asserts are final.
func (s *testSite) settle(t *testing.T, tab *browserTab) {
	t.Helper()
	s.mu.Lock()
	want := s.sentinel + 1
	s.mu.Unlock()
	tab.Do(t, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`navigator.sendBeacon(%q, "")`, s.srv.URL+"/_sentinel")))
	deadline := time.Now().Add(15 * time.Second)
	for {
		s.mu.Lock()
		n := s.sentinel
		s.mu.Unlock()
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinel request never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *testSite) got() ([]sitePost, []siteReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sitePost(nil), s.posts...), append([]siteReport(nil), s.reports...)
}

// captured asserts the site got exactly one report, for rule, and exactly
// marked posts carrying a valid marker for the same rule and submission, with
// an action the handler would accept. It returns the first marked post.
func (s *testSite) captured(t *testing.T, rule string, marked int) (sitePost, *Report) {
	t.Helper()
	ps, rs := s.got()
	if len(rs) != 1 {
		t.Fatalf("site got %d reports, want 1", len(rs))
	}
	if rs[0].Err != nil {
		t.Fatalf("report rejected: %v\n%s", rs[0].Err, rs[0].Raw)
	}
	rep := rs[0].Report
	if rep.Rule != rule || len(rep.SID) < 16 {
		t.Errorf("report rule %q sid %q, want rule %q and a sid of 16+ chars", rep.Rule, rep.SID, rule)
	}
	var withMarker []sitePost
	for _, p := range ps {
		if p.MarkerErr != nil {
			t.Fatalf("post %s: bad marker: %v (%s)", p.Path, p.MarkerErr, p.MarkerJSON)
		}
		if p.Marker != nil {
			withMarker = append(withMarker, p)
		}
	}
	if len(withMarker) != marked {
		t.Fatalf("%d of %d posts carry a marker, want %d", len(withMarker), len(ps), marked)
	}
	if marked == 0 {
		return sitePost{}, rep
	}
	for _, p := range withMarker {
		m := p.Marker
		if m.Rule != rule || m.SID != rep.SID {
			t.Errorf("post %s: marker rule %q sid %q, want %q and the report's %q", p.Path, m.Rule, m.SID, rule, rep.SID)
		}
		if m.Action != "" && m.Action != p.Path {
			t.Errorf("post %s: marker action %q: the handler would not capture it", p.Path, m.Action)
		}
	}
	return withMarker[0], rep
}

// fields parses a post's body as the handler does, in the marker's charset.
func (p sitePost) fields(t *testing.T) map[string]string {
	t.Helper()
	cs := ""
	if p.Marker != nil {
		cs = p.Marker.Charset
	}
	f, err := ParseBody(p.ContentType, strings.NewReader(string(p.Body)), cs, "")
	if err != nil {
		t.Fatalf("post %s: body: %v", p.Path, err)
	}
	return f.Map()
}

// wantMap asserts that got holds every key of want with its value.
func wantMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s[%q] = %q (present %v), want %q; all: %q", what, k, g, ok, v, got)
		}
	}
}

func wantAbsent(t *testing.T, what string, got map[string]string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := got[k]; ok {
			t.Errorf("%s has %q = %q, want it absent", what, k, v)
		}
	}
}

func TestBrowserClassicPostWithRedirect(t *testing.T) {
	rule := &Rule{
		Title:  "Заявка с сайта",
		Submit: "#contact",
		Phone:  &Source{Kind: SourceField, Value: "Phone"},
		Extra:  []Labeled{{Label: "Город", Source: Source{Kind: SourceSelector, Value: "#city"}}},
		CRM:    []Labeled{{Label: "status_id", Source: Source{Kind: SourceJS, Value: `return 140 + 2`}}},
	}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "classic.html?utm_source=yandex&utm_campaign=spring&gclid=g1")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=Name]`), "Иван"),
		chromedp.SetValue(chromedp.CSS(`[name=Phone]`), "+7 999 123-45-67"),
		chromedp.SetValue(chromedp.CSS(`[name=email]`), "ivan@example.com"),
		chromedp.SetValue(chromedp.CSS(`#city`), "Казань"),
		chromedp.Click(chromedp.CSS(`#send`)),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
	)
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)

	m := post.Marker
	if m.Action != "/send" || m.Charset != "UTF-8" {
		t.Errorf("marker action %q charset %q, want /send and UTF-8", m.Action, m.Charset)
	}
	want := map[string]string{"extra:Город": "Казань", "crm:status_id": "142", "email": "ivan@example.com"}
	wantMap(t, "marker x", m.Values, want)
	wantMap(t, "report x", rep.Values, want)
	wantAbsent(t, "marker x", m.Values, "phone") // it has a field source: the server reads it
	wantMap(t, "post body", post.fields(t), map[string]string{"Name": "Иван", "Phone": "+7 999 123-45-67", "agree": "yes"})
	wantMap(t, "report f", rep.Fields, map[string]string{"Name": "Иван", "Phone": "+7 999 123-45-67", "email": "ivan@example.com", "agree": "yes"})
	wantAbsent(t, "report f", rep.Fields, "_token")
	if strings.Contains(s.rawReports(), "csrf-secret-4f1c") {
		t.Error("the CSRF token reached the report")
	}
	if rep.Honey != "" || rep.Charset != "UTF-8" || !strings.Contains(rep.Page, "/p/classic.html") || len(rep.Errors) != 0 {
		t.Errorf("report hp %q c %q page %q err %q", rep.Honey, rep.Charset, rep.Page, rep.Errors)
	}

	// The visit cookie travels with the post and the report.
	v := post.Visit
	if v == nil || v.ID == "" || v.UTM["source"] != "yandex" || v.UTM["campaign"] != "spring" || !strings.Contains(v.Landing, "gclid=g1") {
		t.Fatalf("visit cookie %+v", v)
	}
	if rep.Visit == nil || rep.Visit.ID != v.ID {
		t.Errorf("report visit %+v, want id %q", rep.Visit, v.ID)
	}
	tab.Quiet(t)
}

// rawReports is every report the site got as sent, for leak checks.
func (s *testSite) rawReports() string {
	_, reps := s.got()
	var b strings.Builder
	for _, r := range reps {
		b.WriteString(r.Raw)
	}
	return b.String()
}

func TestBrowserProgrammaticSubmit(t *testing.T) {
	rule := &Rule{Title: "Старая форма", Submit: "#contact"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "classic.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=Phone]`), "89991234567"),
		chromedp.Click(chromedp.CSS(`#send-js`)),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
	)
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	wantMap(t, "marker x", post.Marker.Values, map[string]string{"phone": "89991234567"})
	wantMap(t, "report f", rep.Fields, map[string]string{"Phone": "89991234567"})
	tab.Quiet(t)
}

func TestBrowserFetchMultipart(t *testing.T) {
	rule := &Rule{Title: "CF7", Submit: ".wpcf7-form"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "fetch.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=your-name]`), "Анна"),
		chromedp.SetValue(chromedp.CSS(`[name=your-phone]`), "+79990001122"),
		chromedp.SetValue(chromedp.CSS(`[name=your-message]`), "Перезвоните после 18:00"),
		chromedp.Click(chromedp.CSS(`#submit`)),
	)
	tab.WaitText(t, "#status", "sent;")
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	if !strings.HasPrefix(post.ContentType, "multipart/form-data") {
		t.Errorf("post content type %q, want multipart", post.ContentType)
	}
	if post.Marker.Action != "/wp-json/contact-form-7/v1/contact-forms/1/feedback" {
		t.Errorf("marker action %q", post.Marker.Action)
	}
	want := map[string]string{"your-name": "Анна", "your-phone": "+79990001122", "your-message": "Перезвоните после 18:00", "_wpcf7": "1"}
	wantMap(t, "post body", post.fields(t), want)
	wantMap(t, "report f", rep.Fields, want)
	wantAbsent(t, "report f", rep.Fields, "_wpnonce")
	// No phone source: the script fills the role from the type=tel input.
	wantMap(t, "marker x", post.Marker.Values, map[string]string{"phone": "+79990001122"})
	tab.Quiet(t)
}

func TestBrowserDoubleClickOneSubmission(t *testing.T) {
	rule := &Rule{Title: "CF7", Submit: ".wpcf7-form"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "fetch.html")
	tab.Do(t, chromedp.SetValue(chromedp.CSS(`[name=your-phone]`), "+79990001122"))
	// A real double click is two presses, the second with clickCount 2: two
	// click events, so two submits. (chromedp.DoubleClick sends only the second.)
	ctx, cancel := context.WithTimeout(tab.Ctx, 15*time.Second)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(`#submit`), chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	tab.Do(t, chromedp.MouseClickNode(nodes[0]), chromedp.MouseClickNode(nodes[0], chromedp.ClickCount(2)))
	// The page sends twice; both posts must carry one submission id.
	tab.WaitText(t, "#status", "sent;sent;")
	s.waitFor(t, 2, 1)
	s.settle(t, tab)
	s.captured(t, rule.ID(), 2)
	tab.Quiet(t)
}

func TestBrowserXHRClickRule(t *testing.T) {
	rule := &Rule{Title: "Обратный звонок", Click: ".js-send"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "xhr.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=name]`), "Пётр"),
		chromedp.SetValue(chromedp.CSS(`[name=phone]`), "8 (999) 765-43-21"),
		// The click lands on the <span> inside the button.
		chromedp.Click(chromedp.CSS(`.js-send span`)),
	)
	tab.WaitText(t, "#status", "sent")
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	if post.Path != "/ajax/callback" || post.Marker.Action != "" || !strings.HasPrefix(post.ContentType, "application/x-www-form-urlencoded") {
		t.Errorf("post %s %q, marker action %q: want urlencoded XHR and an empty action", post.Path, post.ContentType, post.Marker.Action)
	}
	want := map[string]string{"name": "Пётр", "phone": "8 (999) 765-43-21"}
	wantMap(t, "post body", post.fields(t), want)
	wantMap(t, "report f", rep.Fields, want)
	tab.Quiet(t)
}

func TestBrowserSelectorSourcesWithoutNames(t *testing.T) {
	rule := &Rule{
		Title:   "Заказ кухни",
		Click:   "#order",
		Name:    &Source{Kind: SourceSelector, Value: "#client-name"},
		Phone:   &Source{Kind: SourceSelector, Value: ".order .phone-input"},
		Comment: &Source{Kind: SourceSelector, Value: "#msg"},
		Extra:   []Labeled{{Label: "Товар", Source: Source{Kind: SourceSelector, Value: ".product-title"}}},
	}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "noname.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`#client-name`), "Ольга"),
		chromedp.SetValue(chromedp.CSS(`.phone-input`), "+7 912 000-00-01"),
		chromedp.SetValue(chromedp.CSS(`#msg`), "Нужен замер"),
		chromedp.Click(chromedp.CSS(`#order`)),
	)
	tab.WaitText(t, "#status", "sent")
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	want := map[string]string{"name": "Ольга", "phone": "+7 912 000-00-01", "comment": "Нужен замер", "extra:Товар": "Кухня «Верона»"}
	wantMap(t, "marker x", post.Marker.Values, want)
	wantMap(t, "report x", rep.Values, want)
	if len(rep.Fields) != 0 {
		t.Errorf("report f %q: the page has no named fields", rep.Fields)
	}
	// What the handler makes of the marker alone, as it would for the post.
	l := Extract(rule, Input{Fields: nil, Values: post.Marker.Values}, "RU")
	if l.Name != "Ольга" || l.Phone != "+79120000001" || l.Extra["Товар"] != "Кухня «Верона»" {
		t.Errorf("lead from marker: name %q phone %q extra %q", l.Name, l.Phone, l.Extra)
	}
	tab.Quiet(t)
}

func TestBrowserJSSources(t *testing.T) {
	rule := &Rule{
		Title:  "Квиз",
		Submit: "#quiz",
		Extra: []Labeled{
			{Label: "Город", Source: Source{Kind: SourceJS, Value: `return document.querySelector("#city").value.toUpperCase()`}},
			// this is the form the rule matched.
			{Label: "Ответ", Source: Source{Kind: SourceJS, Value: `return this.elements.answer.value // the quiz answer`}},
			// A source sees the page's globals, never the minified
			// script's one-letter locals.
			{Label: "Имена", Source: Source{Kind: SourceJS, Value: `return [typeof e, typeof t, typeof n, typeof _, typeof $].join()`}},
		},
		CRM: []Labeled{{Label: "broken", Source: Source{Kind: SourceJS, Value: `return window.noSuchWidget.value`}}},
	}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "jssource.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=phone]`), "+79991112233"),
		chromedp.SetValue(chromedp.CSS(`[name=answer]`), "Угловая"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	// The throwing source did not stop the page's own handler.
	tab.WaitText(t, "#status", "sent")
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	want := map[string]string{"extra:Город": "КАЗАНЬ", "extra:Ответ": "Угловая", "extra:Имена": "undefined,undefined,undefined,undefined,undefined"}
	wantMap(t, "marker x", post.Marker.Values, want)
	wantMap(t, "report x", rep.Values, want)
	wantAbsent(t, "marker x", post.Marker.Values, "crm:broken")
	wantAbsent(t, "report x", rep.Values, "crm:broken")
	if len(rep.Errors) != 1 || !strings.HasPrefix(rep.Errors[0], "js source crm:broken threw: TypeError") {
		t.Errorf("report err %q, want one entry for crm:broken", rep.Errors)
	}
	tab.Quiet(t)
}

func TestBrowserButtonOutsideForm(t *testing.T) {
	rule := &Rule{Title: "Виджет", Click: ".call-me"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "widget.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=widget_phone]`), "+79995556677"),
		chromedp.Click(chromedp.CSS(`.call-me i`)),
	)
	tab.WaitText(t, "#status", "sent")
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	if post.Marker.Action != "" {
		t.Errorf("marker action %q, want empty for a click rule", post.Marker.Action)
	}
	wantMap(t, "report f", rep.Fields, map[string]string{"widget_phone": "+79995556677"})
	wantMap(t, "marker x", post.Marker.Values, map[string]string{"phone": "+79995556677"})
	tab.Quiet(t)
}

func TestBrowserFormInsertedAfterLoad(t *testing.T) {
	rule := &Rule{Title: "Попап", Submit: ".popup-form"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "dynamic.html")
	tab.Do(t,
		chromedp.Click(chromedp.CSS(`#open`)),
		chromedp.WaitVisible(chromedp.CSS(`.popup-form [name=phone]`)),
		chromedp.SetValue(chromedp.CSS(`.popup-form [name=name]`), "Игорь"),
		chromedp.SetValue(chromedp.CSS(`.popup-form [name=phone]`), "+79990002233"),
		chromedp.Click(chromedp.CSS(`.popup-form button`)),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
	)
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	if post.Marker.Action != "/send-popup" {
		t.Errorf("marker action %q", post.Marker.Action)
	}
	wantMap(t, "report f", rep.Fields, map[string]string{"name": "Игорь", "phone": "+79990002233"})
	tab.Quiet(t)
}

func TestBrowserCrossOriginAction(t *testing.T) {
	rule := &Rule{Title: "Партнёр", Submit: "#partner"}
	other := newTestSite(t, ScriptConfig{}) // another origin: same host, other port, so it would see our cookies
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	s.vars["other"] = other.srv.URL
	tab := s.open(t, "cross.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=name]`), "Мария"),
		chromedp.SetValue(chromedp.CSS(`[name=phone]`), "+79993334455"),
		chromedp.Click(chromedp.CSS(`#send`)),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)), // the partner's 303
	)
	other.waitFor(t, 1, 0)
	s.waitFor(t, 0, 1)
	s.settle(t, tab)
	_, rep := s.captured(t, rule.ID(), 0)
	wantMap(t, "report f", rep.Fields, map[string]string{"name": "Мария", "phone": "+79993334455"})
	if ps, _ := s.got(); len(ps) != 0 {
		t.Errorf("this origin got %d posts, want none", len(ps))
	}
	ps, _ := other.got()
	if len(ps) != 1 || ps[0].Marker != nil || ps[0].MarkerErr != nil {
		t.Fatalf("the other origin got %d posts (%+v): want one, with no marker", len(ps), ps)
	}
	wantMap(t, "partner's post", ps[0].fields(t), map[string]string{"name": "Мария", "phone": "+79993334455"})
	tab.Quiet(t)
}

func TestBrowserWindows1251Page(t *testing.T) {
	rule := &Rule{Title: "Заявка 1251", Submit: "#zayavka"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	s.charset = "windows-1251"
	tab := s.open(t, "cp1251.html")
	tab.Do(t,
		chromedp.SendKeys(chromedp.CSS(`[name=fio]`), "Иван Петров"),
		chromedp.SetValue(chromedp.CSS(`[name=telefon]`), "+79990001111"),
		chromedp.SetValue(chromedp.CSS(`[name=vopros]`), "Сколько стоит?"),
		chromedp.Click(chromedp.CSS(`#send`)),
		chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
	)
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	if post.Marker.Charset != "windows-1251" || rep.Charset != "windows-1251" {
		t.Errorf("marker c %q report c %q, want windows-1251", post.Marker.Charset, rep.Charset)
	}
	// The browser encoded the post in 1251; the marker's charset decodes it.
	// url.QueryUnescape returns the bytes as they are, UTF-8 or not.
	raw, err := url.QueryUnescape(string(post.Body))
	if err != nil || utf8.ValidString(raw) {
		t.Errorf("post body %q is UTF-8: the page was not served as windows-1251", post.Body)
	}
	want := map[string]string{"fio": "Иван Петров", "telefon": "+79990001111", "vopros": "Сколько стоит?"}
	wantMap(t, "post body", post.fields(t), want)
	wantMap(t, "report f", rep.Fields, want)
	tab.Quiet(t)
}

func TestBrowserSecretsNeverLeave(t *testing.T) {
	rule := &Rule{
		Title:  "Регистрация",
		Submit: "#signup",
		// A careless source pointing at the password field reads nothing.
		Comment: &Source{Kind: SourceSelector, Value: "#pin-field"},
	}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "secret.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=email]`), "olga@example.com"),
		chromedp.SetValue(chromedp.CSS(`[name=pin]`), "hunter2-pin"),
		chromedp.SetValue(chromedp.CSS(`[name=ccn]`), "4111 1111 1111 1111"),
		chromedp.SetValue(chromedp.CSS(`[name=card_cvc]`), "737"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	tab.WaitText(t, "#status", "sent")
	s.waitFor(t, 1, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, rule.ID(), 1)
	// Secrets are matched whole (the CVC as a JSON string): a bare "737"
	// also turns up by chance in the report's timestamps and random ids.
	for _, secret := range []string{"hunter2-pin", "4111 1111", "4111+1111", "4111%201111", `"737"`, "tok-7e1f0c"} {
		if strings.Contains(s.rawReports(), secret) {
			t.Errorf("report carries %q", secret)
		}
		if strings.Contains(post.MarkerJSON, secret) {
			t.Errorf("marker carries %q", secret)
		}
	}
	wantAbsent(t, "report f", rep.Fields, "pin", "ccn", "card_cvc", "authenticity_token", "cv")
	wantAbsent(t, "report x", rep.Values, "comment")
	wantMap(t, "report f", rep.Fields, map[string]string{"email": "olga@example.com"})
	tab.Quiet(t)
}

func TestBrowserAutoMode(t *testing.T) {
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Auto: true})
	tab := s.open(t, "auto.html")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=q]`), "кухни"),
		chromedp.Click(chromedp.CSS(`#find`)),
	)
	tab.WaitText(t, "#status", "search;")
	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=contact]`), "news@example.com"),
		chromedp.Click(chromedp.CSS(`#sub`)),
	)
	tab.WaitText(t, "#status", "subscribe;")
	s.waitFor(t, 2, 1)
	s.settle(t, tab)
	post, rep := s.captured(t, "auto", 1)
	if ps, _ := s.got(); len(ps) != 2 || ps[0].Path != "/ajax/search" || ps[0].Marker != nil || post.Path != "/ajax/subscribe" {
		t.Errorf("posts %+v: want an unmarked search and a marked subscribe", ps)
	}
	wantMap(t, "marker x", post.Marker.Values, map[string]string{"email": "news@example.com"})
	wantMap(t, "report f", rep.Fields, map[string]string{"contact": "news@example.com"})
	tab.Quiet(t)
}

// Pages where nothing must be captured: the post goes through unmarked, no
// report is sent, and the page logs nothing.
func TestBrowserNotCaptured(t *testing.T) {
	for _, c := range []struct{ name, page string }{
		{"form inside data-leadproxy-ignore", "ignore-form.html"},
		{"page with html data-leadproxy-ignore", "ignore-page.html"},
		{"no matching form", "nomatch.html"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rule := &Rule{Title: "Заявка", Submit: "#contact", Phone: &Source{Kind: SourceField, Value: "phone"}}
			s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
			tab := s.open(t, c.page)
			tab.Do(t,
				chromedp.SetValue(chromedp.CSS(`[name=phone]`), "+79990000000"),
				chromedp.Click(chromedp.CSS(`#send`)),
				chromedp.WaitVisible(chromedp.CSS(`#thanks`)),
			)
			s.waitFor(t, 1, 0)
			s.settle(t, tab)
			ps, reps := s.got()
			if len(ps) != 1 || ps[0].Marker != nil || ps[0].MarkerErr != nil || len(reps) != 0 {
				t.Errorf("got %d posts (marker %q) and %d reports, want one unmarked post and none", len(ps), ps[0].MarkerJSON, len(reps))
			}
			if c := tab.Eval(t, `document.cookie`); strings.Contains(c, MarkerCookie+"=") {
				t.Errorf("marker cookie set: %s", c)
			}
			tab.Quiet(t)
		})
	}
}

// cookies returns the tab's cookies by name, with their attributes.
func (b *browserTab) cookies(t *testing.T) map[string]*network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		m[c.Name] = c
	}
	return m
}

// visitOf decodes a visit cookie as the handler does.
func visitOf(t *testing.T, c *network.Cookie) *VisitInfo {
	t.Helper()
	if c == nil {
		t.Fatal("no visit cookie")
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	v := ReadVisit(r)
	if v == nil || v.ID == "" {
		t.Fatalf("visit cookie %q does not decode", c.Value)
	}
	return v
}

func TestBrowserCookieAttributes(t *testing.T) {
	rule := &Rule{Title: "CF7", Submit: ".wpcf7-form"}
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix, Rules: []*Rule{rule}})
	tab := s.open(t, "fetch.html")
	expiresIn := func(c *network.Cookie) time.Duration {
		return time.Until(time.Unix(int64(c.Expires), 0))
	}
	attrs := func(c *network.Cookie, maxAge time.Duration) {
		t.Helper()
		if c.Path != "/" || c.SameSite != network.CookieSameSiteLax || c.HTTPOnly || c.Session {
			t.Errorf("cookie %s: path %q samesite %q httponly %v session %v", c.Name, c.Path, c.SameSite, c.HTTPOnly, c.Session)
		}
		// A generous margin: this checks the Max-Age the script wrote, not speed.
		if d := expiresIn(c); d > maxAge || d < maxAge-time.Minute/2 {
			t.Errorf("cookie %s expires in %v, want about %v", c.Name, d, maxAge)
		}
	}

	first := tab.cookies(t)
	attrs(first[VisitCookie], 14*24*time.Hour)
	if _, ok := first[MarkerCookie]; ok {
		t.Error("marker cookie set before any submission")
	}
	id := visitOf(t, first[VisitCookie]).ID

	tab.Do(t,
		chromedp.SetValue(chromedp.CSS(`[name=your-phone]`), "+79990001122"),
		chromedp.Click(chromedp.CSS(`#submit`)),
	)
	tab.WaitText(t, "#status", "sent;")
	c := tab.cookies(t)
	if c[MarkerCookie] == nil || len(MarkerCookie)+1+len(c[MarkerCookie].Value) > 3800 {
		t.Fatalf("marker cookie %+v", c[MarkerCookie])
	}
	attrs(c[MarkerCookie], time.Minute)

	// The visit stays across pages and is replaced by a new campaign.
	tab.Do(t, chromedp.Navigate(s.srv.URL+"/p/fetch.html?page=2"))
	if got := visitOf(t, tab.cookies(t)[VisitCookie]); got.ID != id {
		t.Errorf("visit id changed to %q on a plain page view", got.ID)
	}
	tab.Do(t, chromedp.Navigate(s.srv.URL+"/p/fetch.html?utm_source=vk&utm_content=banner%20%D0%B0"))
	v := visitOf(t, tab.cookies(t)[VisitCookie])
	if v.ID == id || v.UTM["source"] != "vk" || v.UTM["content"] != "banner а" || !strings.Contains(v.Landing, "utm_source=vk") {
		t.Errorf("after a new campaign, visit %+v: want a new id (was %q) with the utm values", v, id)
	}
	tab.Do(t, chromedp.Navigate(s.srv.URL+"/p/fetch.html?fbclid=f1"))
	if got := visitOf(t, tab.cookies(t)[VisitCookie]); got.ID == v.ID || len(got.UTM) != 0 {
		t.Errorf("fbclid did not start a new visit: %+v", got)
	}
	tab.Quiet(t)
}

// The console check must be able to fail: a page that throws is seen.
func TestBrowserTabSeesExceptions(t *testing.T) {
	s := newTestSite(t, ScriptConfig{Prefix: sitePrefix})
	tab := s.open(t, "nomatch.html")
	tab.Do(t, chromedp.Evaluate[chromedp.Void](`setTimeout(function () { throw new Error("boom-7") }, 0)`))
	deadline := time.Now().Add(15 * time.Second)
	for {
		seen := strings.Contains(strings.Join(tab.Problems(), "\n"), "boom-7")
		if seen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the uncaught exception never reached the console log")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
