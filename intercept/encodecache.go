package intercept

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
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
	m     map[string]*encodedEntry // by path and coding
	bytes int

	// Whole pages: per path, the hash of the last br or zstd page that
	// streamed and the ladder step that fitted last; whether a background
	// encoder runs, and the encoders.
	seed     maphash.Seed
	seen     map[string]wholeSeen
	building bool
	bg       sync.WaitGroup
}

// Bounds of an EncodedCache.
const (
	EncodedCacheMaxPaths = 1024
	EncodedCacheMaxBytes = 16 << 20
)

// NewEncodedCache returns an empty cache, to share between the responses of
// one InjectConfig.
func NewEncodedCache() *EncodedCache {
	return &EncodedCache{m: map[string]*encodedEntry{}, seed: maphash.MakeSeed(), seen: map[string]wholeSeen{}}
}

type encodedEntry struct {
	coding string
	x2n    atomic.Uint64 // gzTail's memo
	whole  bool          // key is the whole body, sp.out the whole page (br, zstd)
	// The headers the scan saw.
	src, nonce string
	charset    bool
	xml        bool

	key []byte // the upstream's first encoded bytes, which sp.out replaces
	sp  gzSplice

	// A whole page: sp.out is in coding sent, or the page goes out as it
	// came (pass); brOK is whether the client it was made for accepted br.
	sent       string
	pass, brOK bool
}

func (e *encodedEntry) size() int { return len(e.key) + len(e.sp.out) + 256 }

func (c *EncodedCache) entry(path, coding string, s *pageScan, xml bool) *encodedEntry {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e := c.m[path+"\x00"+coding]
	c.mu.RUnlock()
	if e == nil || e.src != s.src || e.nonce != s.headerNonce || e.charset != s.charsetHeader || e.xml != xml {
		return nil
	}
	return e
}

// wholeFits says whether a remembered whole page was made for a client
// like this one (the coding it went out in depends on Accept-Encoding).
func (iw *injector) wholeFits(e *encodedEntry) bool {
	return !e.whole || e.brOK == iw.accepts("br")
}

// keyed makes an entry of the splice of a page whose first encoded bytes
// are raw.
func (c *EncodedCache) keyed(raw []byte, sp *gzSplice) *encodedEntry {
	e := &encodedEntry{key: bytes.Clone(raw), sp: *sp}
	e.sp.out = bytes.Clone(sp.out)
	return e
}

func (c *EncodedCache) store(path string, e *encodedEntry) {
	if c == nil {
		return
	}
	path += "\x00" + e.coding
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
	iw.ecand = iw.cfg.Encoded.entry(iw.path, iw.coding, &iw.scan, iw.xml)
	if iw.ecand != nil && !iw.wholeFits(iw.ecand) {
		iw.ecand = nil
	}
	iw.echecked = 0
}

// matchEncoded compares c, the next encoded bytes, with the remembered
// page's. Until they differ nothing is held or decoded; when they differ,
// the bytes so far go to the decoder (catchUp).
func (iw *injector) matchEncoded(c []byte) error {
	key := iw.ecand.key
	k := min(len(c), len(key)-iw.echecked)
	if !bytes.Equal(c[:k], key[iw.echecked:iw.echecked+k]) || iw.ecand.whole && k < len(c) {
		return iw.catchUp(c)
	}
	iw.echecked += k
	if iw.echecked < len(key) || iw.ecand.whole {
		return nil // a whole page is decided at its end
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
	iw.writeInjectedHeader(-1)
	iw.result = InjectResultInjected
	iw.state = injectStream
	iw.tail = &gzTail{sp: &e.sp, x2n: &e.x2n}
	err := iw.tail.write(iw.w, e.sp.out, rest)
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
	e.coding = "gzip"
	e.src, e.nonce, e.charset, e.xml = iw.scan.src, iw.scan.headerNonce, iw.scan.charsetHeader, iw.xml
	c.store(iw.path, e)
}

// gzTail copies the encoded bytes after the replaced ones, holding back the
// last 8 (the trailer) to rewrite them at the end.
type gzTail struct {
	sp   *gzSplice
	x2n  *atomic.Uint64 // the entry's last suffix length and x^(8·length) mod P
	hold []byte
}

// write copies p but its last 8 bytes (held back, with those held
// before), after pre, in one Write when they fit a buffer: on a page
// that comes chunked and is flushed after every write (Caddy's proxy does
// that when there is no Content-Length), every Write is a chunk and a
// syscall of its own.
func (t *gzTail) write(w io.Writer, pre, p []byte) error {
	if len(t.hold)+len(p) <= 8 {
		t.hold = append(t.hold, p...)
		return writeJoined(w, pre)
	}
	out := len(t.hold) + len(p) - 8
	k := min(out, len(t.hold))
	err := writeJoined(w, pre, t.hold[:k], p[:out-k])
	t.hold = append(t.hold[:0], t.hold[k:]...)
	t.hold = append(t.hold, p[out-k:]...)
	return err
}

// writeJoined writes parts as one Write, through a pooled buffer when
// more than one is not empty and together they are at most joinMax bytes
// (a copy of more costs more than the chunk it saves).
func writeJoined(w io.Writer, parts ...[]byte) error {
	n, total, last := 0, 0, -1
	for i, b := range parts {
		if len(b) > 0 {
			n, total, last = n+1, total+len(b), i
		}
	}
	switch {
	case n == 0:
		return nil
	case n == 1:
		_, err := w.Write(parts[last])
		return err
	case total > joinMax:
		for _, b := range parts {
			if len(b) > 0 {
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return writeConcat(w, parts...)
}

const joinMax = 64 << 10

var errShortGzip = errors.New("gzip: body ends before its trailer")

// finish writes the trailer of the new content: the suffix's CRC is the
// upstream's with the replaced prefix's taken out.
func (t *gzTail) finish(w interface{ Write([]byte) (int, error) }) error {
	if len(t.hold) < 8 {
		return errShortGzip
	}
	crc := binary.LittleEndian.Uint32(t.hold)
	size := binary.LittleEndian.Uint32(t.hold[4:])
	sufLen := size - uint32(t.sp.x) // mod 2^32, as ISIZE is
	// The suffix's CRC is crc xor prefixCRC·x^(8·sufLen), and the new
	// page's newCRC·x^(8·sufLen) xor that: one power, remembered for the
	// next response of the same length (most are).
	var x uint32
	if m := t.x2n.Load(); m != 0 && uint32(m>>32) == sufLen {
		x = uint32(m)
	} else {
		x = x2nModP(int64(sufLen), 3)
		t.x2n.Store(uint64(sufLen)<<32 | uint64(x))
	}
	var out [8]byte
	binary.LittleEndian.PutUint32(out[:], multModP(x, t.sp.newCRC^t.sp.prefixCRC)^crc)
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

// Whole pages (br, zstd). They cannot be spliced, so what is remembered is
// the whole injected page as it went out (reencode.go), keyed on the
// upstream's whole encoded body: a page held to its end is remembered at
// once; a page that streamed (a Flush came, so its size was not checked)
// is remembered when its same bytes come a second time, encoded in the
// background (one encoder at a time per cache) by every step of its ladder
// and brotli 11, the smallest that fits. A page for which nothing fits is
// remembered as such (pass) and goes out as it came, without decoding. While
// the bytes match, the page is held and answered at its end (with a
// Content-Length). Only pages whose encoded body fits in wholeMax (and
// MaxPrefix) are kept.

// wholeMax bounds a remembered br or zstd page's encoded bytes, and those
// held to check a re-encoded page's size.
const wholeMax = 256 << 10

// wholeSeen is what the cache knows of a path's br or zstd pages: the hash
// of the last one that streamed, and the ladder step that fitted last.
type wholeSeen struct {
	sum  uint64
	step int
}

func (c *EncodedCache) stepFor(path, coding string) int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.seen[path+"\x00"+coding].step
}

func (c *EncodedCache) setStep(path, coding string, step int) {
	if c == nil {
		return
	}
	k := path + "\x00" + coding
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.seen[k]; ok || len(c.seen) < EncodedCacheMaxPaths {
		s.step = step
		c.seen[k] = s
	}
}

// wholeEntry is the entry for this page: out in coding sent, or, without
// out, the upstream's bytes as they came.
func (iw *injector) wholeEntry(raw, out []byte, sent string) *encodedEntry {
	e := &encodedEntry{coding: iw.coding, whole: true, key: raw, sent: sent, pass: out == nil,
		brOK: iw.accepts("br"), src: iw.scan.src, nonce: iw.scan.headerNonce, charset: iw.scan.charsetHeader, xml: iw.xml}
	e.sp.out = out
	return e
}

// rememberStreamed counts a second sight of a streamed page's bytes, then
// builds its entry in the background.
func (iw *injector) rememberStreamed() {
	re, c := iw.re, iw.cfg.Encoded
	if c == nil || re.raw == nil || iw.err != nil || iw.result != InjectResultInjected {
		return
	}
	k := iw.path + "\x00" + iw.coding
	sum := maphash.Bytes(c.seed, re.raw)
	c.mu.Lock()
	s, known := c.seen[k]
	again := known && s.sum == sum
	if known || len(c.seen) < EncodedCacheMaxPaths {
		s.sum = sum
		c.seen[k] = s
	}
	c.mu.Unlock()
	if !again {
		return
	}
	steps := append(re.ladder(), reHeavy)
	raw, head, ins, tag := re.raw, re.head, re.ins, re.tag
	e := iw.wholeEntry(raw, nil, "")
	brOK := e.brOK
	c.background(func() {
		page, err := decodeWhole(e.coding, raw, ins, tag)
		if err != nil {
			return
		}
		c.storeBest(iw.path, e, page, head, len(raw)+len(tag), steps, brOK)
	})
}

// buildHeavy tries brotli 11 in the background for a held page no step of
// its ladder fitted; e is its pass entry.
func (c *EncodedCache) buildHeavy(path string, e *encodedEntry, page, head []byte, budget int, brOK bool) {
	if reHeavy.coding != e.coding && !brOK {
		c.store(path, e) // nothing more to try for this client: as it came
		return
	}
	c.background(func() { c.storeBest(path, e, page, head, budget, []reStep{reHeavy}, brOK) })
}

// background runs f if no other background encoder runs.
func (c *EncodedCache) background(f func()) {
	c.mu.Lock()
	busy := c.building
	c.building = true
	c.mu.Unlock()
	if busy {
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
		c.mu.Lock()
		c.building = false
		c.mu.Unlock()
	}()
}

// storeBest encodes page by each of steps (br ones only if brOK or the
// upstream's coding is br) and remembers the smallest within budget, or a
// pass entry.
func (c *EncodedCache) storeBest(path string, e *encodedEntry, page, head []byte, budget int, steps []reStep, brOK bool) {
	var best []byte
	for _, s := range steps {
		if s.coding != e.coding && !(s.coding == "br" && brOK) {
			continue
		}
		if out := encodeStep(s, page, head); out != nil && len(out) <= budget && (best == nil || len(out) < len(best)) {
			best, e.sent = out, s.coding
		}
	}
	e.sp.out, e.pass = best, best == nil
	c.store(path, e)
}

// decodeWhole decodes a recorded page and puts the tag in.
func decodeWhole(coding string, raw []byte, ins int, tag []byte) ([]byte, error) {
	dec, err := newBodyDecoder(coding, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	page, err := io.ReadAll(dec)
	if err != nil || ins > len(page) {
		return nil, errors.Join(errors.New("inject: remembered page"), err)
	}
	return insertTag(page, ins, tag), nil
}

func insertTag(page []byte, ins int, tag []byte) []byte {
	out := make([]byte, 0, len(page)+len(tag))
	return append(append(append(out, page[:ins]...), tag...), page[ins:]...)
}

// wait waits for the background encoders (tests).
func (c *EncodedCache) wait() { c.bg.Wait() }

// encodedAtEOF ends the comparison with a remembered page at the body's
// end: a whole page that matched to its last byte gets the remembered one;
// anything else goes to the decoder.
func (iw *injector) encodedAtEOF() {
	e := iw.ecand
	if !e.whole || iw.echecked != len(e.key) {
		_ = iw.catchUp(nil) // an error: decodeFailed decided
		return
	}
	iw.ecand = nil
	iw.cfg.scanned(true)
	out := e.sp.out
	if e.pass {
		iw.result = InjectResultHeavier
		iw.state = injectPass
		iw.w.WriteHeader(iw.status)
		out = e.key
	} else {
		iw.sendCoding(e.sent)
		iw.writeInjectedHeader(len(out))
		iw.result = InjectResultInjected
		iw.state = injectStream
	}
	if _, err := iw.w.Write(out); err != nil {
		iw.err = fmt.Errorf("inject: write: %w", err)
		iw.result = InjectResultError
	}
}
