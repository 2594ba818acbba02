package intercept

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestInjectCachedTail: a page whose head spans several writes, served
// again with the same head, goes out as the first one did, byte for byte,
// with the write that completed the remembered head passed on as it is
// (not copied); a head that differs in that write, or one whose insertion
// point lies in it, is scanned as without the cache, and comes out right.
func TestInjectCachedTail(t *testing.T) {
	page := wpPage(t, false)
	plain, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
	want := plain.body.Bytes()
	const chunk = 32 << 10
	serve := func(cache *VerdictCache, body []byte) (*tapWriter, []bool) {
		t.Helper()
		var scans []bool
		cfg := &InjectConfig{ScriptSrc: testSrc, Verdicts: cache, OnScan: func(c bool) { scans = append(scans, c) }}
		tap := newTap()
		w, finish := Wrap(tap, getPage(), cfg)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		for rest := body; len(rest) > 0; rest = rest[min(len(rest), chunk):] {
			if _, err := w.Write(rest[:min(len(rest), chunk)]); err != nil {
				t.Fatal(err)
			}
		}
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		return tap, scans
	}
	cache := NewVerdictCache()
	if tap, scans := serve(cache, page); !bytes.Equal(tap.body.Bytes(), want) || len(scans) != 1 || scans[0] {
		t.Fatalf("first: same %v, scans %v", bytes.Equal(tap.body.Bytes(), want), scans)
	}
	for i := 0; i < 2; i++ {
		tap, scans := serve(cache, page)
		if !bytes.Equal(tap.body.Bytes(), want) || len(scans) != 1 || !scans[0] {
			t.Fatalf("again %d: same %v, scans %v", i, bytes.Equal(tap.body.Bytes(), want), scans)
		}
		// The head is 71 KB: two writes held, the third completes it.
		if len(tap.writes) < 2 || len(tap.writes[0]) != 2*chunk+len(testTag) || &tap.writes[1][0] != &page[2*chunk] {
			t.Fatalf("again %d: writes of %d, %d bytes; the third upstream write was copied", i, len(tap.writes[0]), len(tap.writes[1]))
		}
	}
	// A byte of the head in the third write changes: scanned again.
	end := bytes.Index(page, []byte("</head>"))
	if end < 2*chunk {
		t.Fatalf("head ends at %d, within two writes", end)
	}
	other := bytes.Clone(page)
	copy(other[end-9:], "<!--x-->\n") // the page's last bytes before </head>, a comment now
	wantOther := bytes.Replace(other, []byte("<head>"), []byte("<head>"+testTag), 1)
	tap, scans := serve(cache, other)
	if !bytes.Equal(tap.body.Bytes(), wantOther) || len(scans) != 1 || scans[0] {
		t.Fatalf("changed head: same %v, scans %v", bytes.Equal(tap.body.Bytes(), wantOther), scans)
	}
	// An insertion point past the held bytes: <head> in the third write.
	late := append([]byte("<!DOCTYPE html><!--"+string(bytes.Repeat([]byte("c"), 2*chunk+100))+"-->"), page[len("<!DOCTYPE html>"):]...)
	wantLate := bytes.Replace(late, []byte("<head>"), []byte("<head>"+testTag), 1)
	cache = NewVerdictCache()
	for i := 0; i < 2; i++ {
		if tap, _ := serve(cache, late); !bytes.Equal(tap.body.Bytes(), wantLate) {
			t.Fatalf("late head %d: not the page with the tag after <head>", i)
		}
	}
}

// TestVerdictCacheBackoff: a path whose head differs on every response
// replaces its never-matched entry at the 16th miss, then after twice as
// many each time, up to 1024; when the head stops changing it is remembered
// again within that and then matches.
func TestVerdictCacheBackoff(t *testing.T) {
	cache := NewVerdictCache()
	entry := func() *cachedVerdict {
		cache.mu.RLock()
		defer cache.mu.RUnlock()
		return cache.m["/"]
	}
	serve := func(i int) bool {
		t.Helper()
		page := fmt.Sprintf("<html><head><meta name=csrf-token content=%08d><title>t</title></head><body>x</body></html>", i)
		cached := false
		tap, result, err := run(t, getPage(), InjectConfig{Verdicts: cache, OnScan: func(c bool) { cached = c }}, htmlResponse(page))
		if err != nil || result != InjectResultInjected || !strings.Contains(tap.body.String(), "<head>"+testTag+"<meta") {
			t.Fatalf("response %d: %q %v", i, result, err)
		}
		return cached
	}
	var replaced []int
	last := (*cachedVerdict)(nil)
	for i := 0; i < 5000; i++ {
		if serve(i) {
			t.Fatalf("response %d matched a changing head", i)
		}
		if e := entry(); e != last {
			replaced = append(replaced, i)
			last = e
		}
	}
	want := []int{0}
	for at, gap := 0, int32(remissEvery); at+int(gap) < 5000; gap = min(2*gap, remissMax) {
		at += int(gap)
		want = append(want, at)
	}
	if fmt.Sprint(replaced) != fmt.Sprint(want) {
		t.Fatalf("replaced at %v, want %v", replaced, want)
	}
	// The head stops changing: remembered within remissMax, then a hit.
	for i := 0; ; i++ {
		if i > remissMax+1 {
			t.Fatal("a static head never matched")
		}
		if serve(-1) {
			break
		}
	}
}
