package intercept

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"

	nethtml "golang.org/x/net/html"
)

// spansOf scans page in one write with the spans noted, as the injector
// does with a VerdictCache, and returns how many bytes the verdict read
// and the spans; ok is false when the cache would not keep it.
func spansOf(page []byte, nonce string) (n int, spans []opaqueSpan, ok bool) {
	var buf []opaqueSpan
	s := newPageScan("/_leadproxy/c.js", nonce, false)
	s.spans = &buf
	if s.scan(page, 0, false) == verdictPending || s.complete {
		return 0, nil, false
	}
	return min(len(page), s.read), buf, true
}

// tokenBounds is the x/net tokenizer's tokens of page: type, tag name and
// where each ends.
func tokenBounds(page []byte) []string {
	z := nethtml.NewTokenizer(bytes.NewReader(page))
	var out []string
	off := 0
	for {
		tt := z.Next()
		if tt == nethtml.ErrorToken {
			return out
		}
		off += len(z.Raw())
		name, _ := z.TagName()
		out = append(out, fmt.Sprintf("%v %s %d", tt, name, off))
	}
}

// opaqueMutation changes a few runs of page's first n bytes, most of them
// inside spans, to bytes the spans allow or to bytes that matter there.
func opaqueMutation(r *rand.Rand, page []byte, n int, spans []opaqueSpan) []byte {
	const safe = "abcxyzXYZ0189+/=_.:"
	words := []string{"<", ">", "/", "-", "!", `"`, "'", " ", "\n", "&", "script", "</script", "</style", "<!--", "-->", "<s", "/s", "--!>"}
	out := bytes.Clone(page)
	for range 1 + r.Intn(3) {
		var at int
		if len(spans) > 0 && r.Intn(8) != 0 {
			sp := spans[r.Intn(len(spans))]
			at = int(sp.start) + r.Intn(int(sp.end-sp.start))
		} else {
			at = r.Intn(n)
		}
		var w string
		if r.Intn(3) == 0 {
			w = words[r.Intn(len(words))]
		} else {
			for range 1 + r.Intn(32) {
				w += string(safe[r.Intn(len(safe))])
			}
		}
		copy(out[at:n], w)
	}
	return out
}

// checkOpaque fails when sameScan takes page b for a, whose scan read n
// bytes and noted spans, and the two do not tokenize alike or scan alike.
// It reports whether sameScan took it (compared in one piece and cut).
func checkOpaque(t testing.TB, a, b []byte, n int, spans []opaqueSpan, cut int) bool {
	t.Helper()
	same := sameScan(b[:n], 0, a, spans)
	if cut > 0 && cut < n {
		split := sameScan(b[:cut], 0, a, spans) && sameScan(b[cut:n], cut, a, spans)
		if split && !same {
			t.Fatalf("in two pieces at %d, the page differed only where it may; in one it did not", cut)
		}
		same = split
	}
	if !same {
		return false
	}
	if ta, tb := tokenBounds(a), tokenBounds(b); strings.Join(ta, "\n") != strings.Join(tb, "\n") {
		t.Fatalf("taken as the same scan, but tokenized otherwise:\nwas %.300q\nnow %.300q", a[:n], b[:n])
	}
	for _, cfg := range scanConfigs {
		want := feed(ptr(newRefScan("/_leadproxy/c.js", cfg.nonce, cfg.charset)), a, 0)
		got := feed(ptr(newRefScan("/_leadproxy/c.js", cfg.nonce, cfg.charset)), b, 0)
		if got != want {
			t.Fatalf("taken as the same scan, but the reference scan gives %+v, not %+v\nwas %.300q\nnow %.300q", got, want, a[:n], b[:n])
		}
	}
	return true
}

func opaqueCorpus(t testing.TB) [][]byte {
	r := rand.New(rand.NewSource(11))
	pages := cacheCorpus(t, r, 300)
	return append(pages, wpPage(t, true), csrfPage(t, "NONCE_VALUE"))
}

// TestOpaqueSpans: pages changed where the spans allow, and where they do
// not, anywhere in the bytes the verdict read: whatever sameScan takes for
// the remembered page tokenizes into the same tokens (x/net's tokenizer)
// and gets the same verdict, insertion point and nonce from the reference
// scan. Changes of nonces and tokens to bytes like theirs are taken.
func TestOpaqueSpans(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	var tried, taken, safeTried, safeTaken int
	for _, page := range opaqueCorpus(t) {
		n, spans, ok := spansOf(page, "")
		if !ok {
			continue
		}
		for range 150 {
			b := opaqueMutation(r, page, n, spans)
			tried++
			if checkOpaque(t, page, b, n, spans, r.Intn(n+1)) {
				taken++
			}
		}
		// A value of an attribute the scan does not read, changed to
		// letters: always taken.
		for _, sp := range spans {
			if sp.quote == 0 || sp.end-sp.start < 4 {
				continue
			}
			b := bytes.Clone(page)
			copy(b[sp.start:sp.end], strings.Repeat("Zq9", int(sp.end-sp.start)))
			safeTried++
			if checkOpaque(t, page, b, n, spans, 0) {
				safeTaken++
			}
		}
	}
	t.Logf("%d changed pages: %d taken; %d attribute values changed to letters: %d taken", tried, taken, safeTried, safeTaken)
	if taken == 0 || taken == tried {
		t.Errorf("%d of %d changed pages taken: the mutations test nothing", taken, tried)
	}
	if safeTaken != safeTried || safeTried < 100 {
		t.Errorf("only %d of %d values changed to letters were taken", safeTaken, safeTried)
	}
}

// FuzzOpaqueSpans: any change of a page's first bytes that sameScan takes
// tokenizes and scans as the page did.
func FuzzOpaqueSpans(f *testing.F) {
	f.Add([]byte(`<html><head><script nonce="abc">x</script><meta name="t" content="q"></head><body>`), uint16(30), []byte("zz"), uint16(0))
	f.Add([]byte(`<html><head><style>a{b:c}</style><script>var n="1a2b";</script></head><body>`), uint16(50), []byte("</script"), uint16(9))
	f.Add([]byte(`<head><script><!-- x <script>y</script> z --></script><body>`), uint16(22), []byte("s"), uint16(3))
	f.Fuzz(func(t *testing.T, page []byte, at uint16, w []byte, cut uint16) {
		n, spans, ok := spansOf(page, "")
		if !ok || n == 0 {
			return
		}
		b := bytes.Clone(page)
		copy(b[int(at)%n:n], w)
		checkOpaque(t, page, b, n, spans, int(cut)%(n+1))
	})
}

// TestVerdictCacheNonceHits: the bench's WordPress head with a new CSP
// nonce on every script per response, and a small head with a new CSRF
// token per response: after the first, every response's verdict comes from
// the cache, and every response comes out as without the cache.
func TestVerdictCacheNonceHits(t *testing.T) {
	for _, tc := range []struct {
		name string
		page func(i int) []byte
		csp  func(i int) string
	}{
		{"wordpress-nonce", func(i int) []byte {
			return bytes.ReplaceAll(wpPage(t, true), []byte("NONCE_VALUE"), []byte(fmt.Sprintf("%024x", i*7919)))
		}, func(i int) string { return fmt.Sprintf("script-src 'nonce-%024x'", i*7919) }},
		{"csrf", func(i int) []byte { return csrfPage(t, fmt.Sprintf("%032x", i*104729+3)) }, func(int) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, fromCache := cachedConfig()
			const n = 20
			for i := range n {
				sameWithCache(t, cfg, "/", cacheCase{page: tc.page(i), charset: true, csp: tc.csp(i), chunk: 32 << 10})
			}
			if got := fromCache.Load(); got != n-1 {
				t.Fatalf("%d of %d responses after the first had their verdict from the cache", got, n-1)
			}
		})
	}
}

// csrfPage is bench/run.sh's csrf shape: testdata's landing page with a
// CSRF <meta> in its small head, to 50 KB.
func csrfPage(t testing.TB, token string) []byte {
	t.Helper()
	page, err := os.ReadFile("testdata/inject/landing.html")
	if err != nil {
		t.Fatal(err)
	}
	page = bytes.Replace(page, []byte(`<meta charset="utf-8">`), []byte(`<meta charset="utf-8">
  <meta name="csrf-param" content="authenticity_token">
  <meta name="csrf-token" content="`+token+`">`), 1)
	if !bytes.Contains(page, []byte(`name="csrf-token"`)) {
		t.Fatal("no CSRF meta in the page")
	}
	for len(page) < 50<<10 {
		page = append(page, "<p>Окна ПВХ от производителя, замер бесплатно.</p>\n"...)
	}
	return page
}

// TestOpaqueSpansRefuse: changes of letters and quotes that look harmless
// but change the tokens (a script's escape states, an end tag, a quoted
// value's end) are not taken, and would have changed the verdict.
func TestOpaqueSpansRefuse(t *testing.T) {
	ours := `<script src="/_leadproxy/c.js"></script>`
	for _, tc := range []struct{ was, now string }{
		// "<script" inside "<!--" in a script: double-escaped, so the first
		// "</script>" no longer ends it.
		{`<html><head><script><!--<scrXpt>a</script>b</script>` + ours + `</head><body>`,
			`<html><head><script><!--<script>a</script>b</script>` + ours + `</head><body>`},
		// An end tag that appears: the style ends before our tag.
		{`<html><head><style>a</stXle>` + ours + `</style></head><body>`,
			`<html><head><style>a</style>` + ours + `</style></head><body>`},
		{`<html><head><title>a</titlX>` + ours + `</title></head><body>`,
			`<html><head><title>a</title>` + ours + `</title></head><body>`},
		// A quote that ends the value early.
		{`<html><head><link href="aXb>` + ours + `c"></head><body>`,
			`<html><head><link href="a"b>` + ours + `c"></head><body>`},
	} {
		a, b := []byte(tc.was), []byte(tc.now)
		n, spans, ok := spansOf(a, "")
		if !ok {
			t.Fatalf("no verdict to remember on %q", a)
		}
		if ra, rb := feed(ptr(newPageScan("/_leadproxy/c.js", "", false)), a, 0), feed(ptr(newPageScan("/_leadproxy/c.js", "", false)), b, 0); ra == rb {
			t.Fatalf("the case tests nothing: %q and %q scan alike (%+v)", a, b, ra)
		}
		if checkOpaque(t, a, b, n, spans, 0) {
			t.Fatalf("%q taken for %q", b, a)
		}
	}
}
