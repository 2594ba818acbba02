package caddymodule

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/queue"
)

// siteToken is the marker token the site's capture script carries for
// rule, read from {prefix}/c.js as a browser gets it.
func siteToken(t testing.TB, site, rule string) string {
	t.Helper()
	resp, err := noCompress.Get(site + DefaultPrefix + "/c.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`"i":"` + regexp.QuoteMeta(rule) + `"[^}]*?"t":"([^"]+)"`).FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("c.js (%d) has no token for rule %s:\n%s", resp.StatusCode, rule, tail(string(body), 600))
	}
	return string(m[1])
}

// markerHeader is a Cookie header carrying m.
func markerHeader(t testing.TB, m intercept.Marker) map[string]string {
	t.Helper()
	v, err := intercept.EncodeCookieJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Cookie": intercept.MarkerCookie + "=" + v}
}

const testMarkerKey = "test-marker-key-0123456789abcdef-0123456789"

// A flood of forged and stale markers on loopback against the real binary:
// 2,000 posts whose markers are unsigned, made up, signed by another key,
// for another site or rule, expired, or dated too far ahead store nothing,
// and every post reaches the site byte for byte. The same key's real token
// (from c.js, as a browser gets it, and one the test signs with the
// configured marker_key) captures, so the flood would be caught if the
// signature were not checked. leads_per_client is off: the signature, not
// the budget, is what holds.
func TestMarkerForgedAndStaleCaptureNothing(t *testing.T) {
	t.Setenv("LEADPROXY_TEST_MARKER_KEY", testMarkerKey)
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL, "DESTS", "marker_key {env.LEADPROXY_TEST_MARKER_KEY}\n\t\tleads_per_client off"), hardOpts{})
	site := c.URL("PORT_SITE")
	rule := intercept.RuleID("Форма")
	key, _ := intercept.NewMarkerSigner([]byte(testMarkerKey))
	other, _ := intercept.NewMarkerSigner([]byte("another key, 32 bytes or more............"))
	now := time.Now()
	real := siteToken(t, site, rule)
	if key.Verify(&intercept.Marker{Rule: rule, Token: real}, "127.0.0.1", now) != nil {
		t.Fatalf("c.js's token %q is not marker_key's", real)
	}
	_, mac, _ := strings.Cut(real, ".")
	forgeries := []struct{ name, rule, token string }{
		{"unsigned", rule, ""},
		{"made up", rule, "zzzzzz." + strings.Repeat("A", 22)},
		{"expiry pushed", rule, "zzzzzz." + mac},
		{"another key", rule, other.Token("127.0.0.1", rule, intercept.MarkerExpiry(now))},
		{"another site", rule, key.Token("evil.example", rule, intercept.MarkerExpiry(now))},
		{"another rule", intercept.RuleID("Другая"), real},
		{"stale", rule, key.Token("127.0.0.1", rule, now.Add(-time.Second))},
		{"expiry far ahead", rule, key.Token("127.0.0.1", rule, now.Add(72*time.Hour))},
	}
	reasons := []string{"marker_unsigned", "marker_forged", "marker_stale"}
	before := 0.0
	for _, r := range reasons {
		before += hardMetric(t, c, `leadproxy_capture_failures_total{reason="`+r+`"}`)
	}
	const posts = 2000
	for i := range posts {
		f := forgeries[i%len(forgeries)]
		path := fmt.Sprintf("/any/path/%d", i%7) // the forger's choice: the marker names it
		body := []byte(fmt.Sprintf("phone=%%2B7999600%04d&name=forged", i))
		sid := fmt.Sprintf("forged-sid-%08d", i)
		code, answer := hardPost(t, site+path, formCT, body, markerHeader(t, intercept.Marker{V: 1, Rule: f.rule, SID: sid, Action: path, Token: f.token}))
		if _, got := up.last(); code != 200 || !strings.Contains(answer, "thanks") || !bytes.Equal(got, body) {
			t.Fatalf("post %d (%s): visitor got %d, upstream got %d of %d bytes", i, f.name, code, len(got), len(body))
		}
	}
	if n := len(hardLeads(t, c)); n != 0 {
		t.Fatalf("%d forged markers captured %d leads, want none", posts, n)
	}
	after := 0.0
	for _, r := range reasons {
		after += hardMetric(t, c, `leadproxy_capture_failures_total{reason="`+r+`"}`)
	}
	if int(after-before) != posts {
		t.Fatalf("marker_* failures counted %v, want %d", after-before, posts)
	}
	for _, r := range reasons {
		if hardMetric(t, c, `leadproxy_capture_failures_total{reason="`+r+`"}`) == 0 {
			t.Errorf("no %s counted", r)
		}
	}
	// The real tokens capture: the script's, and one the configured key
	// signs (the key is the config's, not the store's).
	for i, tok := range []string{real, key.Token("127.0.0.1", rule, intercept.MarkerExpiry(now))} {
		phone := fmt.Sprintf("+7999601000%d", i)
		hardPost(t, site+"/send", formCT, []byte("phone="+strings.Replace(phone, "+", "%2B", 1)),
			markerHeader(t, intercept.Marker{V: 1, Rule: rule, SID: fmt.Sprintf("real-sid-%08d", i), Action: "/send", Token: tok}))
		if hardLeadByPhone(t, c, phone) == nil {
			t.Fatalf("a marker with a real token (%d) did not capture", i)
		}
	}
}

// The store's key (no marker_key) survives a reload and a restart: a token
// served before still captures after. The key is in no log line, in no
// admin API answer and not in the served config.
func TestMarkerStoreKeySurvivesRestart(t *testing.T) {
	up := newUpstream(t)
	vars := hardVars(up.URL, "DESTS", "leads_per_client off")
	c := startHardened(t, hardSite, vars, hardOpts{})
	site := c.URL("PORT_SITE")
	rule := intercept.RuleID("Форма")
	tok := siteToken(t, site, rule)
	etag := scriptETag(t, site, "")
	post := func(i int, tok string) bool {
		t.Helper()
		phone := fmt.Sprintf("+7999602000%d", i)
		body := "phone=" + strings.Replace(phone, "+", "%2B", 1)
		cookie := markerHeader(t, intercept.Marker{V: 1, Rule: rule, SID: fmt.Sprintf("restart-sid-%08d", i), Action: "/send", Token: tok})["Cookie"]
		// A reload's listener handover may reset a connection before any
		// handler reads it (TestReloadWhileServing): that post got no answer
		// and is sent again, as a browser would; one submission id, one lead.
		for try := 0; ; try++ {
			req, _ := http.NewRequest("POST", site+"/send", strings.NewReader(body))
			req.Header.Set("Content-Type", formCT)
			req.Header.Set("Cookie", cookie)
			resp, err := noCompress.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				break
			}
			if try == 2 {
				t.Fatal(err)
			}
			noCompress.CloseIdleConnections()
		}
		return hardLeadByPhone(t, c, phone) != nil
	}
	if !post(0, tok) {
		t.Fatal("the script's own token did not capture")
	}
	vars["OPTS"] = "max_body 2MB" // a reload with another config
	if err := c.Reload(hardSite); err != nil {
		t.Fatal(err)
	}
	if !post(1, tok) {
		t.Fatal("a token served before a reload did not capture after it")
	}
	c.Stop()
	c.Restart(hardSite)
	if !post(2, tok) {
		t.Fatal("a token served before a restart did not capture after it")
	}
	if intercept.MarkerExpiry(time.Now()).Unix() == expiryOf(t, tok) { // still the same hour
		if again := siteToken(t, site, rule); again != tok {
			t.Fatalf("the same hour's token changed across the restart: %s, then %s", tok, again)
		}
		// A browser's cached c.js is still the one served: 304.
		if got := scriptETag(t, site, etag); got != "304" {
			t.Fatalf("c.js revalidated with its ETag across the restart: %s, want 304", got)
		}
	}
	// What the admin API shows, then the key from the store itself.
	var shown strings.Builder
	for _, p := range []string{"/config/", "/leadproxy/leads?limit=100", "/leadproxy/stats", "/leadproxy/forms?all=1", "/leadproxy/report", "/leadproxy/leads.csv", "/metrics"} {
		resp, err := http.Get(c.Admin + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&shown, "%s %d\n%s\n", p, resp.StatusCode, b)
	}
	c.Stop()
	st, err := queue.Open(queue.Options{Dir: c.Storage})
	if err != nil {
		t.Fatal(err)
	}
	key, err := st.Secret("marker")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := intercept.NewMarkerSigner(key)
	if signer.Verify(&intercept.Marker{Rule: rule, Token: tok}, "127.0.0.1", time.Now()) != nil {
		t.Fatal("the store's key did not sign the script's token: the test reads the wrong key")
	}
	logs := c.logs.String() // the whole run's, the stop included
	for _, enc := range []string{hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)), base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), string(key)} {
		if strings.Contains(logs, enc) {
			t.Fatalf("the marker key is in the log (%q)", enc)
		}
		if strings.Contains(shown.String(), enc) {
			t.Fatalf("the marker key is in an admin API answer (%q)", enc)
		}
	}
}

// scriptETag GETs c.js, with If-None-Match when given: its ETag, or "304".
func scriptETag(t *testing.T, site, ifNoneMatch string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", site+DefaultPrefix+"/c.js", nil)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return "304"
	}
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Fatalf("c.js: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	return resp.Header.Get("ETag")
}

func expiryOf(t *testing.T, tok string) int64 {
	t.Helper()
	e, _, _ := strings.Cut(tok, ".")
	v, err := strconv.ParseInt(e, 36, 64)
	if err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	return v
}

// Two nodes behind one load balancer, each with its own store: with one
// marker_key a visitor who got c.js from one node is captured by the
// other; with each store's own key, the other node's marker captures
// nothing (why SECURITY.md asks for one marker_key per fleet).
func TestMarkerKeySharedByNodes(t *testing.T) {
	t.Setenv("LEADPROXY_TEST_MARKER_KEY", testMarkerKey)
	rule := intercept.RuleID("Форма")
	shared := hardVars(newUpstream(t).URL, "DESTS", "marker_key {env.LEADPROXY_TEST_MARKER_KEY}\n\t\tleads_per_client off")
	own := hardVars(newUpstream(t).URL, "DESTS", "leads_per_client off")
	for i, tc := range []struct {
		name     string
		vars     map[string]string
		captured bool
	}{{"one marker_key", shared, true}, {"each store's key", own, false}} {
		a := startHardened(t, hardSite, tc.vars, hardOpts{})
		b := startHardened(t, hardSite, tc.vars, hardOpts{})
		tok := siteToken(t, a.URL("PORT_SITE"), rule)
		phone := fmt.Sprintf("+7999603000%d", i)
		hardPost(t, b.URL("PORT_SITE")+"/send", formCT, []byte("phone="+strings.Replace(phone, "+", "%2B", 1)),
			markerHeader(t, intercept.Marker{V: 1, Rule: rule, SID: fmt.Sprintf("fleet-sid-%08d", i), Action: "/send", Token: tok}))
		if got := hardLeadByPhone(t, b, phone) != nil; got != tc.captured {
			t.Errorf("%s: node B captured node A's marker: %v, want %v", tc.name, got, tc.captured)
		}
	}
}
