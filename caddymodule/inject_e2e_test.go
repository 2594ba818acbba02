package caddymodule

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/websocket"

	"github.com/leadproxy/leadproxy/internal/testpages"
)

// Injection through the real binary: what the README promises about the
// responses that must pass untouched (WebSocket, SSE), compressed
// upstreams behind `encode`, CSP nonces, a very large page, and the form
// audit on the admin API.

const injTag = `<script src="/_leadproxy/c.js" defer></script>`

// injSite is a typical site: encode, leadproxy with two form rules, and
// reverse_proxy. RAW is the same without the transport's transparent
// gzip, so an upstream that encodes anyway reaches leadproxy encoded.
const injSite = `{
	admin {{ADMIN}}
	leadproxy {
		storage {{STORAGE}}
	}
}
http://127.0.0.1:{{PORT_SITE}} {
	encode gzip zstd
	leadproxy {
		form "A" {
			submit "#f"
		}
		form "B" {
			click ".nope"
		}
	}
	reverse_proxy {{UPSTREAM}}
}
http://127.0.0.1:{{PORT_RAW}} {
	encode gzip zstd
	leadproxy
	reverse_proxy {{UPSTREAM}} {
		transport http {
			compression off
		}
	}
}
`

func startInjSite(t *testing.T, upstream string) *caddyProc {
	t.Helper()
	return startCaddy(t, injSite, map[string]string{"UPSTREAM": upstream})
}

// navigation is a GET as a browser sends it when following a link.
func navigation(t *testing.T, url, acceptEncoding string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	req.Header.Set("Sec-Fetch-Dest", "document")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	return req
}

// untag checks the page carries the tag exactly once and returns it
// without the tag.
func untag(t *testing.T, page []byte, tag string) []byte {
	t.Helper()
	if n := bytes.Count(page, []byte(tag)); n != 1 {
		head := page[:min(len(page), 400)]
		t.Fatalf("tag %q found %d times; page starts %q", tag, n, head)
	}
	return bytes.Replace(page, []byte(tag), nil, 1)
}

// decodeBody undoes a Content-Encoding, failing on a corrupt stream.
func decodeBody(t *testing.T, coding string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch coding {
	case "", "identity":
		return body
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip header: %v", err)
		}
		zr.Multistream(false)
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unexpected Content-Encoding %q", coding)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s body: %v", coding, err)
	}
	return out
}

func encodeBody(t *testing.T, coding string, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "br":
		w = brotli.NewWriter(&b)
	case "zstd":
		zw, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	default:
		t.Fatalf("coding %q", coding)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestInjectE2EWebSocket: a WebSocket echo upstream behind leadproxy and
// reverse_proxy works; the upgrade is neither injected nor buffered, and
// the hijacked connection carries frames both ways.
func TestInjectE2EWebSocket(t *testing.T) {
	// Echo whole messages, keeping their type (text or binary).
	type frame struct {
		typ  byte
		data []byte
	}
	echo := websocket.Codec{
		Marshal: func(v any) ([]byte, byte, error) { f := v.(frame); return f.data, f.typ, nil },
		Unmarshal: func(data []byte, typ byte, v any) error {
			*v.(*frame) = frame{typ, append([]byte(nil), data...)}
			return nil
		},
	}
	up := httptest.NewServer(websocket.Handler(func(ws *websocket.Conn) {
		for {
			var f frame
			if err := echo.Receive(ws, &f); err != nil {
				return
			}
			if err := echo.Send(ws, f); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	c := startInjSite(t, up.URL)

	base := strings.Replace(c.URL("PORT_SITE"), "http://", "ws://", 1)
	ws, err := websocket.Dial(base+"/echo", "", c.URL("PORT_SITE"))
	if err != nil {
		t.Fatalf("dial through caddy: %v", err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(30 * time.Second))

	msgs := []string{"hello", "<html><head></head><body>not a page</body></html>", strings.Repeat("ж", 300_000)}
	for _, m := range msgs {
		if err := websocket.Message.Send(ws, m); err != nil {
			t.Fatalf("send: %v", err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatalf("receive: %v", err)
		}
		if got != m {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(m), len(got))
		}
	}
	// Binary frames too.
	bin := bytes.Repeat([]byte{0, 0xff, '<', 'h'}, 1000)
	if err := websocket.Message.Send(ws, bin); err != nil {
		t.Fatal(err)
	}
	var gotBin []byte
	if err := websocket.Message.Receive(ws, &gotBin); err != nil || !bytes.Equal(gotBin, bin) {
		t.Fatalf("binary echo: %v, %d bytes", err, len(gotBin))
	}
}

// TestInjectE2ESSE: an event stream passes unbuffered. The upstream sends
// one event, flushes, and waits until the test has received it before it
// sends the second and ends; so the first event must reach the client
// while the upstream is still running. No clock is involved except a
// safety timeout that turns a hang into a failure.
func TestInjectE2ESSE(t *testing.T) {
	type run struct {
		release  chan struct{}
		finished atomic.Bool
	}
	var mu sync.Mutex
	runs := map[string]*run{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		rn := runs[r.URL.Query().Get("id")]
		mu.Unlock()
		if rn == nil {
			http.NotFound(w, r)
			return
		}
		defer rn.finished.Store(true)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(200)
		io.WriteString(w, "event: greet\ndata: <html><head>first</head></html>\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-rn.release:
			io.WriteString(w, "data: second\n\n")
		case <-time.After(60 * time.Second):
			io.WriteString(w, "data: upstream gave up waiting\n\n")
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	c := startInjSite(t, up.URL)

	for i, accept := range []string{"text/event-stream", "text/html,*/*;q=0.8"} {
		t.Run(accept, func(t *testing.T) {
			rn := &run{release: make(chan struct{})}
			id := fmt.Sprint(i)
			mu.Lock()
			runs[id] = rn
			mu.Unlock()
			defer func() {
				select {
				case <-rn.release:
				default:
					close(rn.release)
				}
			}()
			req, _ := http.NewRequest("GET", c.URL("PORT_SITE")+"/events?id="+id, nil)
			req.Header.Set("Accept", accept)
			req.Header.Set("Accept-Encoding", "gzip, zstd") // encode must not hold it either
			resp, err := noCompress.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var br *bufio.Reader
			switch ce := resp.Header.Get("Content-Encoding"); ce {
			case "":
				br = bufio.NewReader(resp.Body)
			case "gzip":
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				br = bufio.NewReader(zr)
			case "zstd":
				zr, err := zstd.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				br = bufio.NewReader(zr)
			default:
				t.Fatalf("Content-Encoding %q", ce)
			}
			readEvent := func() string {
				var ev strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading event: %v (so far %q)", err, ev.String())
					}
					if line == "\n" {
						return ev.String()
					}
					ev.WriteString(line)
				}
			}
			first := readEvent()
			if rn.finished.Load() {
				t.Fatalf("the first event arrived only after the upstream finished")
			}
			if first != "event: greet\ndata: <html><head>first</head></html>\n" {
				t.Fatalf("first event changed: %q", first)
			}
			close(rn.release)
			if second := readEvent(); second != "data: second\n" {
				t.Fatalf("second event: %q", second)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the events: %q, %v", rest, err)
			}
		})
	}
}

// injPage is an HTML page of about n bytes with a head, a form and text
// that compresses well but not trivially.
func injPage(n int) []byte { return testpages.Rows(n) }

// TestInjectE2ECompressedUpstream: the site has `encode gzip zstd`; the
// upstream gzip-, br- or zstd-encodes its HTML whatever the request says
// (Accept-Encoding reaches it as the visitor sent it).
// Whatever the client accepts, it gets a page that decodes, carries the
// tag once, and without the tag is the upstream's page byte for byte.
func TestInjectE2ECompressedUpstream(t *testing.T) {
	page := injPage(48 << 10)
	encoded := map[string][]byte{}
	for _, c := range []string{"gzip", "br", "zstd"} {
		encoded[c] = encodeBody(t, c, page)
	}
	var mu sync.Mutex
	var seenAE []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAE = append(seenAE, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		coding := strings.TrimPrefix(r.URL.Path, "/")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Encoding", coding)
		w.Header().Set("Content-Length", fmt.Sprint(len(encoded[coding])))
		w.Write(encoded[coding])
	}))
	defer up.Close()
	c := startInjSite(t, up.URL)

	for _, site := range []string{"PORT_SITE", "PORT_RAW"} {
		for _, upCoding := range []string{"gzip", "br", "zstd"} {
			if site == "PORT_SITE" && upCoding != "gzip" {
				continue // the default transport asks for gzip only; one case is enough
			}
			for _, ae := range []string{"", "gzip", "zstd", "gzip, deflate, br, zstd"} {
				name := fmt.Sprintf("%s/upstream=%s/accept=%q", site, upCoding, ae)
				t.Run(name, func(t *testing.T) {
					mu.Lock()
					seenAE = nil
					mu.Unlock()
					resp, err := noCompress.Do(navigation(t, c.URL(site)+"/"+upCoding, ae))
					if err != nil {
						t.Fatal(err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("status %d, %v", resp.StatusCode, err)
					}
					ce := resp.Header.Get("Content-Encoding")
					switch {
					case site == "PORT_RAW":
						// The upstream's coding is kept: decoded, injected, re-encoded;
						// a zstd page may go out as br, smaller, to a client that
						// accepts br (intercept/reencode.go).
						if ce != upCoding && !(upCoding == "zstd" && ce == "br" && strings.Contains(ae, "br")) {
							t.Fatalf("Content-Encoding %q, want the upstream's %q", ce, upCoding)
						}
						mu.Lock()
						got := append([]string(nil), seenAE...)
						mu.Unlock()
						if len(got) != 1 || got[0] != ae {
							t.Fatalf("the upstream got Accept-Encoding %q, the visitor sent %q", got, ae)
						}
					case ae == "":
						if ce != "" {
							t.Fatalf("client accepts no coding, got %q", ce)
						}
					case ae == "zstd":
						// This upstream answers gzip to a visitor who asked for zstd
						// only; the visitor gets it as without leadproxy (encode
						// passes an encoded response on).
						if ce != "gzip" {
							t.Fatalf("Content-Encoding %q, want the upstream's gzip", ce)
						}
					default:
						if ce != "gzip" && ce != "zstd" {
							t.Fatalf("Content-Encoding %q", ce)
						}
					}
					if ce != "" && resp.Header.Get("Content-Length") != "" && resp.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
						t.Fatalf("Content-Length %s for %d bytes", resp.Header.Get("Content-Length"), len(body))
					}
					plain := decodeBody(t, ce, body)
					if !bytes.Equal(untag(t, plain, injTag), page) {
						t.Fatalf("page without the tag differs from the upstream's (%d vs %d bytes)", len(plain)-len(injTag), len(page))
					}
					if i := bytes.Index(plain, []byte(injTag)); !bytes.HasSuffix(plain[:i], []byte("<head>")) {
						t.Fatalf("tag not right after <head>: %q", plain[max(0, i-40):i])
					}
					if et := resp.Header.Get("ETag"); et == `"v1"` {
						t.Fatalf("strong ETag kept on a changed body")
					}
				})
			}
		}
	}
}

// TestInjectE2ECSPNonce: the nonce of the response's CSP header is put on
// the tag, through the binary.
func TestInjectE2ECSPNonce(t *testing.T) {
	page := []byte(`<!DOCTYPE html><html><head><meta charset="utf-8"><script nonce="r4nd0mN0nce+/=">var a=1</script><title>x</title></head><body><p>hi</p></body></html>`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'nonce-r4nd0mN0nce+/=' 'strict-dynamic'; object-src 'none'")
		w.Write(page)
	}))
	defer up.Close()
	c := startInjSite(t, up.URL)

	resp, err := noCompress.Do(navigation(t, c.URL("PORT_SITE")+"/", ""))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `<script src="/_leadproxy/c.js" defer nonce="r4nd0mN0nce+/="></script>`
	if !bytes.Equal(untag(t, body, want), page) {
		t.Fatalf("page without the tag differs: %q", body)
	}
	if !bytes.HasPrefix(body, []byte(`<!DOCTYPE html><html><head>`+want)) {
		t.Fatalf("tag not after <head>: %q", body[:min(len(body), 200)])
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatal("CSP header dropped")
	}
	if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(body)) {
		t.Fatalf("Content-Length %q for %d bytes", cl, len(body))
	}
}

// TestInjectE2ELargePage: a 20 MB page streams through. The upstream
// sends 1 MiB, then waits until the client has read 512 KiB of it (so
// nothing holds the page whole) before sending the rest; the client gets
// the tag after <head>, a Content-Length that counts it, and the
// remainder byte for byte.
func TestInjectE2ELargePage(t *testing.T) {
	const size = 20 << 20
	page := injPage(size)
	sum := sha256.Sum256(page)
	release := make(chan struct{})
	var finished atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer finished.Store(true)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Write(page[:1<<20])
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-time.After(60 * time.Second): // a safety net, not a measurement
		case <-r.Context().Done():
			return
		}
		for off := 1 << 20; off < len(page); off += 64 << 10 {
			if _, err := w.Write(page[off:min(off+64<<10, len(page))]); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	c := startInjSite(t, up.URL)

	resp, err := noCompress.Do(navigation(t, c.URL("PORT_SITE")+"/big", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(page)+len(injTag)) {
		t.Fatalf("Content-Length %q, want %d", cl, len(page)+len(injTag))
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Fatal("Last-Modified dropped")
	}
	first := make([]byte, 512<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("reading the first 512 KiB: %v", err)
	}
	if finished.Load() {
		t.Fatal("the page's start arrived only after the upstream finished")
	}
	close(release)
	h := sha256.New()
	i := bytes.Index(first, []byte(injTag))
	if i < 0 || !bytes.HasSuffix(first[:i], []byte("<head>")) {
		t.Fatalf("no tag after <head> in the first bytes: %q", first[:200])
	}
	h.Write(first[:i])
	h.Write(first[i+len(injTag):])
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("reading the rest after %d bytes: %v", n, err)
	}
	if total := int64(len(first)) + n; total != int64(len(page)+len(injTag)) {
		t.Fatalf("got %d bytes, want %d", total, len(page)+len(injTag))
	}
	if !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatal("page without the tag differs from the upstream's")
	}
}

// formAudit is GET /leadproxy/forms.
type formAudit struct {
	Forms []struct {
		Form      string    `json:"form"`
		Role      string    `json:"role"`
		Selector  string    `json:"selector"`
		LastMatch time.Time `json:"last_match"`
		LastPath  string    `json:"last_match_path"`
		LastCount int       `json:"last_match_count"`
		Pages     int       `json:"pages_checked"`
		Flagged   bool      `json:"flagged"`
	} `json:"forms"`
}

// TestInjectE2EFormAudit: pages served through the site are sampled and
// checked against the rules' selectors; the admin API shows that form A's
// submit selector matched (where, how many elements) and form B's click
// selector did not. Flagging after flag_after of traffic is
// TestAuditFlagsStaleSelector.
func TestInjectE2EFormAudit(t *testing.T) {
	page := injPage(8 << 10) // one <form id="f">, nothing with class "nope"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	}))
	defer up.Close()
	c := startInjSite(t, up.URL)

	// Each path is sampled at most once a minute: use distinct ones.
	paths := []string{"/one", "/two", "/three"}
	for _, p := range paths {
		resp, err := noCompress.Do(navigation(t, c.URL("PORT_SITE")+p, "gzip"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var audit formAudit
	waitFor(t, "three pages audited", 20*time.Second, func() bool {
		audit = formAudit{}
		c.AdminJSON("/leadproxy/forms", &audit)
		for _, f := range audit.Forms {
			if f.Pages < len(paths) {
				return false
			}
		}
		return len(audit.Forms) == 2
	})
	host := strings.TrimPrefix(c.URL("PORT_SITE"), "http://")
	for _, f := range audit.Forms {
		switch f.Form {
		case "A":
			if f.Role != "submit" || f.Selector != "#f" || f.LastMatch.IsZero() || f.LastCount != 1 ||
				f.LastPath != host+paths[len(paths)-1] || f.Flagged {
				t.Errorf("form A: %+v", f)
			}
		case "B":
			if f.Role != "click" || f.Selector != ".nope" || !f.LastMatch.IsZero() || f.LastCount != 0 || f.LastPath != "" || f.Flagged {
				t.Errorf("form B: %+v", f)
			}
		default:
			t.Errorf("unexpected entry %+v", f)
		}
	}
}
