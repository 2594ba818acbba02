package intercept

// Script injection (README "Guarantees"): the capture tag is inserted into HTML pages as
// they stream through, and every other byte of the response stays the
// upstream's.
//
// How a response moves through the injector:
//   - The request decides first (Wrap): HEAD, Range, Upgrade and CONNECT get
//     the original writer back, so nothing of ours is on their path.
//   - WriteHeader decides next: only a 200 text/html or application/xhtml+xml
//     response without no-transform, attachment or a coding we cannot undo is
//     held; everything else goes straight to the underlying writer.
//   - A held response keeps its headers and at most MaxPrefix body bytes while
//     the x/net/html tokenizer looks for the insertion point and reads the rest
//     of the head (an existing tag, nonce'd scripts, a meta CSP). The verdict
//     writes the headers, the held bytes with the tag spliced in, and from then
//     on every Write goes straight through.
//   - A gzip, br or zstd body is decoded by a goroutine that only runs while
//     the handler's goroutine waits for it. Until the verdict the encoded
//     bytes are held as well, so a page that is not injected (or does not
//     decode) goes out byte for byte. An injected gzip page is spliced: the
//     tag goes into the upstream's deflate stream and only the part around it
//     is compressed again; br and zstd are held to their end and re-encoded,
//     checked to be no larger than they came (reencode.go).
//
// The files: this one is the writer's state machine; headscan.go reads the
// head to a verdict; verdicts.go remembers verdicts per path; csp.go finds
// the nonce; codec.go decodes a compressed page; reencode.go re-encodes br
// and zstd; gzsplice.go
// splices gzip (deflatebits.go: its codes, bits and CRC algebra);
// encodecache.go remembers splices and re-encoded pages.

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// DefaultMaxPrefix is how much of a page is held while looking for the
// insertion point when InjectConfig.MaxPrefix is not set: enough for the
// real </head> of the heaviest CMS heads (a WordPress head with inline CSS
// and JSON-LD is 50-150 KB), a bound on what one response can hold.
const DefaultMaxPrefix = 512 << 10

// Results passed to InjectConfig.OnResult, besides "skipped_<reason>".
const (
	InjectResultInjected = "injected" // the tag was inserted
	InjectResultAlready  = "already"  // the page carries our tag already
	InjectResultFragment = "fragment" // a partial (htmx, Turbo) or empty document
	InjectResultNoPoint  = "no_point" // no insertion point within MaxPrefix
	InjectResultError    = "error"    // the body did not decode or could not be written
	// The page was br or zstd and no encoding on the request path came out
	// within its bytes plus the tag: sent as it came (reencode.go).
	InjectResultHeavier = "heavier"
)

// Reasons a response is left alone, reported as OnResult("skipped_" + reason).
const (
	skippedConfig      = "skipped_config"       // no script configured
	skippedHead        = "skipped_head"         // HEAD request
	skippedRange       = "skipped_range"        // Range request
	skippedUpgrade     = "skipped_upgrade"      // Upgrade (WebSocket) or CONNECT
	skippedStatus      = "skipped_status"       // not 200 (206, 204, 304, 101, errors...)
	skippedType        = "skipped_type"         // not HTML (images, JSON, text/event-stream...)
	skippedNoTransform = "skipped_no_transform" // Cache-Control: no-transform
	skippedAttachment  = "skipped_attachment"   // a download, not a page
	skippedEncoding    = "skipped_encoding"     // a Content-Encoding we cannot undo
	skippedCharset     = "skipped_charset"      // UTF-16/32: an ASCII tag would corrupt it
	skippedEmpty       = "skipped_empty"        // 200 with no body
	skippedUnwritten   = "skipped_unwritten"    // the handler wrote nothing (or hijacked)
)

// charsetPrescan is how far browsers look for <meta charset> before parsing.
const charsetPrescan = 1024

// InjectConfig is built once per handler.
type InjectConfig struct {
	// ScriptSrc is the script's URL, e.g. "/_leadproxy/c.js"; the tag is
	// <script src="..." defer></script>.
	ScriptSrc string
	// MaxPrefix is how many body bytes may be held while looking for the
	// insertion point; default DefaultMaxPrefix.
	MaxPrefix int
	// OnResult, if set, is called once per wrapped response, from finish:
	// "injected", "already", "fragment", "no_point", "skipped_<reason>" or
	// "error".
	OnResult func(result string)
	// Verdicts, if set, remembers each path's scan so that a page served
	// again with the same head is not tokenized again (see VerdictCache).
	Verdicts *VerdictCache
	// OnScan, if set, is called once per page whose head was read to a
	// verdict: cached is true when the VerdictCache gave it, false when the
	// tokenizer read the head.
	OnScan func(cached bool)
	// Encoded, if set, remembers each path's gzip splice so that the same
	// encoded page served again is not decoded again (see EncodedCache).
	Encoded *EncodedCache
	// FlushHold is how long an injected br or zstd page, held to check its
	// size, waits after a Flush for its end before it streams unchecked;
	// default DefaultFlushHold.
	FlushHold time.Duration
}

// DefaultFlushHold: the page's end usually follows a Flush of Caddy's
// reverse_proxy within a millisecond or two (it flushes after every write
// of a chunked response); an upstream that really paused after the head
// gets it out at most this much later.
const DefaultFlushHold = 20 * time.Millisecond

func (c *InjectConfig) flushHold() time.Duration {
	if c.FlushHold > 0 {
		return c.FlushHold
	}
	return DefaultFlushHold
}

func (c *InjectConfig) report(result string) {
	if c != nil && c.OnResult != nil {
		c.OnResult(result)
	}
}

func (c *InjectConfig) scanned(cached bool) {
	if c.OnScan != nil {
		c.OnScan(cached)
	}
}

// scriptPath is ScriptSrc's path, parsed once per process (there is one
// ScriptSrc per prefix in the config).
func (c *InjectConfig) scriptPath() string {
	if p, ok := scriptPaths.Load(c.ScriptSrc); ok {
		return p.(string)
	}
	p := scriptPath(c.ScriptSrc)
	scriptPaths.Store(c.ScriptSrc, p)
	return p
}

var scriptPaths sync.Map // ScriptSrc → its scriptPath

func (c *InjectConfig) maxPrefix() int {
	if c.MaxPrefix > 0 {
		return c.MaxPrefix
	}
	return DefaultMaxPrefix
}

// Wrap returns the writer to hand to the next handler, and finish, to call
// after it returns: finish sends what is still held, closes a re-bodyEncoder and
// reports the result. Requests that are never injected get w itself back.
func Wrap(w http.ResponseWriter, r *http.Request, cfg *InjectConfig) (http.ResponseWriter, func() error) {
	if reason := requestSkip(r, cfg); reason != "" {
		var once sync.Once
		return w, func() error {
			once.Do(func() { cfg.report(reason) })
			return nil
		}
	}
	iw := &injector{w: w, ctx: r.Context(), cfg: cfg, limit: cfg.maxPrefix(), path: r.URL.Path, req: r.Header}
	return iw, iw.finish
}

func requestSkip(r *http.Request, cfg *InjectConfig) string {
	switch {
	case cfg == nil || cfg.ScriptSrc == "":
		return skippedConfig
	case r.Method == http.MethodHead:
		return skippedHead
	case r.Header.Get("Range") != "":
		return skippedRange
	case r.Method == http.MethodConnect, r.Header.Get("Upgrade") != "",
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade"):
		return skippedUpgrade
	}
	return ""
}

// Writer states.
const (
	injectNew    = iota // no status yet
	injectHold          // an HTML candidate: headers and the first bytes held
	injectStream        // injected (or given up after headers went out): forwarding
	injectPass          // untouched: every call goes to the underlying writer
)

// injector is the http.ResponseWriter handed to the next handler.
type injector struct {
	w     http.ResponseWriter
	ctx   context.Context
	cfg   *InjectConfig
	limit int
	path  string // the VerdictCache key
	req   http.Header

	uncached bool           // the cache missed: the scan runs as without one
	cached   *cachedVerdict // the remembered page this one is compared with
	checked  int            // how many of its bytes matched so far

	state  int
	status int
	xml    bool   // application/xhtml+xml: attributes need values
	coding string // "", "gzip", "br" or "zstd"
	length int64  // the upstream's Content-Length of an identity body, or -1
	scan   pageScan
	// The buffer scan.spans points into (nil without a VerdictCache).
	spanBuf *[]opaqueSpan

	held    []byte  // decoded body bytes held before the verdict
	heldBuf *[]byte // the pooled buffer held lives in
	raw     []byte  // the same, still encoded (only with a coding)
	out     io.Writer
	re      *reencoder // an injected br or zstd page (reencode.go)
	// A br or zstd page's flush timer may write from its own goroutine:
	// while timed, every call from the handler holds mu.
	timed bool
	mu    sync.Mutex
	pump  *decodePump
	gz    *gzRun // an injected gzip page being spliced (codec.go)

	// The EncodedCache (encodecache.go): the remembered page compared with
	// this one, how far, and the copy after its replacement on a hit.
	ecand    *encodedEntry
	echecked int
	tail     *gzTail
	// What the verdict of an injected page depended on.
	scanRead     int
	scanComplete bool

	flushPending bool // a Flush arrived while holding: do it after the verdict
	finished     bool
	result       string
	err          error

	// Most bytes held at once, for tests of the memory bound.
	peakHeld, peakRaw int
}

func (iw *injector) Header() http.Header {
	if iw.timed {
		iw.mu.Lock()
		defer iw.mu.Unlock()
	}
	return iw.w.Header()
}

// Unwrap lets http.ResponseController reach Hijack, deadlines and full duplex
// of the underlying writer.
func (iw *injector) Unwrap() http.ResponseWriter { return iw.w }

func (iw *injector) WriteHeader(code int) {
	if iw.state != injectNew {
		if iw.state == injectPass {
			iw.w.WriteHeader(code) // let the server complain as it would
		}
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		iw.w.WriteHeader(code) // informational: the real status follows
		return
	}
	iw.status = code
	if reason := iw.responseSkip(code); reason != "" {
		iw.result = reason
		iw.state = injectPass
		iw.w.WriteHeader(code)
		return
	}
	iw.state = injectHold
	if iw.coding != "" {
		if iw.lookEncoded(); iw.ecand == nil {
			iw.pump = startPump(iw.ctx, iw.coding, iw.sinkDecoded)
		}
	}
}

// responseSkip says why a response is not injected, or "".
func (iw *injector) responseSkip(code int) string {
	h := iw.w.Header()
	if code != http.StatusOK {
		return skippedStatus
	}
	if httpguts.HeaderValuesContainsToken(h["Cache-Control"], "no-transform") {
		return skippedNoTransform
	}
	ct := h.Get("Content-Type")
	if base, _, _ := strings.Cut(ct, ";"); !isHTMLType(strings.TrimSpace(base)) {
		return skippedType // cheap: most responses stop here
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !isHTMLType(mt) {
		return skippedType
	}
	if cs := strings.ToLower(params["charset"]); strings.HasPrefix(cs, "utf-16") || strings.HasPrefix(cs, "utf-32") {
		return skippedCharset
	}
	if d := strings.ToLower(h.Get("Content-Disposition")); strings.HasPrefix(strings.TrimSpace(d), "attachment") {
		return skippedAttachment
	}
	coding, ok := contentCoding(h.Values("Content-Encoding"))
	if !ok {
		return skippedEncoding
	}
	iw.coding = coding
	iw.timed = coding == "br" || coding == "zstd"
	iw.xml = mt == "application/xhtml+xml"
	iw.length = -1
	if cl := h.Get("Content-Length"); cl != "" && coding == "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			iw.length = n
		}
	}
	iw.scan = newPageScan(iw.cfg.scriptPath(), cspNonce(h.Values("Content-Security-Policy")), params["charset"] != "")
	if iw.cfg.Verdicts != nil {
		iw.spanBuf = spanBufs.Get().(*[]opaqueSpan)
		*iw.spanBuf = (*iw.spanBuf)[:0]
		iw.scan.spans = iw.spanBuf
	}
	return ""
}

// spanBufs hold the opaque spans a scan notes for the VerdictCache.
var spanBufs = sync.Pool{New: func() any { b := make([]opaqueSpan, 0, 256); return &b }}

// releaseSpans gives the scan's span buffer back, once its verdict is
// remembered or the response ends.
func (iw *injector) releaseSpans() {
	if iw.spanBuf != nil && cap(*iw.spanBuf) <= maxOpaqueSpans {
		spanBufs.Put(iw.spanBuf)
	}
	iw.spanBuf, iw.scan.spans = nil, nil
}

func isHTMLType(mt string) bool {
	return strings.EqualFold(mt, "text/html") || strings.EqualFold(mt, "application/xhtml+xml")
}

var errWriteAfterFinish = errors.New("inject: write after finish")

func (iw *injector) Write(p []byte) (int, error) {
	if iw.timed {
		iw.mu.Lock()
		defer iw.mu.Unlock()
	}
	if iw.finished && iw.state != injectPass {
		return 0, errWriteAfterFinish
	}
	if iw.state == injectNew {
		iw.WriteHeader(http.StatusOK)
	}
	if iw.state == injectPass {
		return iw.w.Write(p)
	}
	if iw.err != nil {
		return 0, iw.err
	}
	if iw.coding != "" {
		return iw.writeEncoded(p)
	}
	if iw.state == injectStream {
		return iw.w.Write(p)
	}
	if err := iw.absorb(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadFrom keeps sendfile and friends for responses that pass through.
func (iw *injector) ReadFrom(r io.Reader) (int64, error) {
	if iw.state == injectNew {
		iw.WriteHeader(http.StatusOK)
	}
	if iw.state == injectPass {
		if rf, ok := iw.w.(io.ReaderFrom); ok {
			return rf.ReadFrom(r)
		}
		return io.Copy(injectWriterOnly{iw.w}, r)
	}
	bp := injectBufs.Get().(*[]byte)
	defer injectBufs.Put(bp)
	return io.CopyBuffer(injectWriterOnly{iw}, r, *bp)
}

// injectWriterOnly hides ReadFrom so io.Copy does not loop back into it.
type injectWriterOnly struct{ io.Writer }

var injectBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Flush while holding is postponed until the verdict (at </head> at the
// latest, so a page that flushes its head early still gets it out early),
// except once the head is read and only the nonce is being looked for.
func (iw *injector) Flush() { _ = iw.FlushError() }

func (iw *injector) FlushError() error {
	if iw.timed {
		iw.mu.Lock()
		defer iw.mu.Unlock()
	}
	if iw.state == injectNew {
		iw.WriteHeader(http.StatusOK)
	}
	if iw.state == injectHold {
		if iw.scan.stage != scanNonce {
			iw.flushPending = true
			return nil
		}
		if err := iw.settle(iw.scan.force(), iw.held, false); err != nil {
			return err
		}
		if iw.state == injectPass {
			iw.stopPump()
		}
	}
	return iw.flushOut()
}

func (iw *injector) flushOut() error {
	iw.flushPending = false
	if iw.gz != nil && !iw.gz.stopped {
		if err := iw.gz.g.flushNow(); err != nil {
			return err
		}
	}
	if iw.re != nil {
		if held, err := iw.re.flush(); held || err != nil {
			return err // nothing went out yet: not even the headers
		}
	}
	return http.NewResponseController(iw.w).Flush()
}

// absorb takes decoded body bytes while holding.
func (iw *injector) absorb(p []byte) error {
	for iw.state == injectHold && len(p) > 0 {
		chunk := p[:min(len(p), iw.limit-len(iw.held))]
		p = p[len(chunk):]
		fresh := len(iw.held)
		data := chunk // no copy when the verdict comes within one write
		if fresh > 0 {
			if done, err := iw.cachedTail(chunk); done || err != nil {
				if err != nil {
					return err
				}
				continue
			}
			iw.hold(chunk)
			data = iw.held
		}
		v := iw.scanHeld(data, fresh)
		if v == verdictPending {
			if len(p) == 0 {
				if fresh == 0 {
					iw.hold(chunk)
				}
				iw.peakHeld = max(iw.peakHeld, len(iw.held))
				return nil
			}
			v = iw.scan.force() // MaxPrefix reached: the scan ends at the bound
			iw.cfg.scanned(false)
		}
		iw.peakHeld = max(iw.peakHeld, len(data))
		if err := iw.settle(v, data, false); err != nil {
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	switch {
	case iw.state == injectStream:
		_, err := iw.out.Write(p)
		return err
	case iw.coding == "":
		_, err := iw.w.Write(p)
		return err
	}
	return nil // the encoded bytes went out as they came
}

// cachedTail ends the hold of an identity page whose held bytes and chunk
// are the remembered page's up to its verdict, an insertion into the held
// bytes: the held bytes go out with the tag, then chunk as it is, which is
// never copied (on a WordPress head of 71 KB, a third of what was held).
func (iw *injector) cachedTail(chunk []byte) (bool, error) {
	e := iw.cached
	if e == nil || iw.uncached || iw.coding != "" || e.verdict != verdictInsert ||
		len(e.exact) < e.n || iw.checked != len(iw.held) || len(iw.held)+len(chunk) < e.n {
		return false, nil
	}
	from := len(iw.held)
	if !e.same(chunk[:e.n-from], from) {
		return false, nil // the scan decides, as without this
	}
	scan := e.scanFor(&iw.scan)
	tag := scriptTag(iw.cfg.ScriptSrc, scan.nonce(), iw.xml)
	if scan.insertion(len(tag)) >= from {
		return false, nil
	}
	iw.scan, iw.checked = scan, e.n
	if !e.hit.Load() {
		e.hit.Store(true)
	}
	iw.cfg.scanned(true)
	iw.peakHeld = max(iw.peakHeld, len(iw.held))
	err := iw.injectTag(tag, iw.held, chunk, false)
	iw.releaseHeld()
	if err == nil && iw.flushPending {
		err = iw.flushOut()
	}
	return true, err
}

// scanHeld scans data, the body so far (absorb passes every held byte,
// from the first), through the VerdictCache when there is one.
func (iw *injector) scanHeld(data []byte, fresh int) pageVerdict {
	c := iw.cfg.Verdicts
	if c == nil || iw.uncached {
		v := iw.scan.scan(data, fresh, false)
		if v != verdictPending {
			iw.cfg.scanned(false)
			if c != nil {
				c.remember(iw.path, data, &iw.scan, v)
				iw.releaseSpans()
			}
		}
		return v
	}
	if iw.cached == nil {
		iw.cached = c.entry(iw.path, &iw.scan)
	}
	if iw.cached != nil {
		var found cacheFound
		found, iw.checked = c.match(iw.cached, data, iw.checked)
		switch {
		case found == cacheHit:
			iw.scan = iw.cached.scanFor(&iw.scan)
			iw.cfg.scanned(true)
			return iw.cached.verdict
		case found == cacheMore && len(data) < iw.limit:
			return verdictPending // the same bytes so far: the scan would not have ended yet either
		}
	}
	// Not the remembered page: scan all of it, from the start (the scan has
	// not run yet), and from now on as usual.
	iw.uncached = true
	v := iw.scan.scan(data, 0, false)
	if v != verdictPending {
		iw.cfg.scanned(false)
		c.remember(iw.path, data, &iw.scan, v)
		iw.releaseSpans()
	}
	return v
}

// settle acts on the verdict about data, the whole body so far, and does
// a Flush that was postponed.
func (iw *injector) settle(v pageVerdict, data []byte, atEOF bool) error {
	var err error
	if v == verdictInsert {
		err = iw.inject(data, nil, atEOF)
	} else {
		iw.result = v.result()
		iw.state = injectPass
		iw.w.WriteHeader(iw.status)
		if iw.coding != "" {
			_, err = iw.w.Write(iw.raw) // the decoded copy is dropped
		} else {
			_, err = iw.w.Write(data)
		}
	}
	iw.releaseHeld()
	if err == nil && iw.flushPending {
		err = iw.flushOut()
	}
	return err
}

// inject sends the headers and data with the tag spliced in, then tail,
// the bytes after data (identity pages only).
func (iw *injector) inject(data, tail []byte, atEOF bool) error {
	return iw.injectTag(scriptTag(iw.cfg.ScriptSrc, iw.scan.nonce(), iw.xml), data, tail, atEOF)
}

func (iw *injector) injectTag(tag, data, tail []byte, atEOF bool) error {
	ins := iw.scan.insertion(len(tag))
	iw.scanRead, iw.scanComplete = min(len(data), iw.scan.read), iw.scan.complete || atEOF
	switch iw.coding {
	case "gzip":
		iw.writeInjectedHeader(-1)
		return iw.startSplice(ins, tag) // no re-compression of the page
	case "br", "zstd":
		return iw.startReencode(data, ins, tag) // held to its end: no header yet
	}
	h := iw.w.Header()
	h.Del("Content-Length")
	if atEOF {
		h.Set("Content-Length", strconv.Itoa(len(data)+len(tag)))
	} else if iw.length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(iw.length+int64(len(tag)), 10))
	}
	iw.writeInjectedHeader(-1)
	iw.out = iw.w
	iw.result = InjectResultInjected
	iw.state = injectStream
	// One Write, not three: a writer outside us may decide from the first
	// Write alone (Caddy's encode compresses only when that Write exceeds its
	// minimum_length or a Content-Length says the body will, so a short
	// "<html><head>" would leave a chunked page uncompressed).
	if n := len(data); n > 0 && n == len(iw.held) && &data[0] == &iw.held[0] {
		// The held buffer is ours: the tag goes in place.
		if _, err := iw.out.Write(iw.spliceHeld(ins, tag)); err != nil || len(tail) == 0 {
			return err
		}
		_, err := iw.out.Write(tail)
		return err
	}
	return writeConcat(iw.out, data[:ins], tag, data[ins:])
}

// writeConcat writes parts as one Write, copied into a pooled buffer.
func writeConcat(w io.Writer, parts ...[]byte) error {
	bp := spliceBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, b := range parts {
		buf = append(buf, b...)
	}
	_, err := w.Write(buf)
	if cap(buf) <= pooledBufMax {
		*bp = buf[:0]
		spliceBufs.Put(bp)
	}
	return err
}

// writeInjectedHeader sends the headers of a changed body; an encoded one
// has a Content-Length only when length >= 0.
func (iw *injector) writeInjectedHeader(length int) {
	h := iw.w.Header()
	if iw.coding != "" {
		h.Del("Content-Length")
		if length >= 0 {
			h.Set("Content-Length", strconv.Itoa(length))
		}
	}
	if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("Etag", "W/"+et) // the bytes changed, the meaning did not
	}
	h.Del("Accept-Ranges")
	iw.w.WriteHeader(iw.status)
}

// spliceBufs hold the first write's bytes with the tag spliced in, for one
// Write; heldBufs the bytes held over several writes. Buffers that grew past
// pooledBufMax go back to the garbage collector.
var (
	spliceBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
	heldBufs   = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
)

const pooledBufMax = 2 * DefaultMaxPrefix

// heldRoom is kept free before the held bytes: the tag goes in by moving
// the bytes before the insertion point (a head's first few hundred) into
// it rather than all those after it.
const heldRoom = 256

// hold appends p to the held bytes, in a pooled buffer: iw.held is always
// (*iw.heldBuf)[heldRoom:heldRoom+len(iw.held)].
func (iw *injector) hold(p []byte) {
	if iw.heldBuf == nil {
		iw.heldBuf = heldBufs.Get().(*[]byte)
		iw.held = (*iw.heldBuf)[heldRoom:heldRoom]
	}
	if n := len(iw.held) + len(p); n > cap(iw.held) {
		buf := make([]byte, heldRoom+len(iw.held), 2*(heldRoom+n))
		copy(buf[heldRoom:], iw.held)
		*iw.heldBuf = buf[:0]
		iw.held = buf[heldRoom:]
	}
	iw.held = append(iw.held, p...)
}

// spliceHeld puts tag into the held bytes at ins, in place; the held bytes
// are not to be used after.
func (iw *injector) spliceHeld(ins int, tag []byte) []byte {
	if len(tag) <= heldRoom {
		base := (*iw.heldBuf)[:heldRoom+len(iw.held)]
		start := heldRoom - len(tag)
		copy(base[start:], base[heldRoom:heldRoom+ins])
		copy(base[start+ins:], tag)
		return base[start:]
	}
	n := len(iw.held)
	buf := append(iw.held, tag...)
	copy(buf[ins+len(tag):], buf[ins:n])
	copy(buf[ins:], tag)
	iw.held = buf
	return buf
}

// releaseHeld drops the held bytes (decoded and encoded), returning their
// buffer to the pool: nothing may use them after.
func (iw *injector) releaseHeld() {
	if iw.heldBuf != nil && cap(*iw.heldBuf) <= pooledBufMax {
		heldBufs.Put(iw.heldBuf)
	}
	iw.heldBuf, iw.held, iw.raw = nil, nil, nil
}

func (iw *injector) finish() error {
	if iw.timed {
		iw.mu.Lock()
		defer iw.mu.Unlock()
	}
	if iw.finished {
		return iw.err
	}
	iw.finished = true
	iw.releaseSpans()
	if iw.gz != nil || iw.tail != nil {
		iw.stopPump() // the scan's decoder: the splice has all it read
	}
	if iw.state == injectHold && iw.ecand != nil {
		iw.encodedAtEOF()
	}
	switch iw.state {
	case injectNew:
		iw.result = skippedUnwritten
	case injectHold:
		iw.finishHeld()
	case injectStream:
		if iw.pump != nil {
			if err := iw.pump.close(); err != nil {
				_ = iw.decodeFailed(err)
			}
			iw.pump = nil
		}
	}
	if iw.gz != nil {
		iw.finishSplice()
	}
	if iw.tail != nil {
		iw.finishTail()
	}
	if iw.re != nil && iw.err == nil {
		if err := iw.re.finish(); err != nil {
			iw.err = fmt.Errorf("inject: %s page: %w", iw.coding, err)
			iw.result = InjectResultError
		}
	}
	if iw.re != nil {
		iw.re.stop() // whatever happened, the flush timer writes nothing now
	}
	iw.cfg.report(iw.result)
	return iw.err
}

// finishHeld decides on a body that ended while still held.
func (iw *injector) finishHeld() {
	if iw.coding != "" {
		if len(iw.raw) == 0 {
			iw.stopPump()
		} else if err := iw.pump.close(); err != nil {
			_ = iw.decodeFailed(err)
			return
		}
		iw.pump = nil
		if iw.state != injectHold {
			return // the decoder's last output reached a verdict
		}
	}
	if len(iw.held) == 0 {
		iw.state = injectPass
		iw.result = skippedEmpty
		iw.w.WriteHeader(iw.status)
		if _, err := iw.w.Write(iw.raw); err != nil { // an encoded empty body
			iw.err = fmt.Errorf("inject: write: %w", err)
		}
		iw.raw = nil
		return
	}
	iw.cfg.scanned(false)
	if err := iw.settle(iw.scan.scan(iw.held, len(iw.held), true), iw.held, true); err != nil {
		iw.err = fmt.Errorf("inject: write: %w", err)
		iw.result = InjectResultError
	}
}

// scriptTag is the injected element. XHTML needs the attribute's value.
func scriptTag(src, nonce string, xml bool) []byte {
	b := make([]byte, 0, 48+len(src)+len(nonce))
	b = append(b, `<script src="`...)
	b = append(b, html.EscapeString(src)...)
	b = append(b, `" defer`...)
	if xml {
		b = append(b, `="defer"`...)
	}
	if nonce != "" {
		b = append(b, ` nonce="`...)
		b = append(b, nonce...) // checked to be base64, nothing to escape
		b = append(b, '"')
	}
	return append(b, `></script>`...)
}
