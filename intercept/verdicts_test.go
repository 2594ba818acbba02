package intercept

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// cacheCase is one response for the comparison: the page, how it is
// written, and the headers the scan depends on.
type cacheCase struct {
	page    []byte
	chunk   int    // first write size (0: the whole page at once)
	charset bool   // Content-Type names the charset
	csp     string // a Content-Security-Policy header
}

func (c cacheCase) response() response {
	ct := "text/html"
	if c.charset {
		ct += "; charset=utf-8"
	}
	r := response{status: 200, header: map[string]string{"Content-Type": ct}, body: c.page, chunk: c.chunk}
	if c.csp != "" {
		r.header["Content-Security-Policy"] = c.csp
	}
	return r
}

// sameWithCache serves c through cfg (which holds the cache) and through a
// config without one, and fails unless output and result are the same.
func sameWithCache(t testing.TB, cfg InjectConfig, path string, c cacheCase) string {
	t.Helper()
	req := getPage()
	req.URL.Path = path
	cached, r1, err1 := run(t, req, cfg, c.response())
	plain, r2, err2 := run(t, getPage(), InjectConfig{}, c.response())
	if r1 != r2 || (err1 == nil) != (err2 == nil) || !bytes.Equal(cached.body.Bytes(), plain.body.Bytes()) ||
		cached.header.Get("Content-Length") != plain.header.Get("Content-Length") {
		t.Fatalf("with the cache: %s %v %q\nwithout: %s %v %q\npage %q", r1, err1, cached.body.Bytes(), r2, err2, plain.body.Bytes(), c.page)
	}
	return r1
}

// cacheCorpus is the generated pages and the real ones in testdata.
func cacheCorpus(t testing.TB, r *rand.Rand, n int) [][]byte {
	var pages [][]byte
	files, _ := filepath.Glob("testdata/inject/*")
	for _, name := range files {
		page, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, page)
	}
	for range n {
		p, _ := genPage(r)
		pages = append(pages, []byte(p))
	}
	// A 46 KB head (compared by hash past its first 4 KiB), and heads that
	// need the charset rule and the nonce stage.
	pages = append(pages, bigHeadPage(),
		[]byte("<!DOCTYPE html><html><head>"+strings.Repeat(" ", 990)+`<meta charset="utf-8"><title>x</title></head><body>b</body></html>`),
		[]byte(`<html><head><meta http-equiv="Content-Security-Policy" content="script-src 'nonce-abc'"><script nonce="abc">1</script></head><body>`),
		[]byte(`<html><head><title>t</title></head><body><p>x</p><script nonce="abc">2</script>`+strings.Repeat("y", 200)),
	)
	return pages
}

// mutate changes, inserts or deletes one byte of page, anywhere.
func mutate(r *rand.Rand, page []byte) []byte {
	if len(page) == 0 {
		return []byte("<")
	}
	i := r.Intn(len(page))
	b := "<>/-! =\"'ahHeEdDsS\n"[r.Intn(19)]
	switch r.Intn(3) {
	case 0:
		out := bytes.Clone(page)
		out[i] = b
		return out
	case 1:
		return append(append(append([]byte{}, page[:i]...), b), page[i:]...)
	}
	return append(append([]byte{}, page[:i]...), page[i+1:]...)
}

// TestVerdictCacheChangesNothing: a page served again, and the same page with
// one byte changed anywhere, give through a primed cache exactly the output
// and result they give without one; many pages served again are hits.
// cachedConfig is an InjectConfig with a VerdictCache, and the count of
// verdicts the cache gave (OnScan, as the metric counts them).
func cachedConfig() (InjectConfig, *atomic.Int64) {
	n := new(atomic.Int64)
	return InjectConfig{Verdicts: NewVerdictCache(), OnScan: func(cached bool) {
		if cached {
			n.Add(1)
		}
	}}, n
}

func TestVerdictCacheChangesNothing(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	csps := []string{"", "script-src 'nonce-abc'", "script-src 'nonce-xyz'"}
	var served, hits, mutants int
	for i, page := range cacheCorpus(t, r, 2000) {
		cfg, fromCache := cachedConfig()
		path := fmt.Sprintf("/p%d", i%5)
		c := cacheCase{page: page, charset: r.Intn(2) == 0, csp: csps[r.Intn(3)]}
		if r.Intn(3) == 0 {
			c.chunk = 1 + r.Intn(len(page)+1)
		}
		sameWithCache(t, cfg, path, c) // primes
		before := fromCache.Load()
		sameWithCache(t, cfg, path, c) // the same page again
		served++
		hits += int(fromCache.Load() - before)
		reps := 6
		if len(page) > VerdictCacheExact {
			reps = 200 // many changes past the bytes compared as they are
		}
		for range reps {
			m := c
			m.page = mutate(r, page)
			if r.Intn(4) == 0 {
				m.csp = csps[r.Intn(3)]
			}
			if r.Intn(4) == 0 {
				m.charset = !m.charset
			}
			sameWithCache(t, cfg, path, c) // primes with the original again
			sameWithCache(t, cfg, path, m)
			mutants++
		}
	}
	t.Logf("%d pages served again: %d from the cache; %d mutants compared", served, hits, mutants)
	// Not hits: first writes cut before the verdict (a third), and pages
	// under a nonce policy whose verdict waits for the end of the body.
	if hits < served/3 {
		t.Errorf("only %d of %d pages served again were cache hits", hits, served)
	}
}

// TestVerdictCacheBodyChanges: only the bytes the scan read must match: a
// page with the same head and another body is a hit.
func TestVerdictCacheBodyChanges(t *testing.T) {
	cfg, fromCache := cachedConfig()
	head := "<!DOCTYPE html><html><head><title>Окна</title></head>\n<body>\n<main>"
	sameWithCache(t, cfg, "/", cacheCase{page: []byte(head + "first body</main></body></html>")})
	if res := sameWithCache(t, cfg, "/", cacheCase{page: []byte(head + "another, longer body</main></body></html>")}); res != InjectResultInjected {
		t.Fatalf("result %s", res)
	}
	if fromCache.Load() != 1 {
		t.Fatalf("%d hits, want 1", fromCache.Load())
	}
	// A byte changed inside the head: scanned again.
	sameWithCache(t, cfg, "/", cacheCase{page: []byte(strings.Replace(head, "Окна", "Двери", 1) + "</main>")})
	if fromCache.Load() != 1 {
		t.Fatalf("a changed head was a hit")
	}
}

// TestVerdictCacheBounds: at most VerdictCacheMaxPaths paths; a verdict that
// needed the end of the body is not kept.
func TestVerdictCacheBounds(t *testing.T) {
	count := func(c *VerdictCache) int {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return len(c.m)
	}
	cfg := InjectConfig{Verdicts: NewVerdictCache()}
	page := []byte("<html><head></head><body>x</body></html>")
	for i := range VerdictCacheMaxPaths + 50 {
		sameWithCache(t, cfg, fmt.Sprintf("/%d", i), cacheCase{page: page})
	}
	if n := count(cfg.Verdicts); n != VerdictCacheMaxPaths {
		t.Fatalf("%d paths kept, want %d", n, VerdictCacheMaxPaths)
	}
	sameWithCache(t, cfg, "/0", cacheCase{page: []byte("<html><head><title>new</title></head><body>")})
	if n := count(cfg.Verdicts); n != VerdictCacheMaxPaths {
		t.Fatalf("replacing a path's entry changed the count to %d", n)
	}

	// A verdict that needed the end of the body is not kept.
	cfg = InjectConfig{Verdicts: NewVerdictCache()}
	sameWithCache(t, cfg, "/", cacheCase{page: []byte("<html><head><title>only a head</title>")})
	if n := count(cfg.Verdicts); n != 0 {
		t.Errorf("a verdict at the end of the body was kept")
	}
}

// TestVerdictCacheLongHead: a head longer than VerdictCacheExact, written in
// pieces, is a hit when the same again, and a miss when one byte past the
// first 4 KiB differs; the response is held until the bytes decide. Both
// ways a long head is kept: as it is, and hashed once the budget for heads
// kept as they are is spent.
func TestVerdictCacheLongHead(t *testing.T) {
	head := "<!DOCTYPE html><html><head><style>" + strings.Repeat("p { color: red }\n", 1000) + "</style>"
	page := []byte(head + "<title>x</title></head><body>" + strings.Repeat("<p>body</p>", 100))
	for _, budget := range []int{VerdictCacheExactBudget, 0} {
		cfg, fromCache := cachedConfig()
		cfg.Verdicts.budget = budget
		for _, chunk := range []int{0, 1000, 4096, 5000, 0} {
			sameWithCache(t, cfg, "/", cacheCase{page: page, chunk: chunk})
		}
		if h := fromCache.Load(); h != 4 {
			t.Fatalf("budget %d: %d hits, want 4", budget, h)
		}
		e := cfg.Verdicts.m["/"]
		if hashed := e.sum != 0; hashed != (budget == 0) || cfg.Verdicts.exact != e.extra() {
			t.Fatalf("budget %d: kept %d bytes as they are (%d counted), hashed %v", budget, len(e.exact), cfg.Verdicts.exact, hashed)
		}
		changed := bytes.Clone(page)
		changed[len(head)+2] = 'T' // <Title>: the same tokens, other bytes
		sameWithCache(t, cfg, "/", cacheCase{page: changed, chunk: 3000})
		if h := fromCache.Load(); h != 4 {
			t.Fatalf("budget %d: a head that differs past the first 4 KiB was a hit", budget)
		}
	}
}

// TestVerdictCacheExactBudget: heads kept as they are stay within the
// budget, counted right as paths are replaced.
func TestVerdictCacheExactBudget(t *testing.T) {
	c := NewVerdictCache()
	c.budget = 100 << 10
	cfg := InjectConfig{Verdicts: c}
	head := "<!DOCTYPE html><html><head><style>" + strings.Repeat("p { color: red }\n", 2000) + "</style></head><body>"
	for i := range 10 {
		sameWithCache(t, cfg, fmt.Sprintf("/%d", i%6), cacheCase{page: []byte(head + strings.Repeat("x", i))})
	}
	sum := 0
	for _, e := range c.m {
		sum += e.extra()
	}
	if sum != c.exact || c.exact > c.budget || c.exact == 0 {
		t.Fatalf("kept %d bytes over the first 4 KiB, counted %d, budget %d", sum, c.exact, c.budget)
	}
}

// FuzzVerdictCache: whatever page primed the cache, the next one served on
// the same path, which starts with some of its bytes and goes on with any
// others, comes out as it would without the cache.
func FuzzVerdictCache(f *testing.F) {
	f.Add([]byte("<html><head></head><body>"), []byte("x"), uint16(25), uint16(0))
	f.Add([]byte("<html><head><title>a</title>"), []byte("</head>"), uint16(100), uint16(5))
	f.Add([]byte(`<html><head><script src="/_leadproxy/c.js">`), []byte(`x">`), uint16(40), uint16(0))
	f.Add([]byte("<!DOCTYPE html><div>"), []byte(""), uint16(19), uint16(0))
	f.Add([]byte("<html><head><!-- a -->b"), []byte("-->"), uint16(20), uint16(9))
	f.Fuzz(func(t *testing.T, a, tail []byte, keep, cut uint16) {
		cfg := InjectConfig{Verdicts: NewVerdictCache()}
		sameWithCache(t, cfg, "/", cacheCase{page: a, charset: cut&1 == 0})
		b := append(bytes.Clone(a[:min(int(keep), len(a))]), tail...)
		sameWithCache(t, cfg, "/", cacheCase{page: b, charset: cut&2 == 0, chunk: int(cut >> 2)})
	})
}

// TestVerdictCacheConcurrent: responses on a few paths, from parallel
// subtests sharing one cache, with heads that change now and then, all come
// out as without the cache (run with -race).
func TestVerdictCacheConcurrent(t *testing.T) {
	pages := cacheCorpus(t, rand.New(rand.NewSource(3)), 40)
	cfg, fromCache := cachedConfig()
	t.Run("group", func(t *testing.T) {
		for g := range 8 {
			t.Run(fmt.Sprint(g), func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewSource(int64(g)))
				for range 300 {
					page := pages[r.Intn(len(pages))]
					if r.Intn(4) == 0 {
						page = mutate(r, page)
					}
					c := cacheCase{page: page, chunk: r.Intn(2) * (1 + r.Intn(len(page)+1))}
					sameWithCache(t, cfg, fmt.Sprintf("/%d", r.Intn(3)), c)
				}
			})
		}
	})
	t.Logf("%d hits", fromCache.Load())
}

// TestVerdictCacheOnScan: OnScan says, once per page read to a verdict,
// whether the cache or the tokenizer gave it.
func TestVerdictCacheOnScan(t *testing.T) {
	var cached, tokenized int
	cfg := InjectConfig{Verdicts: NewVerdictCache(), OnScan: func(c bool) {
		if c {
			cached++
		} else {
			tokenized++
		}
	}}
	page := cacheCase{page: []byte("<html><head><title>x</title></head><body>b</body></html>")}
	for range 3 {
		sameWithCache(t, cfg, "/", page)
	}
	sameWithCache(t, cfg, "/", cacheCase{page: []byte("<html><head><title>the end decides")}) // at the end of the body
	sameWithCache(t, cfg, "/", cacheCase{page: []byte(`<img src="x.png">`), chunk: 3})        // a fragment, in pieces
	if cached != 2 || tokenized != 3 {
		t.Fatalf("cache %d, tokenizer %d; want 2 and 3", cached, tokenized)
	}
}
