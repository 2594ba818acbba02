package intercept

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// EncodedCache remembers, per request path, the splice of the last gzip page
// injected there: the upstream's encoded bytes it replaced and what replaced
// them. A page whose encoded bytes start with the same ones (compared as
// they arrive), under the same headers, gets the same replacement without
// being decoded, scanned or deflated: the rest of its bytes are copied and
// its trailer is computed from the upstream's (crc32Combine), which is what
// makes a static gzip page cost about what plain Caddy pays. The bytes are
// kept whole rather than hashed, so that a page that differs part way goes
// to the decoder from those bytes, with nothing held per request.
//
// The replaced bytes determine everything the splice wrote: the decoded
// prefix up to X, the insertion point and the tag (an entry is kept only
// when the scan's verdict depended on no byte past X). Only pages that
// decoded whole, as one gzip member, are remembered; the trailer of a later
// page is taken to be its last 8 bytes, as for one member. At most
// EncodedCacheMaxPaths paths and EncodedCacheMaxBytes in all are kept, in
// memory only; a path that does not fit is not remembered.
type EncodedCache struct {
	mu    sync.RWMutex
	m     map[string]*encodedEntry
	bytes int
}

// Bounds of an EncodedCache.
const (
	EncodedCacheMaxPaths = 1024
	EncodedCacheMaxBytes = 16 << 20
)

// NewEncodedCache returns an empty cache, to share between the responses of
// one InjectConfig.
func NewEncodedCache() *EncodedCache {
	return &EncodedCache{m: map[string]*encodedEntry{}}
}

type encodedEntry struct {
	// The headers the scan saw.
	src, nonce string
	charset    bool
	xml        bool

	key []byte // the upstream's first encoded bytes, which sp.out replaces
	sp  gzSplice
}

func (e *encodedEntry) size() int { return len(e.key) + len(e.sp.out) + 256 }

func (c *EncodedCache) entry(path string, s *pageScan, xml bool) *encodedEntry {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.m[path]
	c.mu.RUnlock()
	if e == nil || e.src != s.src || e.nonce != s.headerNonce || e.charset != s.charsetHeader || e.xml != xml {
		return nil
	}
	return e
}

// keyed makes an entry of the splice of a page whose first encoded bytes
// are raw.
func (c *EncodedCache) keyed(raw []byte, sp *gzSplice) *encodedEntry {
	e := &encodedEntry{key: bytes.Clone(raw), sp: *sp}
	e.sp.out = bytes.Clone(sp.out)
	return e
}

func (c *EncodedCache) store(path string, e *encodedEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m[path]
	room := EncodedCacheMaxBytes - c.bytes
	if old != nil {
		room += old.size()
	} else if len(c.m) >= EncodedCacheMaxPaths {
		return
	}
	if e.size() > room {
		return
	}
	if old != nil {
		c.bytes -= old.size()
	}
	c.m[path] = e
	c.bytes += e.size()
}

// The injector's side.

// lookEncoded finds the remembered splice of this path, at WriteHeader;
// while there is one, no decoder is started.
func (iw *injector) lookEncoded() {
	if iw.coding == "gzip" {
		iw.ecand = iw.cfg.Encoded.entry(iw.path, &iw.scan, iw.xml)
		iw.echecked = 0
	}
}

// matchEncoded compares c, the next encoded bytes, with the remembered
// page's. Until they differ nothing is held or decoded; when they differ,
// the bytes so far go to the decoder (catchUp).
func (iw *injector) matchEncoded(c []byte) error {
	key := iw.ecand.key
	k := min(len(c), len(key)-iw.echecked)
	if !bytes.Equal(c[:k], key[iw.echecked:iw.echecked+k]) {
		return iw.catchUp(c)
	}
	iw.echecked += k
	if iw.echecked < len(key) {
		return nil
	}
	return iw.encodedHit(c[k:])
}

// catchUp holds and decodes the bytes that matched, then c.
func (iw *injector) catchUp(c []byte) error {
	iw.raw = append(append(iw.raw[:0], iw.ecand.key[:iw.echecked]...), c...)
	iw.peakRaw = max(iw.peakRaw, len(iw.raw))
	iw.ecand = nil
	iw.pump = startPump(iw.ctx, iw.coding, iw.sinkDecoded) // not started while comparing
	if err := iw.pump.feed(iw.raw); err != nil {
		return iw.decodeFailed(err)
	}
	return nil
}

// encodedHit sends the remembered replacement and copies the rest.
func (iw *injector) encodedHit(rest []byte) error {
	e := iw.ecand
	iw.ecand = nil
	iw.cfg.scanned(true)
	iw.writeInjectedHeader()
	iw.result = InjectResultInjected
	iw.state = injectStream
	iw.tail = &gzTail{sp: &e.sp}
	if _, err := iw.w.Write(e.sp.out); err != nil {
		return err
	}
	err := iw.tail.write(iw.w, rest)
	if err == nil && iw.flushPending {
		err = iw.flushOut()
	}
	return err
}

// rememberSplice keeps the splice of this page if it can be used again.
func (iw *injector) rememberSplice() {
	c, r := iw.cfg.Encoded, iw.gz
	if c == nil || r.entry == nil || r.g.failed != nil || iw.err != nil || r.g.members != 1 {
		return
	}
	if iw.scanComplete || int64(iw.scanRead) > r.entry.sp.x {
		return // the verdict depended on bytes past X
	}
	e := r.entry
	e.src, e.nonce, e.charset, e.xml = iw.scan.src, iw.scan.headerNonce, iw.scan.charsetHeader, iw.xml
	c.store(iw.path, e)
}

// gzTail copies the encoded bytes after the replaced ones, holding back the
// last 8 (the trailer) to rewrite them at the end.
type gzTail struct {
	sp   *gzSplice
	hold []byte
}

func (t *gzTail) write(w interface{ Write([]byte) (int, error) }, p []byte) error {
	if len(t.hold)+len(p) <= 8 {
		t.hold = append(t.hold, p...)
		return nil
	}
	// Write what is held and all of p but its last 8 bytes.
	out := len(t.hold) + len(p) - 8
	if k := min(out, len(t.hold)); k > 0 {
		if _, err := w.Write(t.hold[:k]); err != nil {
			return err
		}
		t.hold = append(t.hold[:0], t.hold[k:]...)
		out -= k
	}
	if out > 0 {
		if _, err := w.Write(p[:out]); err != nil {
			return err
		}
	}
	t.hold = append(t.hold, p[out:]...)
	return nil
}

var errShortGzip = errors.New("gzip: body ends before its trailer")

// finish writes the trailer of the new content: the suffix's CRC is the
// upstream's with the replaced prefix's taken out.
func (t *gzTail) finish(w interface{ Write([]byte) (int, error) }) error {
	if len(t.hold) < 8 {
		return errShortGzip
	}
	crc := binary.LittleEndian.Uint32(t.hold)
	size := binary.LittleEndian.Uint32(t.hold[4:])
	sufLen := int64(size - uint32(t.sp.x)) // mod 2^32, as ISIZE is
	suf := crc ^ multModP(x2nModP(sufLen, 3), t.sp.prefixCRC)
	var out [8]byte
	binary.LittleEndian.PutUint32(out[:], crc32Combine(t.sp.newCRC, suf, sufLen))
	binary.LittleEndian.PutUint32(out[4:], size+uint32(t.sp.tagLen))
	_, err := w.Write(out[:])
	return err
}

func (iw *injector) finishTail() {
	if iw.err != nil {
		return
	}
	if err := iw.tail.finish(iw.w); err != nil {
		iw.err = fmt.Errorf("inject: remembered gzip splice: %w", err)
		iw.result = InjectResultError
	}
}
