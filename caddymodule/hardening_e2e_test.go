package caddymodule

// Hardening: limits, failure isolation and the security claims of
// SECURITY.md, each checked through the real binary. Failures of the disk
// are real ones: a tmpfs that fills up and a read-only bind mount, made in
// a private mount namespace of the Caddy process (`unshare -rm`, which
// needs no root where unprivileged user namespaces are allowed; the tests
// skip where they are not, and fail instead with
// LEADPROXY_REQUIRE_NAMESPACES=1, as CI should set).

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// hardSite captures POSTs to /callback carrying a phone (no script
// needed), reports for the form "Форма", and the Roistat API.
const hardSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
		{{DESTS}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	leadproxy {
		api_key hard-api-key-41d7
		{{OPTS}}
		form "Заявка" {
			post    /callback
			require phone
		}
		form "Форма" {
			submit "#f"
			phone  field phone
		}
	}
	reverse_proxy {{UPSTREAM}}
}
`

func hardVars(upstream string, kv ...string) map[string]string {
	v := map[string]string{"UPSTREAM": upstream, "DESTS": "", "OPTS": ""}
	for i := 0; i+1 < len(kv); i += 2 {
		v[kv[i]] = kv[i+1]
	}
	return v
}

// hardOpts changes how startHardened runs Caddy.
type hardOpts struct {
	bin     string // the binary; default caddyBin
	storage string // the storage folder; default a new <tmp>/store/leads
	mount   string // sh commands run in a private mount namespace before Caddy; $STORE is the folder holding the storage folder
}

var unshareErr = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "leadproxy-unshare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("unshare", "-rm", "sh", "-ec", "mount -t tmpfs -o size=64k tmpfs \"$0\" && mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\"", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
})

// startHardened runs Caddy like startCaddy, with its storage folder at
// $STORE/leads, optionally under a mount script (see hardOpts). It waits
// for the admin endpoint, not for the lead store, which may be broken on
// purpose.
func startHardened(t *testing.T, tmpl string, vars map[string]string, o hardOpts) *caddyProc {
	t.Helper()
	if o.mount != "" {
		if err := unshareErr(); err != nil {
			if os.Getenv("LEADPROXY_REQUIRE_NAMESPACES") == "1" {
				t.Fatalf("no private mount namespace here (unshare -rm), and LEADPROXY_REQUIRE_NAMESPACES=1: %v", err)
			}
			t.Skipf("no private mount namespace here (unshare -rm): %v", err)
		}
	}
	dir := t.TempDir()
	c := &caddyProc{t: t, dir: dir, Ports: map[string]int{}, Storage: o.storage, logs: &syncBuffer{}, vars: vars}
	if c.Storage == "" {
		c.Storage = filepath.Join(dir, "store", "leads")
	}
	if err := os.MkdirAll(filepath.Dir(c.Storage), 0o755); err != nil {
		t.Fatal(err)
	}
	c.Admin = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(c.expand(tmpl)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := o.bin
	if bin == "" {
		bin = caddyBin
	}
	args := []string{bin, "run", "--config", cfg, "--adapter", "caddyfile"}
	if o.mount != "" {
		args = append([]string{"unshare", "-rm", "sh", "-ec", o.mount + "\nexec \"$@\"", "sh"}, args...)
	}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HOME="+dir, "STORE="+filepath.Dir(c.Storage))
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("caddy log:\n%s", tail(c.logs.String(), 6000))
		}
	})
	c.waitServing(0)
	return c
}

// inNamespace is a path as the Caddy process sees it (inside its mount
// namespace).
func (c *caddyProc) inNamespace(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", c.cmd.Process.Pid, path)
}

// faultsBin is cmd/caddy built with -tags leadproxy_faults (faults_injected.go).
var faultsBin = sync.OnceValues(func() (string, error) {
	out := filepath.Join(filepath.Dir(caddyBin), "caddy-faults")
	b, err := exec.Command("go", "build", "-tags", "leadproxy_faults", "-o", out, "../cmd/caddy").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, b)
	}
	return out, nil
})

// hardMetric reads one series ("name{label=\"v\"}") from Caddy's /metrics.
func hardMetric(t *testing.T, c *caddyProc, series string) float64 {
	t.Helper()
	resp, err := http.Get(c.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// hardPost posts body and returns the status and answer.
func hardPost(t *testing.T, target, ctype string, body []byte, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noCompress.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hardLeads lists every lead (up to 1000).
func hardLeads(t *testing.T, c *caddyProc) []lead.Lead {
	t.Helper()
	var list leadList
	if code := c.AdminJSON("/leadproxy/leads?limit=1000", &list); code != 200 {
		t.Fatalf("GET /leadproxy/leads: %d", code)
	}
	return list.Leads
}

func hardLeadByPhone(t *testing.T, c *caddyProc, phone string) *lead.Lead {
	t.Helper()
	for _, l := range hardLeads(t, c) {
		if l.Phone == phone {
			var full lead.Lead
			c.AdminJSON("/leadproxy/leads/"+l.ID, &full)
			return &full
		}
	}
	return nil
}

const formCT = "application/x-www-form-urlencoded"

// streamUpstream counts the body bytes it has received so far and keeps a
// hash of each body.
type streamUpstream struct {
	*httptest.Server
	received atomic.Int64
	mu       sync.Mutex
	sums     [][32]byte
}

func newStreamUpstream(t *testing.T) *streamUpstream {
	u := &streamUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			h.Write(buf[:n])
			u.received.Add(int64(n))
			if err != nil {
				break
			}
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		u.mu.Lock()
		u.sums = append(u.sums, sum)
		u.mu.Unlock()
		io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *streamUpstream) lastSum() [32]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.sums) == 0 {
		return [32]byte{}
	}
	return u.sums[len(u.sums)-1]
}

// TestHardeningLargeBodyStreamsThrough: a body over max_body (default
// 1 MiB) passes through uncaptured and counted, bytes intact; with a
// Content-Length it is streamed (the upstream reads its start while the
// client still holds the rest); chunked, it is replayed after the first
// MiB. Just under the limit it is captured, each value within MaxFieldLen.
func TestHardeningLargeBodyStreamsThrough(t *testing.T) {
	up := newStreamUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	body := func(phone string, size int) []byte {
		b := []byte("phone=" + url.QueryEscape(phone) + "&pad=")
		return append(b, bytes.Repeat([]byte("x"), size-len(b))...)
	}
	send := func(t *testing.T, data []byte, known bool, hold int) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", c.URL("PORT_SITE")+"/callback", pr)
		req.Header.Set("Content-Type", formCT)
		if known {
			req.ContentLength = int64(len(data))
		}
		before := up.received.Load()
		done := make(chan error, 1)
		go func() {
			resp, err := noCompress.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			done <- err
		}()
		pw.Write(data[:hold])
		if known {
			waitFor(t, "the upstream to read the start of the body before the client sent the rest", 30*time.Second, func() bool {
				return up.received.Load()-before >= int64(hold/2)
			})
		}
		pw.Write(data[hold:])
		pw.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if up.lastSum() != sha256.Sum256(data) || up.received.Load()-before != int64(len(data)) {
			t.Fatalf("upstream got %d bytes, not the %d sent", up.received.Load()-before, len(data))
		}
	}
	tooLarge := `leadproxy_capture_failures_total{reason="too_large"}`

	for _, o := range []struct {
		name, phone   string
		contentLength bool
		chunk         int
	}{
		{"over the limit with Content-Length: streamed", "+79990000001", true, 256 << 10},
		{"over the limit chunked", "+79990000002", false, 64 << 10},
	} {
		t.Run(o.name, func(t *testing.T) {
			n := hardMetric(t, c, tooLarge)
			send(t, body(o.phone, 3<<20), o.contentLength, o.chunk)
			if hardLeadByPhone(t, c, o.phone) != nil {
				t.Fatal("a body over max_body was captured")
			}
			if got := hardMetric(t, c, tooLarge); got != n+1 {
				t.Fatalf("too_large counted %v, want %v", got, n+1)
			}
		})
	}
	t.Run("just under the limit: captured, values clamped", func(t *testing.T) {
		send(t, body("+79990000003", 1<<20-64), false, 1000)
		l := hardLeadByPhone(t, c, "+79990000003")
		if l == nil {
			t.Fatal("a body under max_body was not captured")
		}
		if len(l.Fields["pad"]) != intercept.MaxFieldLen {
			t.Fatalf("pad kept with %d bytes, want %d", len(l.Fields["pad"]), intercept.MaxFieldLen)
		}
	})
}

// TestHardeningFieldLimits: hostile but small bodies (many fields, one name
// repeated to the size of the body, deep JSON) reach the upstream byte for
// byte; what is captured keeps at most MaxFields fields of at most
// MaxFieldLen bytes.
func TestHardeningFieldLimits(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	var many strings.Builder
	many.WriteString("phone=%2B79990000011")
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&many, "&f%d=v", i)
	}
	cases := []struct{ name, ctype, body, phone string }{
		{"5000 fields", formCT, many.String(), "+79990000011"},
		{"one name repeated", formCT, "phone=%2B79990000012" + strings.Repeat("&a=12345678", 90000), "+79990000012"},
		{"text/plain repeated", "text/plain", "phone=+79990000013\n" + strings.Repeat("a=12345678\n", 90000), "+79990000013"},
		{"json 5000 deep", "application/json", `{"phone":"+79990000014","x":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + "}", ""},
		{"json wide", "application/json", `{"phone":"+79990000015","x":[` + strings.TrimSuffix(strings.Repeat(`"v",`, 50000), ",") + "]}", "+79990000015"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := hardPost(t, c.URL("PORT_SITE")+"/callback", tc.ctype, []byte(tc.body), nil)
			if _, got := up.last(); code != 200 || !bytes.Equal(got, []byte(tc.body)) {
				t.Fatalf("status %d; upstream body %d bytes, sent %d", code, len(got), len(tc.body))
			}
			if tc.phone == "" {
				return
			}
			l := hardLeadByPhone(t, c, tc.phone)
			if l == nil {
				t.Fatal("not captured")
			}
			if len(l.Fields) > intercept.MaxFields {
				t.Fatalf("%d fields kept", len(l.Fields))
			}
			for k, v := range l.Fields {
				if len(v) > intercept.MaxFieldLen {
					t.Fatalf("field %s kept with %d bytes", k, len(v))
				}
			}
		})
	}
}

// hookReceiver is a webhook destination that counts deliveries by lead.
type hookReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  map[string]int
	fail atomic.Bool
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{got: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Data lead.Lead `json:"data"`
		}
		json.NewDecoder(r.Body).Decode(&env)
		if h.fail.Load() {
			http.Error(w, "down", 503)
			return
		}
		h.mu.Lock()
		h.got[env.Data.Phone]++
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"deal-1"}`)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) count(phone string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[phone]
}

func hookDest(url string) string {
	return "destination hook webhook {\n\t\t\turl " + url + "\n\t\t\tsecret " + dashSecret + "\n\t\t}"
}

// TestHardeningSlowBodyHoldsNothing: while one client trickles its form
// post a byte at a time, other captures are stored and delivered: a slow
// body holds no store lock and no delivery worker. Then the slow one
// finishes and is captured too, its body intact.
func TestHardeningSlowBodyHoldsNothing(t *testing.T) {
	up := newUpstream(t)
	hook := newHookReceiver(t)
	c := startHardened(t, hardSite, hardVars(up.URL, "DESTS", hookDest(hook.URL)), hardOpts{})

	head := "phone=%2B79990000100&comment="
	const size = 200_000
	body := []byte(head + strings.Repeat("s", size-len(head)))
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.URL("PORT_SITE"), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /callback HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		strings.TrimPrefix(c.URL("PORT_SITE"), "http://"), formCT, size)
	stop := make(chan struct{})
	sent := make(chan int)
	go func() { // one byte every 20ms until told to stop
		n := 0
		for {
			select {
			case <-stop:
				sent <- n
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := conn.Write(body[n : n+1]); err != nil {
					sent <- -1
					return
				}
				n++
			}
		}
	}()

	// Meanwhile: 20 captures, stored and delivered.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, _ := hardPost(t, c.URL("PORT_SITE")+"/callback", formCT, []byte(fmt.Sprintf("phone=%%2B7999000%04d", 200+i)), nil)
			if code != 200 {
				t.Errorf("capture %d: status %d", i, code)
			}
		}(i)
	}
	wg.Wait()
	waitFor(t, "the other captures delivered while the slow body is still coming", 60*time.Second, func() bool {
		for i := 0; i < 20; i++ {
			if hook.count(fmt.Sprintf("+7999000%04d", 200+i)) == 0 {
				return false
			}
		}
		return true
	})
	close(stop)
	n := <-sent
	if n <= 0 {
		t.Fatal("the slow client could not write")
	}
	if hardLeadByPhone(t, c, "+79990000100") != nil {
		t.Fatal("captured before the body was complete")
	}
	if _, err := conn.Write(body[n:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, got := up.last(); resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("slow post: status %d, upstream got %d of %d bytes", resp.StatusCode, len(got), len(body))
	}
	waitFor(t, "the slow lead delivered", 60*time.Second, func() bool { return hook.count("+79990000100") == 1 })
}

// TestHardeningCollectLimits: {prefix}/collect through Caddy: a report over
// 64 KB, another origin, another content type, a filled honeypot and a
// client over its rate are refused, counted, and not stored.
func TestHardeningCollectLimits(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	site := c.URL("PORT_SITE")
	collect := site + "/_leadproxy/collect"
	report := func(sid, phone, honey, pad string) []byte {
		b, _ := json.Marshal(map[string]any{"v": 1, "r": intercept.RuleID("Форма"), "s": sid, "hp": honey,
			"page": site + "/", "f": map[string]string{"phone": phone, "pad": pad}})
		return b
	}
	same := map[string]string{"Origin": site}
	rejected := func(reason string) float64 {
		return hardMetric(t, c, `leadproxy_collect_rejected_total{reason="`+reason+`"}`)
	}
	cases := []struct {
		name, ctype string
		body        []byte
		header      map[string]string
		status      int
		reason      string
	}{
		{"over 64 KB", "text/plain", report("sid-large-0001", "+79990000301", "", strings.Repeat("x", 70<<10)), same, 413, "too_large"},
		{"another origin", "text/plain", report("sid-origin-001", "+79990000302", "", ""), map[string]string{"Origin": "https://evil.example"}, 403, "origin"},
		{"no origin, no referer", "text/plain", report("sid-origin-002", "+79990000303", "", ""), nil, 403, "origin"},
		{"form content type", formCT, report("sid-ctype-0001", "+79990000304", "", ""), same, 415, "content_type"},
		{"honeypot", "text/plain", report("sid-honey-0001", "+79990000305", "bot", ""), same, 204, "honeypot"},
		{"malformed", "application/json", []byte(`{"v":1,`), same, 400, "malformed"},
		// A multi-step form's early step: no lead, and no error in the
		// page's console either.
		{"no contact", "text/plain", report("sid-nocontact-1", "", "", "шаг 1"), same, 202, "no_contact"},
		{"unfinished phone mask", "text/plain", report("sid-nocontact-2", "+7 (999) ___-__-__", "", ""), same, 202, "no_contact"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := rejected(tc.reason)
			if code, _ := hardPost(t, collect, tc.ctype, tc.body, tc.header); code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			if got := rejected(tc.reason); got != n+1 {
				t.Fatalf("%s counted %v, want %v", tc.reason, got, n+1)
			}
		})
	}
	t.Run("over 64 KB, chunked", func(t *testing.T) {
		req, _ := http.NewRequest("POST", collect, io.MultiReader(bytes.NewReader(report("sid-large-0002", "+79990000306", "", strings.Repeat("x", 70<<10)))))
		req.Header.Set("Origin", site)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := noCompress.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	if l := hardLeads(t, c); len(l) != 0 {
		t.Fatalf("refused reports stored %d leads", len(l))
	}
	t.Run("rate", func(t *testing.T) {
		n := rejected("rate")
		accepted := 0
		for i := 0; i < 200; i++ {
			code, _ := hardPost(t, collect, "text/plain", report(fmt.Sprintf("sid-rate-%04d", i), fmt.Sprintf("+7999100%04d", i), "", ""), same)
			if code == 429 {
				break
			}
			if code != 204 {
				t.Fatalf("report %d: status %d", i, code)
			}
			accepted++
		}
		// Refused reports before this one took tokens from the same bucket.
		if accepted >= 200 || accepted == 0 {
			t.Fatalf("%d reports accepted before the first 429 (burst %d)", accepted, collectBurst)
		}
		if got := rejected("rate"); got != n+1 {
			t.Fatalf("rate counted %v, want %v", got, n+1)
		}
		if l := hardLeads(t, c); len(l) != accepted {
			t.Fatalf("%d leads for %d accepted reports", len(l), accepted)
		}
	})
}

// checkPassedOn posts a capture through c and checks the visitor got the
// upstream's answer and the upstream the exact body.
func checkPassedOn(t *testing.T, c *caddyProc, up *upstream, ctype string, body []byte, header map[string]string) {
	t.Helper()
	code, answer := hardPost(t, c.URL("PORT_SITE")+"/callback", ctype, body, header)
	if _, got := up.last(); code != 200 || !strings.Contains(answer, "thanks") || !bytes.Equal(got, body) {
		t.Fatalf("visitor got %d %q; upstream got %d of %d bytes", code, tail(answer, 100), len(got), len(body))
	}
}

// bigMultipart is a form with a phone and a 600 KB file: over the 256 KB
// kept in memory, so capture spools it to a temporary file.
func bigMultipart(phone string) (string, []byte) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("phone", phone)
	fw, _ := mw.CreateFormFile("cv", "cv.pdf")
	fw.Write(bytes.Repeat([]byte("%PDF\x00\xff-binary-"), 600<<10/16))
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

// TestHardeningFullStore: the store's disk fills up (a 4 MB tmpfs holding
// the store and the temporary folder, filled to the last block). Form
// posts, spooled uploads included, still reach the upstream byte for byte;
// the failures are logged and counted. When space is freed, capture
// resumes without a restart, and a copy of the folder opens with every
// lead that was acknowledged.
func TestHardeningFullStore(t *testing.T) {
	up := newUpstream(t)
	// TMPDIR (where uploads are spooled) on the same small disk; it exists
	// only inside Caddy's namespace.
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{
		mount: `mount -t tmpfs -o size=4m tmpfs "$STORE"; mkdir "$STORE/tmp"; export TMPDIR="$STORE/tmp"`,
	})
	store := filepath.Dir(c.Storage)
	storeFailures := `leadproxy_capture_failures_total{reason="store"}`

	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990000401"), nil)
	if hardLeadByPhone(t, c, "+79990000401") == nil {
		t.Fatal("not captured before the disk filled")
	}

	filler := c.inNamespace(store + "/filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 64<<10)
	for {
		if _, err := f.Write(zeros); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last few bytes too
		for {
			if _, err := f.Write(zeros[:n]); err != nil {
				break
			}
		}
	}
	f.Close()

	before := hardMetric(t, c, storeFailures)
	// A lead is small: post until one does not fit in the blocks the
	// store's data file already holds.
	comment := strings.Repeat("к", 2000)
	failed := 0
	for i := 0; i < 40 && failed < 3; i++ {
		checkPassedOn(t, c, up, formCT, []byte(fmt.Sprintf("phone=%%2B7999000%04d&comment=%s", 500+i, url.QueryEscape(comment))), nil)
		failed = int(hardMetric(t, c, storeFailures) - before)
	}
	if failed < 3 {
		t.Fatalf("the disk is full but captures did not fail (%d failures)", failed)
	}
	if l := c.Logs(t); !strings.Contains(l, "lead not stored; request passed on") || !strings.Contains(l, "no space left on device") {
		t.Fatal("the failure was not logged")
	}
	// An upload spooled to the full temporary folder: not captured, but
	// the upstream gets every byte (before the fix it lost the part held in
	// memory, 256 KB, or the chunk whose write failed).
	ct, mp := bigMultipart("+79990000450")
	checkPassedOn(t, c, up, ct, mp, nil)
	if got, logged := hardMetric(t, c, `leadproxy_capture_failures_total{reason="spool"}`), strings.Contains(c.Logs(t), "could not be spooled"); got != 1 || !logged {
		t.Fatalf("the failed spool: counted %v, logged %v", got, logged)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990000402"), nil)
	ct, mp = bigMultipart("+79990000451")
	checkPassedOn(t, c, up, ct, mp, nil)
	acked := map[string]bool{}
	for _, l := range hardLeads(t, c) {
		acked[l.ID] = true
	}
	for _, p := range []string{"+79990000401", "+79990000402", "+79990000451"} {
		if hardLeadByPhone(t, c, p) == nil {
			t.Fatalf("lead %s missing after the disk was freed", p)
		}
	}

	// The folder as it is on disk (fsynced: every acknowledged lead is in
	// it) opens with all of them. Before queue's repairTails, nutsdb.Open
	// panicked on the tail the failed writes left behind the last lead
	// (queue/testdata/diskfull is such a folder).
	copyDir := t.TempDir()
	entries, err := os.ReadDir(c.inNamespace(c.Storage))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "nutsdb-flock" || e.IsDir() { // visits/: the visit store, apart
			continue
		}
		b, err := os.ReadFile(c.inNamespace(filepath.Join(c.Storage, e.Name())))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(copyDir, e.Name()), b, 0o644)
	}
	st, err := queue.Open(queue.Options{Dir: copyDir})
	if err != nil {
		t.Fatalf("the store written through a full disk does not open: %v", err)
	}
	defer st.Close()
	for id := range acked {
		if _, err := st.Get(id); err != nil {
			t.Errorf("acknowledged lead %s lost on disk: %v", id, err)
		}
	}
}

// TestHardeningReadOnlyStore: the store folder is on a read-only mount when
// Caddy starts. The site is served and its form posts reach the upstream;
// Caddy says loudly that leads are not captured, and counts each one.
// (Before: Caddy refused to start, the whole site down, with advice to
// move the folder aside as if it were damaged.)
func TestHardeningReadOnlyStore(t *testing.T) {
	up := newUpstream(t)
	// A store with a lead in it, then its folder read-only.
	storage := filepath.Join(t.TempDir(), "store", "leads")
	st, err := queue.Open(queue.Options{Dir: storage})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Add(t.Context(), &lead.Lead{Form: "Заявка", Phone: "+79990000601"}, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ro := startHardened(t, hardSite, hardVars(up.URL), hardOpts{storage: storage,
		mount: `mount --bind "$STORE" "$STORE"; mount -o remount,bind,ro "$STORE"`,
	})
	if l := ro.Logs(t); !strings.Contains(l, "lead store unavailable") || !strings.Contains(l, "read-only file system") {
		t.Fatalf("no error about the store in the log")
	}
	for i := 0; i < 3; i++ {
		checkPassedOn(t, ro, up, formCT, []byte(fmt.Sprintf("phone=%%2B7999000%04d", 610+i)), nil)
	}
	ct, mp := bigMultipart("+79990000620")
	checkPassedOn(t, ro, up, ct, mp, nil)
	if got := hardMetric(t, ro, `leadproxy_capture_failures_total{reason="store"}`); got != 4 {
		t.Fatalf("store failures counted %v, want 4", got)
	}
	if code := ro.AdminJSON("/leadproxy/stats", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("stats without a store: %d, want 503", code)
	}
	resp, err := http.Get(ro.URL("PORT_SITE") + "/_leadproxy/c.js")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("c.js: %v %v", err, resp)
	}
	resp.Body.Close()
	// Without the store there is no marker key: the script carries no
	// tokens and must not be cached past the store's repair.
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("c.js without a marker key: Cache-Control %q, want no-store", cc)
	}
}

// inFlightPost is a form post to /callback whose body is still arriving:
// its headers went with Expect: 100-continue, and Caddy answered "100
// Continue", which it does once capture starts reading the body, so the
// post is in a handler (not in a listener's accept queue, which a reload
// resets: Caddy's listener handover, not what these tests are about).
type inFlightPost struct {
	conn net.Conn
	br   *bufio.Reader
	body []byte
	sent int
}

// startPost sends the headers and the first sent bytes of body.
func startPost(t *testing.T, c *caddyProc, body []byte, sent int) *inFlightPost {
	t.Helper()
	host := strings.TrimPrefix(c.URL("PORT_SITE"), "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /callback HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		host, formCT, len(body))
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, " 100 ") {
		t.Fatalf("waiting for 100 Continue: %q %v", line, err)
	}
	br.ReadString('\n')
	conn.Write(body[:sent])
	return &inFlightPost{conn: conn, br: br, body: body, sent: sent}
}

// finish sends the rest of the body and fails unless the answer is the
// upstream's 200 and the upstream got the whole body.
func (p *inFlightPost) finish(t *testing.T, up *upstream) {
	t.Helper()
	p.conn.Write(p.body[p.sent:])
	var resp *http.Response
	var err error
	for resp == nil || resp.StatusCode < 200 { // the upstream's own 100 Continue comes through too
		if resp, err = http.ReadResponse(p.br, nil); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if _, got := up.last(); resp.StatusCode != 200 || !bytes.Equal(got, p.body) {
		t.Fatalf("status %d, upstream got %d of %d bytes", resp.StatusCode, len(got), len(p.body))
	}
}

// TestHardeningStoreClosedByReload: a reload moves the store to another
// folder while a form post is still arriving on the old config. The old
// store closes under it; the lead goes to the new store, and the visitor's
// request to the upstream. (Before: lost, counted as a store failure.)
func TestHardeningStoreClosedByReload(t *testing.T) {
	up := newUpstream(t)
	vars := hardVars(up.URL)
	c := startHardened(t, hardSite, vars, hardOpts{})
	head := "phone=%2B79990000701&comment="
	body := []byte(head + strings.Repeat("r", 5000))
	post := startPost(t, c, body, len(head))

	moved := strings.ReplaceAll(hardSite, "{{STORAGE}}", c.Storage+"-moved")
	if err := c.Reload(moved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old store closed", 30*time.Second, func() bool {
		return strings.Contains(c.logs.String(), `"dir":"`+c.Storage+`-moved"`)
	})
	post.finish(t, up)
	if hardLeadByPhone(t, c, "+79990000701") == nil {
		t.Fatalf("the lead in flight during the reload was lost")
	}
	if got := hardMetric(t, c, `leadproxy_capture_failures_total{reason="store"}`); got != 0 {
		t.Fatalf("store failures: %v", got)
	}
}

// TestHardeningStopWaitsForPostInFlight: Caddy is told to stop (SIGTERM)
// while a form post is still arriving. Caddy stops its apps in no fixed
// order, so the lead store could close before the http server had finished
// the post; it waits for the capture instead. The post reaches the
// upstream, and its lead is in the store when Caddy starts again. (Before:
// lost whenever the store closed first, about one stop in two.)
func TestHardeningStopWaitsForPostInFlight(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	body := []byte("phone=%2B79990001501&comment=" + strings.Repeat("t", 3000))
	post := startPost(t, c, body, 10)
	c.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "Caddy stopping its apps", 30*time.Second, func() bool {
		l := c.logs.String()
		return strings.Contains(l, "servers shutting down") || strings.Contains(l, "waiting for form posts in flight")
	})
	post.finish(t, up)
	c.Stop()
	again := startHardened(t, hardSite, hardVars(up.URL), hardOpts{storage: c.Storage})
	if hardLeadByPhone(t, again, "+79990001501") == nil {
		t.Fatalf("the post in flight when Caddy stopped lost its lead; log:\n%s", tail(c.logs.String(), 3000))
	}
}

// TestHardeningPanicInCapture: capture panics (a binary built with the
// leadproxy_faults tag, after the body was read and parsed, a large upload
// spooled to disk included). The visitor's request reaches the upstream
// byte for byte, the panic is logged and counted, and the next capture
// works.
func TestHardeningPanicInCapture(t *testing.T) {
	bin, err := faultsBin()
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{bin: bin})
	fault := map[string]string{"Leadproxy-Fault": "panic"}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990000801&name=x"), fault)
	ct, mp := bigMultipart("+79990000802")
	checkPassedOn(t, c, up, ct, mp, fault)
	if got := hardMetric(t, c, `leadproxy_capture_failures_total{reason="panic"}`); got != 2 {
		t.Fatalf("panics counted %v, want 2", got)
	}
	if !strings.Contains(c.Logs(t), "capture panicked; request passed on") {
		t.Fatal("the panic was not logged")
	}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990000803"), nil)
	if hardLeadByPhone(t, c, "+79990000803") == nil || hardLeadByPhone(t, c, "+79990000801") != nil {
		t.Fatal("after the panics: the next capture is missing, or a panicked one was stored")
	}
}

// TestHardeningNoSecretsOrPersonalDataInLogs: at the default log level
// neither the visitor's data nor a secret (API keys, tokens, a webhook URL
// with its secret path) is written to Caddy's log, to the config that the
// admin API shows, or to a lead's last error, while destinations fail.
func TestHardeningNoSecretsOrPersonalDataInLogs(t *testing.T) {
	up := newUpstream(t)
	var mu sync.Mutex
	var seen []string
	crmDown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		http.Error(w, "internal error", 500)
	}))
	defer crmDown.Close()
	closed := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	secrets := map[string]string{
		"HARD_HOOK_TOKEN": "tok-9c1b2e7f5a", "HARD_ROISTAT_KEY": "rkey-5d2a81c3", "HARD_AMO_TOKEN": "amo-e4f09b1d",
		"HARD_HOOK_PATH": "hookpath-3e8d7f",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	dests := `destination hook webhook {
			url    ` + crmDown.URL + `/{env.HARD_HOOK_PATH}
			secret ` + dashSecret + `
			header Authorization "Bearer {env.HARD_HOOK_TOKEN}"
		}
		destination rs roistat {
			base_url ` + closed + `
			key      {env.HARD_ROISTAT_KEY}
		}
		destination amo amocrm {
			base_url ` + crmDown.URL + `
			token    {env.HARD_AMO_TOKEN}
		}`
	c := startHardened(t, hardSite, hardVars(up.URL, "DESTS", dests), hardOpts{})
	pii := []string{"Секретный Пётр", "79995554433", "pii-7c1@example.com", "тайный-комментарий", "hard-api-key-41d7"}
	form := url.Values{"phone": {"+7 999 555-44-33"}, "name": {pii[0]}, "email": {pii[2]}, "comment": {pii[3]}}
	checkPassedOn(t, c, up, formCT, []byte(form.Encode()), nil)
	api := url.Values{"key": {"hard-api-key-41d7"}, "phone": {"+79995554434"}, "name": {pii[0]}}
	if code, answer := hardPost(t, c.URL("PORT_SITE")+"/_leadproxy/api/proxy/1.0/leads/add", formCT, []byte(api.Encode()), nil); code != 200 {
		t.Fatalf("API: %d %s", code, answer)
	}
	var l *lead.Lead
	waitFor(t, "every destination tried and failed", 60*time.Second, func() bool {
		l = hardLeadByPhone(t, c, "+79995554433")
		if l == nil || len(l.Deliveries) != 3 {
			return false
		}
		for _, d := range l.Deliveries {
			if d.LastError == "" {
				return false
			}
		}
		return true
	})
	var cfg bytes.Buffer
	resp, err := http.Get(c.Admin + "/config/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(&cfg, resp.Body)
	resp.Body.Close()
	errorsText, _ := json.Marshal(l.Deliveries)
	places := map[string]string{"log": c.Logs(t), "admin config": cfg.String(), "last errors": string(errorsText)}
	for where, text := range places {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %q in the %s", s, where)
			}
		}
	}
	for _, p := range pii {
		if strings.Contains(places["log"], p) {
			t.Errorf("personal data %q in the log", p)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the failing CRM was never called")
	}
}

// recorder is a fake CRM for every destination type (told apart by the
// first path segment) that answers 500 and records each request's header.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
	bad  []string
}

func newRecorder(t *testing.T, marker string) *recorder {
	rec := &recorder{hits: map[string]int{}}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		seg, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		rec.hits[seg]++
		if strings.Contains(r.URL.Path, marker) {
			rec.bad = append(rec.bad, "path: "+r.URL.Path)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(k+v, marker) || strings.ContainsAny(v, "\r\n") {
					rec.bad = append(rec.bad, fmt.Sprintf("%s %s header %s: %q", seg, r.Method, k, v))
				}
			}
		}
		http.Error(w, `{"error":"down"}`, 500)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) count(seg string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.hits[seg]
}

// TestHardeningNoHeaderInjectionIntoCRMs: a lead whose every value (title,
// name, email, comment, CRM field names and values, extra fields, the
// visit) carries "\r\nX-Injected: 1" goes to every destination type. No
// request of any of them has a header or a path made of lead data.
func TestHardeningNoHeaderInjectionIntoCRMs(t *testing.T) {
	const marker = "X-Injected"
	rec := newRecorder(t, marker)
	up := newUpstream(t)
	r := rec.URL
	dests := strings.NewReplacer("{R}", r).Replace(`destination amo amocrm {
			base_url {R}/amo
			token t
		}
		destination b24 bitrix24 {
			webhook_url {R}/b24/rest/1/abcdefgh12345678/
			entity lead
		}
		destination retail retailcrm {
			base_url {R}/retail
			api_key k
			site main
		}
		destination sklad moysklad {
			base_url {R}/sklad
			token t
			organization 7944ef04-f831-11e5-7a69-971500188b19
		}
		destination mp megaplan {
			base_url {R}/mp
			token t
			program 4
		}
		destination sf salesforce {
			base_url {R}/sf
			token t
		}
		destination fo freshoffice {
			base_url {R}/fo
			token t
			manager 1
		}
		destination tours uon {
			base_url {R}/uon
			key k
		}
		destination rs roistat {
			base_url {R}/rs
			key k
		}
		destination hook webhook {
			url {R}/hook
			secret ` + dashSecret + `
		}`)
	c := startHardened(t, hardSite, hardVars(up.URL, "DESTS", dests), hardOpts{})
	evil := "v\r\n" + marker + ": 1\r\n\r\nGET /smuggled HTTP/1.1"
	api := url.Values{"key": {"hard-api-key-41d7"}, "phone": {"+79990000901"}, "title": {evil}, "name": {evil}, "email": {"a@b.c" + evil},
		"comment": {evil}, "roistat": {evil}, "fields[status_id" + evil + "]": {evil}, "fields[x]": {evil}, "client_fields[c" + evil + "]": {evil},
		"is_need_callback": {"1"}, "callback_phone": {"+79990000902" + evil}}
	if code, answer := hardPost(t, c.URL("PORT_SITE")+"/_leadproxy/api/proxy/1.0/leads/add", formCT, []byte(api.Encode()), nil); code != 200 {
		t.Fatalf("API: %d %s", code, answer)
	}
	vis, _ := intercept.EncodeCookieJSON(intercept.VisitInfo{ID: "v1", Landing: "https://x/" + evil, Referrer: evil, UTM: map[string]string{"source": evil}})
	form := url.Values{"phone": {"+79990000903"}, "name": {evil}, "message": {evil}}
	checkPassedOn(t, c, up, formCT, []byte(form.Encode()), map[string]string{"Cookie": intercept.VisitCookie + "=" + vis, "Referer": "https://x/?" + url.QueryEscape(evil)})
	segs := []string{"amo", "b24", "retail", "sklad", "mp", "sf", "fo", "uon", "rs", "hook"}
	waitFor(t, "every destination type called for both leads", 90*time.Second, func() bool {
		for _, s := range segs {
			if rec.count(s) < 2 {
				return false
			}
		}
		return true
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.bad) > 0 {
		t.Fatalf("lead data reached request headers or paths:\n%s", strings.Join(rec.bad, "\n"))
	}
	if rec.hits["smuggled"] > 0 {
		t.Fatal("a smuggled request arrived")
	}
}

// TestHardeningNoRequestsBeyondConfig (SSRF): URLs in lead data (fields,
// page, landing, referrer, Roistat parameters, a report's page) are stored
// and forwarded as text and never fetched, and a destination's redirect is
// not followed (it is a failed delivery): the only requests leadproxy makes
// go to the configured destinations.
func TestHardeningNoRequestsBeyondConfig(t *testing.T) {
	var canaryHits atomic.Int64
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { canaryHits.Add(1) }))
	defer canary.Close()
	moved := httptest.NewServer(http.RedirectHandler(canary.URL+"/redirected", http.StatusTemporaryRedirect))
	defer moved.Close()
	up := newUpstream(t)
	hook := newHookReceiver(t)
	dests := hookDest(hook.URL) + "\n\t\tdestination moved webhook {\n\t\t\turl " + moved.URL + "\n\t\t\tsecret " + dashSecret + "\n\t\t}"
	c := startHardened(t, hardSite, hardVars(up.URL, "DESTS", dests), hardOpts{})
	site := c.URL("PORT_SITE")
	u := canary.URL + "/fetch-me"
	vis, _ := intercept.EncodeCookieJSON(intercept.VisitInfo{ID: "v1", Landing: u, Referrer: u})
	form := url.Values{"phone": {"+79990001001"}, "url": {u}, "website": {u}, "comment": {"<img src=" + u + ">"}}
	checkPassedOn(t, c, up, formCT, []byte(form.Encode()), map[string]string{"Cookie": intercept.VisitCookie + "=" + vis, "Referer": u})
	rep, _ := json.Marshal(map[string]any{"v": 1, "r": intercept.RuleID("Форма"), "s": "sid-ssrf-00001", "page": u,
		"f": map[string]string{"phone": "+79990001002", "site": u}, "vis": map[string]any{"id": "v2", "l": u, "r": u}})
	if code, _ := hardPost(t, site+"/_leadproxy/collect", "text/plain", rep, map[string]string{"Origin": site}); code != 204 {
		t.Fatalf("collect: %d", code)
	}
	api := url.Values{"key": {"hard-api-key-41d7"}, "phone": {"+79990001003"}, "roistat": {u}, "fields[url]": {u}, "client_fields[site]": {u}}
	if code, _ := hardPost(t, site+"/_leadproxy/api/proxy/1.0/leads/add", formCT, []byte(api.Encode()), nil); code != 200 {
		t.Fatalf("API: %d", code)
	}
	waitFor(t, "the three leads delivered", 60*time.Second, func() bool {
		return hook.count("+79990001001") == 1 && hook.count("+79990001002") == 1 && hook.count("+79990001003") == 1
	})
	waitFor(t, "the redirecting destination tried", 60*time.Second, func() bool {
		l := hardLeadByPhone(t, c, "+79990001001")
		return l != nil && l.Delivery("moved") != nil && l.Delivery("moved").LastError != ""
	})
	for _, p := range []string{"/leadproxy/leads", "/leadproxy/stats", "/leadproxy/forms"} {
		c.AdminJSON(p, nil)
	}
	if n := canaryHits.Load(); n != 0 {
		t.Fatalf("leadproxy fetched a URL from lead data %d times", n)
	}
}

// TestHardeningAdminRejectsCrossSite: the admin API (leads, erase, retry)
// answers only requests for its own host and without a foreign Origin, so
// a web page cannot read or change leads through the visitor's browser
// (CSRF, DNS rebinding). These are Caddy's own admin checks; the test
// guards that leadproxy's routes stay behind them.
func TestHardeningAdminRejectsCrossSite(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990001101"), nil)
	l := hardLeadByPhone(t, c, "+79990001101")
	if l == nil {
		t.Fatal("not captured")
	}
	cases := []struct {
		method, path string
		header       map[string]string
	}{
		{"GET", "/leadproxy/leads", map[string]string{"Origin": "https://evil.example"}},
		{"GET", "/leadproxy/leads/" + l.ID, map[string]string{"Host": "evil.example"}},
		{"DELETE", "/leadproxy/leads/" + l.ID, map[string]string{"Origin": "https://evil.example"}},
		{"POST", "/leadproxy/leads/" + l.ID + "/retry", map[string]string{"Origin": "null", "Content-Type": formCT}},
		{"DELETE", "/leadproxy/leads/" + l.ID, map[string]string{"Host": "rebound.example:2019"}},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, c.Admin+tc.path, nil)
		for k, v := range tc.header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := noCompress.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 && resp.StatusCode != 400 {
			t.Errorf("%s %s with %v: %d, want refused", tc.method, tc.path, tc.header, resp.StatusCode)
		}
	}
	if hardLeadByPhone(t, c, "+79990001101") == nil {
		t.Fatal("a cross-site request erased the lead")
	}
}

// TestHardeningStoreFolderPrivate: the lead store's folder, created by
// Caddy, is readable by its owner alone: other users of the host cannot
// read the leads.
func TestHardeningStoreFolderPrivate(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990001401"), nil)
	fi, err := os.Stat(c.Storage)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("storage folder mode %v: open to other users", perm)
	}
}

// TestHardeningErase: DELETE /leadproxy/leads/{id} erases a lead from the
// API, the list, the search, the stats, and dedup (the same phone makes a
// new lead), and does not touch another lead.
func TestHardeningErase(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990001201&name=Erase+Me"), nil)
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990001202&name=Keep+Me"), nil)
	gone, kept := hardLeadByPhone(t, c, "+79990001201"), hardLeadByPhone(t, c, "+79990001202")
	req, _ := http.NewRequest("DELETE", c.Admin+"/leadproxy/leads/"+gone.ID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if code := c.AdminJSON("/leadproxy/leads/"+gone.ID, nil); code != 404 {
		t.Fatalf("GET after DELETE: %d", code)
	}
	var found leadList
	found = adminSearch(t, c, `{"q": "Erase"}`)
	var stats struct {
		Leads int `json:"leads"`
	}
	c.AdminJSON("/leadproxy/stats", &stats)
	if len(found.Leads) != 0 || stats.Leads != 1 || hardLeadByPhone(t, c, kept.Phone) == nil {
		t.Fatalf("after DELETE: search %d, stats %d leads", len(found.Leads), stats.Leads)
	}
	checkPassedOn(t, c, up, formCT, []byte("phone=%2B79990001201&name=Again"), nil)
	if again := hardLeadByPhone(t, c, "+79990001201"); again == nil || again.DuplicateOf != "" {
		t.Fatalf("the same phone after DELETE: %+v", again)
	}
}

// TestHardeningLeadValuesInJSON (XSS): markup in lead values comes back
// from the admin API and the Roistat API as JSON text (application/json,
// < and > escaped), never as markup a browser would run.
func TestHardeningLeadValuesInJSON(t *testing.T) {
	up := newUpstream(t)
	c := startHardened(t, hardSite, hardVars(up.URL), hardOpts{})
	xss := `</script><script>alert(1)</script><img src=x onerror=alert(2)>`
	form := url.Values{"phone": {"+79990001301"}, "name": {xss}, "message": {xss}}
	checkPassedOn(t, c, up, formCT, []byte(form.Encode()), nil)
	api := url.Values{"key": {"hard-api-key-41d7"}, "phone": {"+79990001302"}, "title": {xss}, "fields[" + xss + "]": {xss}}
	code, answer := hardPost(t, c.URL("PORT_SITE")+"/_leadproxy/api/proxy/1.0/leads/add", formCT, []byte(api.Encode()), nil)
	if code != 200 || strings.Contains(answer, "<") {
		t.Fatalf("API answer %d %s", code, answer)
	}
	for _, path := range []string{"/leadproxy/leads", "/leadproxy/leads/" + hardLeadByPhone(t, c, "+79990001301").ID, "/leadproxy/leads/" + hardLeadByPhone(t, c, "+79990001302").ID} {
		resp, err := http.Get(c.Admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if bytes.ContainsAny(b, "<>") {
			t.Errorf("%s: raw markup in the answer", path)
		}
		if !bytes.Contains(b, []byte(`\u003c/script\u003e`)) {
			t.Errorf("%s: the value is not in the answer", path)
		}
	}
}
