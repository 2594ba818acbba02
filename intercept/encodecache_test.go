package intercept

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestEncodedCacheChangesNothing: a gzip page served again gets the
// remembered splice without being decoded (OnScan says cached), and its
// bytes are those of a splice from scratch; a page whose bytes differ
// anywhere, before or after the replaced part, is still right.
func TestEncodedCacheChangesNothing(t *testing.T) {
	cache := NewEncodedCache()
	page := cmsPage(11, 80<<10)
	enc := gzipWith(t, "std", 6, page)
	gzResp := func(body []byte, chunk int) response {
		return response{status: 200, chunk: chunk, body: body,
			header: map[string]string{"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"}}
	}
	serve := func(body []byte, chunk int, c *EncodedCache) ([]byte, []bool) {
		t.Helper()
		var scans []bool
		cfg := InjectConfig{Encoded: c, OnScan: func(cached bool) { scans = append(scans, cached) }}
		tap, result, err := run(t, getPage(), cfg, gzResp(body, chunk))
		if err != nil || result != InjectResultInjected {
			t.Fatalf("result %q, %v", result, err)
		}
		return tap.body.Bytes(), scans
	}
	fresh, _ := serve(enc, 0, nil)
	plain, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
	want := plain.body.Bytes()
	if got := gunzipStd(t, fresh); !bytes.Equal(got, want) {
		t.Fatal("splice wrong")
	}
	first, scans := serve(enc, 1000, cache)
	if len(scans) != 1 || scans[0] {
		t.Fatalf("first serve: scans %v", scans)
	}
	if !bytes.Equal(first, fresh) {
		t.Fatal("output depends on the chunking")
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20; i++ {
		chunk := 1 + rnd.IntN(20000)
		again, scans := serve(enc, chunk, cache)
		if len(scans) != 1 || !scans[0] {
			t.Fatalf("serve %d (writes of %d): scans %v, want one cached", i, chunk, scans)
		}
		if !bytes.Equal(again, fresh) {
			t.Fatalf("serve %d: remembered splice differs from a fresh one", i)
		}
	}
	// The same head, another tail (blocks later): the remembered splice,
	// the upstream's trailer rewritten.
	long := cmsPage(13, 400<<10)
	encLong := gzipWith(t, "std", 6, long)
	serve(encLong, 0, cache)
	other := append(bytes.Clone(long[:len(long)-3000]), cmsPage(12, 20<<10)...)
	got, scans := serve(gzipWith(t, "std", 6, other), 4096, cache)
	if !scans[0] {
		t.Fatal("another tail: not a hit")
	}
	plainOther, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(other)))
	if !bytes.Equal(gunzipStd(t, got), plainOther.body.Bytes()) {
		t.Fatal("another tail: wrong page")
	}
	// Bytes changed one at a time, anywhere: never a wrong page.
	for i := 0; i < 40; i++ {
		bad := bytes.Clone(page)
		at := rnd.IntN(len(bad))
		bad[at] = "<>ab \n"[rnd.IntN(6)]
		encBad := gzipWith(t, "std", 6, bad)
		resp := gzResp(encBad, 1+rnd.IntN(9000))
		var scans []bool
		cfg := InjectConfig{Encoded: cache, OnScan: func(cached bool) { scans = append(scans, cached) }}
		tap, result, err := run(t, getPage(), cfg, resp)
		if err != nil {
			t.Fatal(err)
		}
		wantOut := bad
		if result == InjectResultInjected {
			plain, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(bad)))
			wantOut = plain.body.Bytes()
		}
		if got := gunzipStd(t, tap.body.Bytes()); !bytes.Equal(got, wantOut) {
			t.Fatalf("change at %d (%q): wrong page, cached %v", at, bad[at], scans)
		}
		serve(enc, 0, cache) // the original again, as the last one remembered
	}
}

func TestEncodedCacheBounds(t *testing.T) {
	c := NewEncodedCache()
	sp := &gzSplice{out: make([]byte, 60<<10)}
	for i := 0; i < 2*EncodedCacheMaxPaths; i++ {
		c.store(fmt.Sprint("/p", i), c.keyed(make([]byte, 10<<10), sp))
	}
	if c.bytes > EncodedCacheMaxBytes || len(c.m) > EncodedCacheMaxPaths {
		t.Fatalf("%d bytes in %d paths", c.bytes, len(c.m))
	}
	n := len(c.m)
	c.store("/p0", c.keyed(make([]byte, 10<<10), sp)) // a known path is replaced
	if len(c.m) != n {
		t.Fatal("replacing an entry changed the count")
	}
}

// TestEncodedCacheWhole: a br or zstd page held to its end is remembered
// as it went out; from then on the same bytes get it (no decoding, a
// Content-Length). A page no step of its ladder fits (brotli 11) goes out
// as it came, and the background encoder remembers it at brotli 11 for the
// next request. Other bytes, or more of them, are decoded as usual.
func TestEncodedCacheWhole(t *testing.T) {
	page := cmsPage(21, 40<<10)
	plain, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
	want := plain.body.Bytes()
	for _, up := range upstreamCodings() {
		if up.coding != "br" && up.coding != "zstd" || up.name == "br-4" || up.name == "br-5" {
			continue
		}
		t.Run(up.name, func(t *testing.T) {
			cache := NewEncodedCache()
			body := up.enc(t, page)
			serve := func(body []byte, chunk int) (*tapWriter, string, []bool) {
				t.Helper()
				var scans []bool
				cfg := InjectConfig{Encoded: cache, OnScan: func(cached bool) { scans = append(scans, cached) }}
				resp := response{status: 200, chunk: chunk, body: body,
					header: map[string]string{"Content-Type": "text/html; charset=utf-8", "Content-Encoding": up.coding}}
				tap, result, err := run(t, getPage(), cfg, resp)
				if err != nil || result != InjectResultInjected && result != InjectResultHeavier {
					t.Fatalf("result %q, %v", result, err)
				}
				return tap, result, scans
			}
			tap, result, scans := serve(body, 3000)
			if scans[0] {
				t.Fatal("a hit before the page was seen")
			}
			if result == InjectResultHeavier && (up.name != "br-11" || !bytes.Equal(tap.body.Bytes(), body)) {
				t.Fatalf("first serve %q", result)
			}
			cache.wait()
			tap, result, scans = serve(body, 5000)
			if len(scans) != 1 || !scans[0] || result != InjectResultInjected {
				t.Fatalf("second serve: scans %v, %q, want one cached and injected", scans, result)
			}
			out := tap.body.Bytes()
			if got := decodeAny(t, up.coding, out); !bytes.Equal(got, want) {
				t.Fatal("remembered page is not the page with the tag")
			}
			if cl := tap.sent.Get("Content-Length"); cl != fmt.Sprint(len(out)) {
				t.Fatalf("Content-Length %q for %d bytes", cl, len(out))
			}
			if len(out) > len(body)+spliceAllowance([]byte(testTag)) {
				t.Errorf("remembered page %d bytes from the upstream's %d", len(out), len(body))
			}
			t.Logf("%s: upstream %d, remembered %d", up.name, len(body), len(out))
			// More bytes than remembered, and other bytes: decoded as usual.
			longer := up.enc(t, append(bytes.Clone(page), "<!-- more -->"...))
			for _, b := range [][]byte{longer, up.enc(t, bytes.Replace(page, []byte("<title>"), []byte("<title>x"), 1))} {
				tap, result, scans := serve(b, 4000)
				if scans[0] {
					t.Fatal("other bytes got the remembered page")
				}
				if result == InjectResultHeavier && bytes.Equal(tap.body.Bytes(), b) {
					continue // brotli 11: as it came, like the first serve
				}
				d := decodeAny(t, up.coding, tap.body.Bytes())
				if !bytes.Contains(d, []byte(testTag)) || len(d) != len(decodeAny(t, up.coding, b))+len(testTag) {
					t.Fatal("other bytes: not the page with the tag")
				}
			}
		})
	}
}

// TestEncodedHitWrites: a remembered gzip splice that arrives in one write
// goes out in two (the page but its trailer, then the trailer at the
// end), not one per part: behind Caddy's proxy, which flushes after every
// write of a chunked page, each Write is a chunk and a syscall.
func TestEncodedHitWrites(t *testing.T) {
	cache := NewEncodedCache()
	enc := gzipWith(t, "std", 6, cmsPage(11, 60<<10))
	resp := response{status: 200, body: enc,
		header: map[string]string{"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"}}
	cfg := InjectConfig{Encoded: cache}
	first, _, err := run(t, getPage(), cfg, resp)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var cached bool
		cfg.OnScan = func(c bool) { cached = c }
		tap, _, err := run(t, getPage(), cfg, resp)
		if err != nil || !cached {
			t.Fatalf("not a hit (%v)", err)
		}
		if !bytes.Equal(tap.body.Bytes(), first.body.Bytes()) {
			t.Fatal("the hit differs from the first splice")
		}
		if len(tap.writes) != 2 || len(tap.writes[1]) != 8 {
			sizes := make([]int, len(tap.writes))
			for i, w := range tap.writes {
				sizes[i] = len(w)
			}
			t.Fatalf("writes of %v bytes, want the page and then its 8-byte trailer", sizes)
		}
	}
}
