package intercept

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// VerdictCache remembers, per request path, how the scan of the last page
// there ended: the bytes the tokenizer had read when it reached its verdict,
// and its state then (verdict, insertion point, nonce, charset position). A
// page that starts with the same bytes, under the same Content-Security-Policy
// nonce and charset header, gets the same verdict and insertion point without
// being tokenized again. The scan is a function of those bytes and headers
// alone, so this changes no output byte (the tests compare every page with
// and without it); it saves the tokenizer's run over the head of a page
// served again, which is most of the injection's cost.
//
// A head is kept and compared as it is, up to VerdictCacheExactMax bytes
// while the kept heads of all paths stay within VerdictCacheExactBudget
// (a byte comparison costs a third of a hash); past either bound the first
// VerdictCacheExact bytes are kept as they are and the rest of the head
// (inline CSS, JSON-LD: tens of KB on many sites) is compared by a 64-bit
// hash under a random per-process seed. While the
// bytes that arrived match, the response is held a little longer, as the
// scan would have held it. A head kept as it is may differ from the page
// where the scan read nothing that matters (a nonce or CSRF token in an
// attribute value or an inline script: opaque.go) and still hit; a page
// whose head differs otherwise (a user's name in the text) misses and is
// scanned as usual. At most
// VerdictCacheMaxPaths paths are kept, in memory only: 12 MiB at worst.
type VerdictCache struct {
	seed   maphash.Seed
	mu     sync.RWMutex
	m      map[string]*cachedVerdict // by path
	exact  int                       // bytes kept as they are over VerdictCacheExact, all paths
	budget int                       // VerdictCacheExactBudget (tests set less)
}

// Bounds of a VerdictCache.
const (
	VerdictCacheMaxPaths    = 1024
	VerdictCacheExact       = 4 << 10
	VerdictCacheExactMax    = 256 << 10
	VerdictCacheExactBudget = 8 << 20
)

// Why the bytes up to the end of the last token read are enough: the
// tokenizer ends a tag at its '>', a comment at its "-->", a doctype at its
// '>', all within the token; only a text's end depends on the bytes after it
// (the '<' and the letter that start a tag), and the scan takes a text only
// once the token after it was read. The scan ignores a comment, doctype or
// text that reaches the end of the data so far (x/net emits those cut off;
// a tag it emits only whole). So every token the verdict rests on is whole
// and ends by scan.read: nothing after that can change it, and a scan of
// fewer bytes, which sees a prefix of the same tokens, has no verdict yet.
// TestVerdictCacheChangesNothing and FuzzVerdictCache check it with pages
// changed a byte at a time, anywhere, and cut into writes anywhere.

type cachedVerdict struct {
	n       int    // the scan depended on the first n bytes
	exact   []byte // the first min(n, VerdictCacheExact) of them
	sum     uint64 // maphash of all n, when n > len(exact)
	scan    pageScan
	verdict pageVerdict
	spans   []opaqueSpan // where a page may differ from exact (opaque.go), when exact has all n

	hit    atomic.Bool  // a page matched it at least once
	misses atomic.Int32 // pages on its path that did not match, since
	gap    int32        // the miss that replaces it if it never matched
}

// A path whose page differs on every response (a per-request nonce or
// CSRF token in the head) would otherwise copy its head into a new entry on
// every response, for nothing: an entry that never matched is replaced only
// at its remissEvery-th miss, and each entry that replaces one that never
// matched waits twice as many, up to remissMax: a per-request nonce on a
// 71 KB head cost a 71 KB copy every 16th response (5 % of the injector's
// CPU in BenchmarkInjectWPNonce), now one per 1024 at most. A page that
// changed once for good (a deploy) replaces an entry that matched at its
// first miss; one that stops changing is remembered within remissMax.
const (
	remissEvery = 16
	remissMax   = 1024
)

type cacheFound int

const (
	cacheMiss cacheFound = iota
	cacheHit
	cacheMore // the bytes so far match, fewer than the scan needed
)

// NewVerdictCache returns an empty cache, to share between the responses of
// one InjectConfig.
func NewVerdictCache() *VerdictCache {
	return &VerdictCache{seed: maphash.MakeSeed(), m: map[string]*cachedVerdict{}, budget: VerdictCacheExactBudget}
}

// entry returns the remembered page of path if it was scanned under the
// same headers as s, or nil.
func (c *VerdictCache) entry(path string, s *pageScan) *cachedVerdict {
	c.mu.RLock()
	e := c.m[path]
	c.mu.RUnlock()
	if e == nil {
		return nil
	}
	// The header's nonce value is only copied into the tag: whether there
	// is one is what the verdict depends on.
	if (e.scan.headerNonce == "") != (s.headerNonce == "") || e.scan.charsetHeader != s.charsetHeader || e.scan.src != s.src {
		return nil
	}
	return e
}

// scanFor is e's scan for a page on which it hit, whose scan so far is s:
// under s's header nonce.
func (e *cachedVerdict) scanFor(s *pageScan) pageScan {
	scan := e.scan
	scan.headerNonce = s.headerNonce
	return scan
}

// same compares b, the page's bytes from offset off, with e's (exact holds
// them): equal, or different only where the verdict does not look.
func (e *cachedVerdict) same(b []byte, off int) bool {
	if len(e.spans) == 0 {
		return bytes.Equal(b, e.exact[off:off+len(b)])
	}
	return sameScan(b, off, e.exact, e.spans)
}

// match compares data, the body so far, with e; the first checked bytes
// matched in an earlier call. It returns how many bytes are checked now.
func (c *VerdictCache) match(e *cachedVerdict, data []byte, checked int) (cacheFound, int) {
	k := min(len(data), len(e.exact))
	if checked < k {
		if !e.same(data[checked:k], checked) {
			return cacheMiss, checked
		}
		checked = k
	}
	switch {
	case len(data) < e.n:
		return cacheMore, checked
	case e.n > len(e.exact) && maphash.Bytes(c.seed, data[:e.n]) != e.sum:
		return cacheMiss, checked
	}
	if !e.hit.Load() {
		e.hit.Store(true)
	}
	return cacheHit, checked
}

// remember keeps the scan s of data, the body so far, if it reached its
// verdict v before the end of the body.
func (c *VerdictCache) remember(path string, data []byte, s *pageScan, v pageVerdict) {
	if v == verdictPending || s.complete {
		return
	}
	c.mu.RLock()
	prev := c.m[path]
	c.mu.RUnlock()
	if prev != nil && !prev.hit.Load() && prev.misses.Add(1) < prev.gap {
		return
	}
	n := min(len(data), s.read)
	c.mu.RLock()
	old, known := c.m[path]
	full := len(c.m) >= VerdictCacheMaxPaths
	room := c.budget - c.exact
	c.mu.RUnlock()
	if full && !known {
		return
	}
	if known {
		room += old.extra()
	}
	keep := min(n, VerdictCacheExact)
	if n <= VerdictCacheExactMax && n-VerdictCacheExact <= room {
		keep = n
	}
	e := &cachedVerdict{n: n, exact: bytes.Clone(data[:keep]), scan: *s, verdict: v, gap: remissEvery}
	e.scan.spans = nil
	if s.spans != nil && keep == n && len(*s.spans) <= maxOpaqueSpans &&
		max(0, n-VerdictCacheExact)+len(*s.spans)*opaqueSpanSize <= room {
		e.spans = slices.Clone(*s.spans)
	}
	if prev != nil && !prev.hit.Load() {
		e.gap = min(2*prev.gap, remissMax)
	}
	if n > len(e.exact) {
		e.sum = maphash.Bytes(c.seed, data[:n])
	}
	c.mu.Lock()
	old, known = c.m[path]
	switch {
	case !known && len(c.m) >= VerdictCacheMaxPaths:
	case c.exact-old.extra()+e.extra() > c.budget:
		// Another response filled the budget meanwhile: keep the head
		// hashed instead (rare; the next scan of the path may keep it).
	default:
		c.exact += e.extra() - old.extra()
		c.m[path] = e
	}
	c.mu.Unlock()
}

// extra is how many kept bytes e has over VerdictCacheExact.
func (e *cachedVerdict) extra() int {
	if e == nil {
		return 0
	}
	return max(0, len(e.exact)-VerdictCacheExact) + len(e.spans)*opaqueSpanSize
}

// opaqueSpanSize is what one kept span costs, counted in the budget.
const opaqueSpanSize = 12
