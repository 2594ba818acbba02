package intercept

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/internal/testpages"
)

// landingPage is bench/run.sh's genpage: a small head, a form and rows of
// Cyrillic text, very repetitive (the 60 KB rows of the bench).
func landingPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html>\n<html lang=\"ru\">\n<head>\n<meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n" +
		"<title>Окна ПВХ от производителя</title>\n<link rel=\"stylesheet\" href=\"/css/site.css\">\n" +
		"<script src=\"/js/app.js\" defer></script>\n</head>\n<body>\n" +
		"<header><nav><a href=\"/\">Главная</a> <a href=\"/catalog\">Каталог</a></nav></header>\n" +
		"<form id=\"contact-form\" action=\"/contact\" method=\"post\"><input name=\"name\">" +
		"<input name=\"phone\" type=\"tel\"><button>Отправить</button></form>\n")
	for i := 0; b.Len() < size-16; i++ {
		fmt.Fprintf(&b, "<p class=\"item-%d\">Позиция %d: окна ПВХ, замер бесплатно, монтаж за один день. <a href=\"/p/%d\">Подробнее</a></p>\n", i%9, i, i)
	}
	b.WriteString("</body></html>\n")
	return b.Bytes()
}

// wpPage is bench/wppage.awk's WordPress-shaped page (117 KB, a 71 KB
// head); with nonce, every script carries nonce="NONCE_VALUE".
func wpPage(t testing.TB, nonce bool) []byte {
	t.Helper()
	v := "0"
	if nonce {
		v = "1"
	}
	cmd := exec.Command("awk", "-v", "nonce="+v, "-f", filepath.Join("..", "bench", "wppage.awk"))
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil || len(out) < 100<<10 {
		t.Fatalf("bench/wppage.awk: %v (%d bytes)", err, len(out))
	}
	return out
}

// TestReencodeNeverLarger: "a page the upstream compressed is not sent out
// worse compressed than it came", on every request, the first included. A
// br or zstd page made by the brotli (1-11) and zstd (1-19) commands, on
// the bench's repetitive landing page, the WordPress-shaped one and
// caddymodule's rows page,
// served as a static file is (a Content-Length, no Flush), to a browser
// (Accept-Encoding: gzip, deflate, br, zstd) and to a client accepting
// only the page's coding: each response is either the page with the tag,
// in a coding the client accepts and no more than the upstream's bytes
// plus the tag, or, where no encoding on the request path gets there, the
// upstream's bytes as they came (result "heavier"), with the tag from a
// later request on once the background encoder has one that fits. Without
// a cache every request is a first one.
func TestReencodeNeverLarger(t *testing.T) {
	tag := []byte(testTag)
	pages := map[string][]byte{"landing60k": landingPage(61440), "wp": wpPage(t, false), "rows60k": testpages.Rows(60 << 10)}
	var table []string
	untagged := 0
	for _, pname := range []string{"landing60k", "wp", "rows60k"} {
		page := pages[pname]
		plain, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
		want := plain.body.Bytes()
		for _, coding := range []string{"br", "zstd"} {
			top := 11
			if coding == "zstd" {
				top = 19
			}
			for level := 1; level <= top; level++ {
				body := testpages.Compress(t, coding, level, page)
				for _, ae := range []string{"gzip, deflate, br, zstd", coding} {
					name := fmt.Sprintf("%s/%s-%d/accept=%s", pname, coding, level, ae)
					cache := NewEncodedCache()
					serve := func(cfg InjectConfig, n string) string {
						t.Helper()
						req := getPage()
						req.Header.Set("Accept-Encoding", ae)
						resp := response{status: 200, chunk: 16 << 10, body: body, header: map[string]string{
							"Content-Type": "text/html; charset=utf-8", "Content-Encoding": coding,
							"Content-Length": strconv.Itoa(len(body)), "Vary": "Accept-Encoding"}}
						tap, result, err := run(t, req, cfg, resp)
						if err != nil {
							t.Fatalf("%s %s: %v", name, n, err)
						}
						out := tap.body.Bytes()
						sent := tap.sent.Get("Content-Encoding")
						switch result {
						case InjectResultInjected:
							if !acceptsCoding(req.Header.Values("Accept-Encoding"), sent) {
								t.Fatalf("%s %s: sent %q to a client accepting %q", name, n, sent, ae)
							}
							if got := decodeAny(t, sent, out); !bytes.Equal(got, want) {
								t.Fatalf("%s %s: decoded output is not the page with the tag", name, n)
							}
							if len(out) > len(body)+len(tag) {
								t.Errorf("%s %s: %d bytes (%s) from the upstream's %d (+%d, allowed %d)", name, n, len(out), sent, len(body), len(out)-len(body), len(tag))
							}
							if cl := tap.sent.Get("Content-Length"); cl != strconv.Itoa(len(out)) {
								t.Errorf("%s %s: Content-Length %q for %d bytes", name, n, cl, len(out))
							}
						case InjectResultHeavier:
							untagged++
							if !bytes.Equal(out, body) || sent != coding || tap.sent.Get("Content-Length") != strconv.Itoa(len(body)) {
								t.Fatalf("%s %s: not injected, and not the upstream's response as it came", name, n)
							}
						default:
							t.Fatalf("%s %s: result %q", name, n, result)
						}
						table = append(table, fmt.Sprintf("%-45s %-6s %6d %6d %-4s %s", name, n, len(body), len(out), sent, result))
						return result
					}
					serve(InjectConfig{}, "first")
					for i := 1; i <= 3; i++ {
						r := serve(InjectConfig{Encoded: cache}, fmt.Sprintf("cache%d", i))
						cache.wait()
						// A browser gets the tag once the background encoder had a
						// go: brotli beats zstd at any level on these pages.
						if i == 3 && r != InjectResultInjected && strings.Contains(ae, ",") {
							t.Errorf("%s: third request still %q", name, r)
						}
					}
				}
			}
		}
	}
	t.Logf("%d responses without the tag; page/upstream/accept, request, upstream bytes, sent bytes, coding, result:\n%s", untagged, strings.Join(table, "\n"))
}

func TestAcceptsCoding(t *testing.T) {
	for _, c := range []struct {
		ae     string
		coding string
		want   bool
	}{
		{"gzip, deflate, br, zstd", "br", true},
		{"gzip, deflate, br, zstd", "zstd", true},
		{"gzip", "br", false},
		{"", "br", false},
		{"br;q=0", "br", false},
		{"br;q=0.0, zstd", "br", false},
		{"BR;Q=0.5", "br", true},
		{"*", "br", true},
		{"*;q=0", "br", false},
		{"*, br;q=0", "br", false},
		{"gzip,br", "br", true},
		{"brotli", "br", false},
		{" br ; q=1 ", "br", true},
	} {
		h := http.Header{}
		if c.ae != "" {
			h.Set("Accept-Encoding", c.ae)
		}
		if got := acceptsCoding(h.Values("Accept-Encoding"), c.coding); got != c.want {
			t.Errorf("%q %s: %v", c.ae, c.coding, got)
		}
	}
}

// TestReencodeHeldBadEncoding: a br or zstd page that stops decoding after
// the verdict, while it is still held, goes out as it came (nothing of ours
// went out yet); one that streamed is left unterminated.
func TestReencodeHeldBadEncoding(t *testing.T) {
	page := randomPage(2, 3000)
	for _, coding := range []string{"br", "zstd"} {
		good := encode(t, coding, page)
		if len(good) > wholeMax {
			t.Fatalf("%s: %d bytes, more than is held", coding, len(good))
		}
		corrupt := bytes.Clone(good)
		for i := len(good) * 3 / 4; i < len(good)-8; i += 97 {
			corrupt[i] ^= 0x5a
		}
		for name, body := range map[string][]byte{"truncated": good[:len(good)*3/4], "corrupt tail": corrupt} {
			resp := response{status: 200, chunk: 1000, body: body, header: map[string]string{
				"Content-Type": "text/html", "Content-Encoding": coding, "Content-Length": strconv.Itoa(len(body))}}
			tap, result, err := run(t, getPage(), InjectConfig{}, resp)
			if err != nil || result != InjectResultError || !bytes.Equal(tap.body.Bytes(), body) ||
				tap.sent.Get("Content-Length") != strconv.Itoa(len(body)) || tap.sent.Get("Content-Encoding") != coding {
				t.Fatalf("%s %s: result %q, %v; not the upstream's response as it came", coding, name, result, err)
			}
		}
	}
}

// TestReencodeStreamedStepsUp: a held page whose end does not follow a
// Flush streams unchecked once FlushHold passes (the test waits for that
// flush); when it came out larger than the upstream's bytes plus the tag,
// the path's next page starts one step up its ladder.
func TestReencodeStreamedStepsUp(t *testing.T) {
	page := landingPage(61440)
	body := testpages.Compress(t, "br", 10, page) // beyond every step of the ladder
	cache := NewEncodedCache()
	for i := 0; i < 2; i++ {
		tap := flushTap{newTap(), make(chan struct{}, 4)}
		req := getPage()
		req.Header.Set("Accept-Encoding", "br")
		w, finish := Wrap(tap, req, &InjectConfig{ScriptSrc: testSrc, Encoded: cache, FlushHold: time.Millisecond})
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "br")
		w.Write(body[:len(body)/2])
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Fatal(err)
		}
		<-tap.flushed
		w.Write(body[len(body)/2:])
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		got, err := decode("br", tap.body.Bytes())
		if err != nil || tagInserted(page, got, []byte(testTag)) < 0 {
			t.Fatalf("streamed page: not the page with the tag (%v)", err)
		}
		if tap.sent.Get("Content-Length") != "" {
			t.Fatal("a streamed page with a Content-Length")
		}
	}
	if s := cache.stepFor("/", "br"); s != len(reLadders["br"])-1 {
		t.Fatalf("step %d after pages larger than they came", s)
	}
}

// BenchmarkInjectWP: the bench's WordPress-shaped page (a 71 KB head, so
// three 32 KB writes are held), with the VerdictCache as leadproxy runs.
func BenchmarkInjectWP(b *testing.B) {
	page := wpPage(b, false)
	b.Run("plain", func(b *testing.B) { benchServe(b, page, "text/html; charset=utf-8", false, nil) })
	b.Run("inject-cached", func(b *testing.B) {
		benchServe(b, page, "text/html; charset=utf-8", true, NewVerdictCache())
	})
}

// BenchmarkInjectWPNonce: the same page with a CSP nonce on its scripts
// that changes on every response (the verdict comes from the cache when
// only the nonces changed: opaque.go).
func BenchmarkInjectWPNonce(b *testing.B) {
	benchPerResponse(b, wpPage(b, true), true)
}

// TestReencodeTimerStopped: a Flush arms the hold's timer; whatever ends
// the response (its end, or a decode error while held), the timer is
// stopped, so nothing is written for the page after finish.
func TestReencodeTimerStopped(t *testing.T) {
	page := landingPage(61440)
	for _, coding := range []string{"br", "zstd"} {
		for _, corrupt := range []bool{false, true} {
			// The upstream flushes after its head, so that part decodes alone.
			var up bytes.Buffer
			enc := newBodyEncoder(coding, &up)
			enc.Write(page[:4096])
			enc.Flush()
			first := up.Len()
			enc.Write(page[4096:])
			enc.Close()
			body := up.Bytes()
			if corrupt {
				body = body[:first+(len(body)-first)/2]
			}
			tap := newTap()
			w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc, FlushHold: time.Hour})
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", coding)
			w.Write(body[:first])
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Fatal(err)
			}
			re := w.(*injector).re
			if re == nil || re.timer == nil {
				t.Fatalf("%s: no hold timer after a Flush", coding)
			}
			w.Write(body[first:])
			err := finish()
			if re.timer.Stop() {
				t.Fatalf("%s corrupt=%v: the timer was still running after finish", coding, corrupt)
			}
			if corrupt && (err != nil || !bytes.Equal(tap.body.Bytes(), body)) {
				t.Fatalf("%s: a held page that stopped decoding did not go out as it came (%v)", coding, err)
			}
			if !corrupt && err != nil {
				t.Fatal(err)
			}
		}
	}
}

// BenchmarkInjectCSRF: bench/run.sh's csrf shape, a 51 KB page whose small
// head carries a per-response CSRF <meta> (the VerdictCache misses every
// time), against the same bytes passed through.
func BenchmarkInjectCSRF(b *testing.B) {
	benchPerResponse(b, csrfPage(b, "NONCE_VALUE"), false)
}

// benchPerResponse serves page with its NONCE_VALUE replaced by one of 8
// values in turn (so the VerdictCache never hits), in 32 KB writes as
// Caddy's proxy writes it: passed through ("plain") and through the
// injector ("inject-cached"). With csp the response carries a CSP naming
// the page's nonce.
func benchPerResponse(b *testing.B, page []byte, csp bool) {
	const n = 8
	value := func(i int) string { return fmt.Sprintf("%032x", i%n*7919+1) }
	var bodies [][]byte
	for i := range n {
		bodies = append(bodies, bytes.ReplaceAll(page, []byte("NONCE_VALUE"), []byte(value(i))))
	}
	for _, inject := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "inject-cached"}[inject], func(b *testing.B) {
			req := getPage()
			cfg := &InjectConfig{ScriptSrc: testSrc, Verdicts: NewVerdictCache()}
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h := http.Header{"Content-Type": {"text/html; charset=utf-8"}}
				if csp {
					h.Set("Content-Security-Policy", "script-src 'nonce-"+value(i)+"' 'strict-dynamic'")
				}
				body := bodies[i%n]
				i++
				d := &discardWriter{h: h}
				var w http.ResponseWriter = d
				finish := func() error { return nil }
				if inject {
					w, finish = Wrap(d, req, cfg)
				}
				w.WriteHeader(200)
				for rest := body; len(rest) > 0; rest = rest[min(len(rest), 32<<10):] {
					w.Write(rest[:min(len(rest), 32<<10)])
				}
				if err := finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
