package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/amocrm/amocrmtest"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

// proxiedSite is hardSite behind a trusted proxy on loopback that sets
// X-Forwarded-For, as a site behind Cloudflare or a load balancer is;
// DESTS also takes the global block's other options.
var proxiedSite = strings.Replace(hardSite, "\tadmin {{ADMIN}}\n",
	"\tadmin {{ADMIN}}\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t\tclient_ip_headers X-Forwarded-For\n\t}\n", 1)

func proxiedVars(upstream string, kv ...string) map[string]string {
	return hardVars(upstream, kv...)
}

// abuseReport is a collect report of the form "Форма"; honey non-empty
// makes it a honeypot report, answered 204 and never stored.
func abuseReport(site, sid, phone, honey string) []byte {
	b, _ := json.Marshal(map[string]any{"v": 1, "r": intercept.RuleID("Форма"), "s": sid, "hp": honey,
		"page": site + "/", "f": map[string]string{"phone": phone}})
	return b
}

// Behind a trusted proxy every visitor has their own allowance: the limit
// follows Caddy's client_ip (X-Forwarded-For), not the proxy's address,
// and so does the address stored on the lead.
func TestAbuseLimitsFollowClientIP(t *testing.T) {
	up := newUpstream(t)
	// leads_per_client off: the collect limiter is what is measured.
	c := startHardened(t, proxiedSite, proxiedVars(up.URL, "DESTS", "leads_per_client off"), hardOpts{})
	site := c.URL("PORT_SITE")
	collect := site + "/_leadproxy/collect"
	send := func(xff, sid, phone string) int {
		code, _ := hardPost(t, collect, "text/plain", abuseReport(site, sid, phone, ""), map[string]string{"Origin": site, "X-Forwarded-For": xff})
		return code
	}
	accepted := 0
	for i := range collectBurst + 5 {
		code := send("198.51.100.10", fmt.Sprintf("sid-visitor-a-%03d", i), fmt.Sprintf("+7999200%04d", i))
		if code == 429 {
			break
		}
		if code != 204 {
			t.Fatalf("visitor A report %d: %d", i, code)
		}
		accepted++
	}
	if accepted != collectBurst {
		t.Fatalf("visitor A: %d reports before the first 429, want the burst of %d", accepted, collectBurst)
	}
	if code := send("203.0.113.20", "sid-visitor-b-001", "+79993000001"); code != 204 {
		t.Fatalf("visitor B (another X-Forwarded-For) refused with %d after visitor A's burst: they share a bucket", code)
	}
	l := hardLeadByPhone(t, c, "+79993000001")
	if l == nil || l.Visit == nil || l.Visit.IP != "203.0.113.20" {
		t.Fatalf("visitor B's lead: %+v, want visit.ip 203.0.113.20 from X-Forwarded-For", l)
	}
}

// The issue-16 flood: 100,000 reports from distinct addresses (50,000 of
// one IPv6 /64, 50,000 of distinct IPv4 /24s), then a real visitor, whose
// report is accepted and stored. The flood's reports are honeypot reports
// so that what is measured is the limiter, not the store.
func TestAbuseFloodOfAddressesLetsVisitorsIn(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	site := c.URL("PORT_SITE")
	collect := site + "/_leadproxy/collect"
	const flood = 100_000
	var next, limited, passed atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= flood {
					return
				}
				// Even: one /64; odd: 10.a.b.1, a new /24 each.
				addr := fmt.Sprintf("2001:db8:1:2:%x:%x::1", i>>16, i&0xffff)
				if h := i / 2; i%2 == 1 {
					addr = fmt.Sprintf("10.%d.%d.1", h>>8, h&0xff)
				}
				req, _ := http.NewRequest("POST", collect, strings.NewReader(string(abuseReport(site, fmt.Sprintf("sid-flood-%07d", i), "+79990000000", "bot"))))
				req.Header.Set("Content-Type", "text/plain")
				req.Header.Set("Origin", site)
				req.Header.Set("X-Forwarded-For", addr)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 429:
					limited.Add(1)
				case 204:
					passed.Add(1)
				default:
					t.Errorf("flood report %d: %d", i, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("flood of %d addresses: %d passed the limiter, %d limited", flood, passed.Load(), limited.Load())
	if limited.Load() == 0 {
		t.Fatal("50,000 addresses of one /64 were never limited: the network bucket does nothing")
	}
	code, _ := hardPost(t, collect, "text/plain", abuseReport(site, "sid-real-visitor-1", "+79994000001", ""),
		map[string]string{"Origin": site, "X-Forwarded-For": "198.51.100.77"})
	if code != 204 {
		t.Fatalf("the real visitor's report after the flood: %d, want 204", code)
	}
	if hardLeadByPhone(t, c, "+79994000001") == nil {
		t.Fatal("the real visitor's lead is not stored")
	}
}

// One client's 2,000 forged posts (a post rule: no script, no marker
// needed) store at most leads_per_client, and every post reaches the site
// byte for byte; another client is still captured.
func TestAbuseOneClientPostsStoreAtMostBudget(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL, "DESTS", fmt.Sprintf("leads_per_client %d", DefaultLeadsPerClient)), hardOpts{})
	site := c.URL("PORT_SITE")
	start := time.Now()
	const posts = 2000
	refused := hardMetric(t, c, `leadproxy_capture_failures_total{reason="budget_client"}`)
	for i := range posts {
		body := []byte(fmt.Sprintf("phone=%%2B7999500%04d&name=forged&pad=%s", i, strings.Repeat("x", 1000)))
		code, answer := hardPost(t, site+"/callback", formCT, body, map[string]string{"X-Forwarded-For": "198.51.100.66"})
		if _, got := up.last(); code != 200 || !strings.Contains(answer, "thanks") || !bytes.Equal(got, body) {
			t.Fatalf("post %d: visitor got %d, upstream got %d of %d bytes", i, code, len(got), len(body))
		}
	}
	minutes := time.Since(start).Minutes()
	budget := DefaultLeadsPerClient + int(math.Ceil(minutes*DefaultLeadsPerClient))
	stored := len(hardLeads(t, c))
	t.Logf("%d posts in %.1fs: %d leads stored (budget %d at once + %d/min)", posts, minutes*60, stored, DefaultLeadsPerClient, DefaultLeadsPerClient)
	if stored < DefaultLeadsPerClient || stored > budget {
		t.Fatalf("%d leads stored from one client's %d posts, want %d..%d", stored, posts, DefaultLeadsPerClient, budget)
	}
	if got := hardMetric(t, c, `leadproxy_capture_failures_total{reason="budget_client"}`) - refused; int(got) != posts-stored {
		t.Fatalf("budget_client counted %v refusals, want %d", got, posts-stored)
	}
	if !strings.Contains(c.Logs(t), "over leads_per_client") {
		t.Fatal("no log line for the refused captures")
	}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79995999999"), map[string]string{"X-Forwarded-For": "203.0.113.99"})
	if hardLeadByPhone(t, c, "+79995999999") == nil {
		t.Fatal("another client's post was not captured")
	}
}

// Past max_store new captures are refused with a metric and a log line;
// the site keeps serving and posts pass through byte for byte.
func TestAbuseMaxStore(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL, "DESTS", "max_store 2MB\n\t\tleads_per_client off\n\t\tleads_per_site off"), hardOpts{})
	site := c.URL("PORT_SITE")
	// 60 fields of 8 KiB (the most a field keeps): about 480 KB a lead.
	var pad strings.Builder
	for f := range 60 {
		fmt.Fprintf(&pad, "&pad%d=%s", f, strings.Repeat("y", 8<<10))
	}
	full := -1
	for i := 0; i < 50 && full < 0; i++ {
		body := []byte(fmt.Sprintf("phone=%%2B7999600%04d%s", i, pad.String()))
		checkPassedOn(t, c, up, formCT, body, nil)
		if hardLeadByPhone(t, c, fmt.Sprintf("+7999600%04d", i)) == nil {
			full = i
		}
	}
	if full < 0 {
		t.Fatal("50 posts of 480 KB never met max_store 2MB")
	}
	if full > 6 {
		t.Fatalf("%d leads of 480 KB stored under max_store 2MB", full)
	}
	if got := hardMetric(t, c, `leadproxy_capture_failures_total{reason="store_full"}`); got < 1 {
		t.Fatalf("store_full counted %v", got)
	}
	if !strings.Contains(c.Logs(t), "lead store over max_store") {
		t.Fatal("no log line for the refused capture")
	}
	resp, err := noCompress.Get(site + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("site not served past max_store: %v %v", err, resp)
	}
	resp.Body.Close()
	t.Logf("store full after %d leads of 480 KB (max_store 2MB)", full)
}

// Dedup poisoning: a forged lead with a visitor's phone, then the
// visitor's real submission inside dedup_window: the real data reaches the
// CRM (amoCRM's fake), and the real lead says what dedup did.
func TestAbuseForgedLeadDoesNotSwallowRealOne(t *testing.T) {
	up := newUpstream(t)
	amo := amocrmtest.New()
	t.Cleanup(amo.Close)
	dest := "destination amo amocrm {\n\t\t\t" + strings.ReplaceAll(amo.Caddyfile(), "\n", "\n\t\t\t") + "\n\t\t}"
	c := startHardened(t, proxiedSite, proxiedVars(up.URL, "DESTS", dest), hardOpts{})
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79997000001&name=%D0%97%D0%BB%D0%BE%D0%B9"), map[string]string{"X-Forwarded-For": "203.0.113.66"})        // name=Злой
	checkPassedOn(t, c, up, formCT, []byte("phone=8+999+700-00-01&name=%D0%9C%D0%B0%D1%80%D0%B8%D1%8F"), map[string]string{"X-Forwarded-For": "198.51.100.5"}) // name=Мария
	waitFor(t, "both leads in amoCRM", 30*time.Second, func() bool { return len(amo.Leads()) == 2 })
	names := []string{}
	for _, l := range amo.Leads() {
		for _, ct := range l.Embedded.Contacts {
			names = append(names, ct.FirstName)
		}
	}
	if !slices.Contains(names, "Мария") {
		t.Fatalf("the real visitor's name is not in the CRM: contacts %q", names)
	}
	var real *lead.Lead
	for _, l := range hardLeads(t, c) {
		if l.Name == "Мария" {
			real = &l
		}
	}
	if real == nil || real.Dedup != lead.DedupSameContact || real.SameContactAs == "" || real.DuplicateOf != "" {
		t.Fatalf("the real lead: %+v, want dedup %q linked to the forged one", real, lead.DedupSameContact)
	}
	// The same submission again (a double submit) is still one lead.
	checkPassedOn(t, c, up, formCT, []byte("phone=8+999+700-00-01&name=%D0%9C%D0%B0%D1%80%D0%B8%D1%8F"), map[string]string{"X-Forwarded-For": "198.51.100.5"})
	var dups int
	for _, l := range hardLeads(t, c) {
		if l.Dedup == lead.DedupDuplicate {
			dups++
		}
	}
	if dups != 1 || len(amo.Leads()) != 2 {
		t.Fatalf("double submit: %d duplicates stored, %d leads in the CRM; want 1 and 2", dups, len(amo.Leads()))
	}
}

// What is stored is clean on every path: no NUL byte (Roistat API), no
// field named like a secret (form post), and a phone libphonenumber
// rejects is not a contact (collect answers 422 and stores nothing).
func TestAbuseStoredValuesClean(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	site := c.URL("PORT_SITE")
	api := site + "/_leadproxy/api/proxy/1.0/leads/add"
	code, answer := hardPost(t, api, formCT, []byte("key=hard-api-key-41d7&name=%D0%90%D0%BD%00%D0%BD%D0%B0&phone=%2B79998000001&comment=a%00b"), nil)
	if code != 200 {
		t.Fatalf("API: %d %s", code, answer)
	}
	l := hardLeadByPhone(t, c, "+79998000001")
	if l == nil || l.Name != "Анна" || l.Comment != "ab" {
		t.Fatalf("API lead %+v, want NUL bytes removed", l)
	}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79998000002&api_key=k1&secret=s1&token=t1&pin=1234&client.secret=s2"), nil)
	l = hardLeadByPhone(t, c, "+79998000002")
	if l == nil {
		t.Fatal("post not captured")
	}
	for k := range l.Fields {
		if k != "phone" {
			t.Errorf("field %q stored", k)
		}
	}
	code, _ = hardPost(t, site+"/_leadproxy/collect", "text/plain", abuseReport(site, "sid-junk-phone-01", "+7 999 ... <img src=x onerror=alert(1)>", ""), map[string]string{"Origin": site})
	if code != 202 {
		t.Fatalf("collect with a junk phone and no email: %d, want 202 (no contact: answered, not stored)", code)
	}
	if n := len(hardLeads(t, c)); n != 2 {
		t.Fatalf("%d leads, want 2", n)
	}
}

// Roistat API key guesses: 1,000 wrong keys from one address are checked
// only apiKeyFreeGuesses times, then refused with a growing Retry-After;
// the site's backend at another address is not slowed down.
func TestAbuseAPIKeyGuesses(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	api := c.URL("PORT_SITE") + "/_leadproxy/api/proxy/1.0/leads/add"
	checked, waited := 0, 0
	for i := range 1000 {
		code, _ := hardPost(t, api, formCT, []byte(fmt.Sprintf("key=guess-%d&phone=%%2B79998100001", i)), map[string]string{"X-Forwarded-For": "203.0.113.77"})
		switch code {
		case 403:
			checked++
		case 429:
			waited++
		default:
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if checked != apiKeyFreeGuesses || waited != 1000-checked {
		t.Fatalf("of 1000 wrong keys %d were checked and %d refused; want %d checked", checked, waited, apiKeyFreeGuesses)
	}
	if code, answer := hardPost(t, api, formCT, []byte("key=hard-api-key-41d7&phone=%2B79998100002"), map[string]string{"X-Forwarded-For": "198.51.100.8"}); code != 200 {
		t.Fatalf("the backend with the right key: %d %s", code, answer)
	}
	if n := len(hardLeads(t, c)); n != 1 {
		t.Fatalf("%d leads, want 1", n)
	}
}

// adminSearch is POST /leadproxy/leads with a JSON body.
func adminSearch(t *testing.T, c *caddyProc, body string) leadList {
	t.Helper()
	resp, err := http.Post(c.Admin+"/leadproxy/leads", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list leadList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /leadproxy/leads %s: %d %v", body, resp.StatusCode, err)
	}
	return list
}

// Search terms are personal data: they go in the admin API's POST body,
// never in its URI, which Caddy logs at info level; a GET with q is
// refused.
func TestAbuseSearchTermsNotLogged(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79998200001&name=%D0%A1%D0%B5%D0%BA%D1%80%D0%B5%D1%82%D0%BE%D0%B2"), nil) // Секретов
	if got := adminSearch(t, c, `{"q": "Секретов", "limit": 10}`); len(got.Leads) != 1 || got.Leads[0].Phone != "+79998200001" {
		t.Fatalf("search by name: %+v", got.Leads)
	}
	if got := adminSearch(t, c, `{"q": "+7999820"}`); len(got.Leads) != 1 {
		t.Fatalf("search by phone: %d leads", len(got.Leads))
	}
	// (A refused GET's URI is logged all the same: Caddy logs it first.)
	resp, err := http.Get(c.Admin + "/leadproxy/leads?q=probe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("GET with q: %d, want 400", resp.StatusCode)
	}
	log := c.Logs(t)
	for _, v := range []string{"Секретов", `\u0421\u0435\u043a`, "79998200001", "7999820"} {
		if strings.Contains(log, v) {
			t.Errorf("the log holds %q", v)
		}
	}
}

// The dashboard's search is a GET (its links carry it): the site's access
// log skips a request with search terms, and logs the others.
func TestAbuseDashboardSearchNotLogged(t *testing.T) {
	up := newUpstream(t)
	c := startCaddy(t, `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	log
	leadproxy {
		form "Заявка" {
			post    /callback
			require phone
		}
	}
	handle /leads* {
		leadproxy_dashboard
	}
	reverse_proxy {{UPSTREAM}}
}
`, map[string]string{"UPSTREAM": up.URL})
	site := c.URL("PORT_SITE")
	for _, path := range []string{"/leads?q=%D0%A1%D0%B5%D0%BA%D1%80%D0%B5%D1%82%D0%BE%D0%B2", "/leads?status=failed&probe=logged"} {
		resp, err := noCompress.Get(site + path)
		if err != nil {
			t.Fatal(err)
		}
		// Read whole, so the second request reuses the connection: Caddy
		// has written (or skipped) the first one's access line before it
		// reads the next request there.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	// Caddy writes a request's access line after its answer has gone out,
	// so the line may come after the log barrier's: wait for it.
	log := c.Logs(t)
	waitFor(t, "the access line of the request without search terms", 30*time.Second, func() bool {
		log = c.logs.String()
		return strings.Contains(log, "probe=logged")
	})
	if strings.Contains(log, "%D0%A1%D0%B5") || strings.Contains(log, "Секретов") {
		t.Fatal("the access log holds the search terms")
	}
}

// A marker with an empty path ("a":"") matches only a click rule: for the
// submit rule "Форма" it captures nothing, whatever the path, even with
// the rule's real token (from c.js); with the path it names it is the
// sender's own post, held by leads_per_client. (Markers without a valid
// token: TestMarkerForgedAndStaleCaptureNothing.)
func TestAbuseForgedMarkerEmptyPath(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL), hardOpts{})
	token := siteToken(t, c.URL("PORT_SITE"), intercept.RuleID("Форма"))
	marker := func(action string) map[string]string {
		v, err := intercept.EncodeCookieJSON(map[string]any{"v": 1, "r": intercept.RuleID("Форма"), "s": "sid-forged-000001", "a": action, "t": token})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"Cookie": intercept.MarkerCookie + "=" + v}
	}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79998300001"), nil) // the post rule's own capture, for contrast
	code, _ := hardPost(t, c.URL("PORT_SITE")+"/account/settings", formCT, []byte("phone=%2B79998300002"), marker(""))
	if code != 200 {
		t.Fatalf("post: %d", code)
	}
	if l := hardLeadByPhone(t, c, "+79998300002"); l != nil {
		t.Fatalf("a forged submit marker with no path captured %+v", l)
	}
	hardPost(t, c.URL("PORT_SITE")+"/account/settings", formCT, []byte("phone=%2B79998300003"), marker("/account/settings"))
	if hardLeadByPhone(t, c, "+79998300003") == nil {
		t.Fatal("a submit marker naming its post's path did not capture")
	}
}

// leads_per_site holds a flood from many addresses: 20 clients' posts,
// each within its own budget, store the site's 5.
func TestAbuseSiteBudget(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, proxiedSite, proxiedVars(up.URL, "DESTS", "leads_per_site 5"), hardOpts{})
	for i := range 20 {
		checkPassedOn(t, c, up, formCT, []byte(fmt.Sprintf("phone=%%2B7999840%04d", i)), map[string]string{"X-Forwarded-For": fmt.Sprintf("10.%d.0.1", i)})
	}
	if n := len(hardLeads(t, c)); n < 5 || n > 6 { // 5 at once, and at most one refilled while the posts run
		t.Fatalf("%d leads stored from 20 clients, want leads_per_site's 5", n)
	}
	if got := hardMetric(t, c, `leadproxy_capture_failures_total{reason="budget_site"}`); got < 14 {
		t.Fatalf("budget_site counted %v", got)
	}
}
