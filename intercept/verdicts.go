package intercept

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// VerdictCache remembers, per request path, how the scan of the last page
// there ended: the bytes the tokenizer had read when it reached its verdict,
// and its state then (verdict, insertion point, nonce, charset position). A
// page whose first write starts with the same bytes, under the same
// Content-Security-Policy nonce and charset header, gets the same verdict
// and insertion point without being tokenized again. The scan is a function
// of those bytes and headers alone, so this changes no output byte (the
// tests compare every page with and without it); it saves the tokenizer's
// run over the head of a page served again, which is most of the injection's
// cost on an ordinary page.
//
// A page whose head differs per request (a CSRF token, a user's name)
// simply misses and is scanned. Only verdicts reached within a page's first
// write and within VerdictCacheMaxPrefix bytes are kept, for at most
// VerdictCacheMaxPaths paths: a few megabytes at worst, in memory only.
type VerdictCache struct {
	paths atomic.Int32
	hits  atomic.Int64 // for the tests
	m     sync.Map     // path → *cachedVerdict
}

// Bounds of a VerdictCache.
const (
	VerdictCacheMaxPaths  = 1024
	VerdictCacheMaxPrefix = 4 << 10
)

type cachedVerdict struct {
	prefix  []byte
	scan    pageScan
	verdict pageVerdict
}

// NewVerdictCache returns an empty cache, to share between the responses of
// one InjectConfig.
func NewVerdictCache() *VerdictCache { return new(VerdictCache) }

// Why the bytes up to the end of the last token read are enough: the
// tokenizer ends a tag at its '>', a comment at its "-->", a doctype at its
// '>', all within the token; only a text's end depends on the bytes after it
// (the '<' and the letter that start a tag), and the scan takes a text only
// once the token after it was read. So nothing after scan.read can change
// the tokens before it, nor the verdict. TestVerdictCacheChangesNothing
// checks that with pages changed a byte at a time, anywhere.

// lookup returns the remembered scan of path if data starts with its bytes
// and the headers agree with s, the scan as the response's headers set it up.
func (c *VerdictCache) lookup(path string, data []byte, s *pageScan) (pageScan, pageVerdict, bool) {
	v, ok := c.m.Load(path)
	if !ok {
		return pageScan{}, verdictPending, false
	}
	e := v.(*cachedVerdict)
	if e.scan.headerNonce != s.headerNonce || e.scan.charsetHeader != s.charsetHeader || e.scan.src != s.src ||
		!bytes.HasPrefix(data, e.prefix) {
		return pageScan{}, verdictPending, false
	}
	c.hits.Add(1)
	return e.scan, e.verdict, true
}

// remember keeps the scan s of data, which reached verdict v in one call.
func (c *VerdictCache) remember(path string, data []byte, s *pageScan, v pageVerdict) {
	n := min(len(data), s.read)
	if v == verdictPending || s.complete || n > VerdictCacheMaxPrefix {
		return
	}
	if _, known := c.m.Load(path); !known {
		if c.paths.Add(1) > VerdictCacheMaxPaths {
			c.paths.Add(-1)
			return
		}
	}
	c.m.Store(path, &cachedVerdict{prefix: bytes.Clone(data[:n]), scan: *s, verdict: v})
}
