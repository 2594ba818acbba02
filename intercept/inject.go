package intercept

// Script injection (SPEC §4): the capture tag is inserted into HTML pages as
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
//     the handler's goroutine waits for it, injected, and re-encoded with the
//     same coding. Until the verdict the encoded bytes are held as well, so a
//     page that is not injected (or does not decode) goes out byte for byte.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	nethtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/http/httpguts"
)

// DefaultMaxPrefix is how much of a page is held while looking for the
// insertion point when InjectConfig.MaxPrefix is not set.
const DefaultMaxPrefix = 64 << 10

// Results passed to InjectConfig.OnResult, besides "skipped_<reason>".
const (
	InjectResultInjected = "injected" // the tag was inserted
	InjectResultAlready  = "already"  // the page carries our tag already
	InjectResultFragment = "fragment" // a partial (htmx, Turbo) or empty document
	InjectResultNoPoint  = "no_point" // no insertion point within MaxPrefix
	InjectResultError    = "error"    // the body did not decode or could not be written
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

func (c *InjectConfig) maxPrefix() int {
	if c.MaxPrefix > 0 {
		return c.MaxPrefix
	}
	return DefaultMaxPrefix
}

// PrepareRequest must be called before the next handler. For a request that
// can be a document navigation (GET without Range, Accept with text/html or
// Sec-Fetch-Dest: document) it deletes Accept-Encoding, so the upstream
// answers with identity bytes; Caddy's encode has chosen its coding from the
// original header already.
func PrepareRequest(r *http.Request) {
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		return
	}
	if acceptsHTML(r.Header) || strings.EqualFold(r.Header.Get("Sec-Fetch-Dest"), "document") {
		r.Header.Del("Accept-Encoding")
	}
}

func acceptsHTML(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		v = strings.ToLower(v)
		if strings.Contains(v, "text/html") || strings.Contains(v, "application/xhtml+xml") {
			return true
		}
	}
	return false
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
	iw := &injector{w: w, ctx: r.Context(), cfg: cfg, limit: cfg.maxPrefix(), path: r.URL.Path}
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

	uncached bool           // the cache missed: the scan runs as without one
	cached   *cachedVerdict // the remembered page this one is compared with
	checked  int            // how many of its bytes matched so far

	state  int
	status int
	xml    bool   // application/xhtml+xml: attributes need values
	coding string // "", "gzip", "br" or "zstd"
	length int64  // the upstream's Content-Length of an identity body, or -1
	scan   pageScan

	held []byte // decoded body bytes held before the verdict
	raw  []byte // the same, still encoded (only with a coding)
	out  io.Writer
	enc  bodyEncoder
	pump *decodePump

	flushPending bool // a Flush arrived while holding: do it after the verdict
	finished     bool
	result       string
	err          error

	// Most bytes held at once, for tests of the memory bound.
	peakHeld, peakRaw int
}

func (iw *injector) Header() http.Header { return iw.w.Header() }

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
		iw.pump = startPump(iw.ctx, iw.coding, iw.sinkDecoded)
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
	iw.xml = mt == "application/xhtml+xml"
	iw.length = -1
	if cl := h.Get("Content-Length"); cl != "" && coding == "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			iw.length = n
		}
	}
	iw.scan = newPageScan(iw.cfg.ScriptSrc, cspNonce(h.Values("Content-Security-Policy")), params["charset"] != "")
	return ""
}

func isHTMLType(mt string) bool {
	return strings.EqualFold(mt, "text/html") || strings.EqualFold(mt, "application/xhtml+xml")
}

// contentCoding maps Content-Encoding to a coding we can undo and redo.
func contentCoding(values []string) (string, bool) {
	coding := ""
	for _, v := range values {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			if c == "" || c == "identity" {
				continue
			}
			if coding != "" {
				return "", false // stacked codings: not worth undoing
			}
			coding = c
		}
	}
	switch coding {
	case "", "br", "zstd":
		return coding, true
	case "gzip", "x-gzip":
		return "gzip", true
	}
	return "", false
}

var errWriteAfterFinish = errors.New("inject: write after finish")

func (iw *injector) Write(p []byte) (int, error) {
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
	if iw.enc != nil {
		if err := iw.enc.Flush(); err != nil {
			return err
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
			iw.held = append(iw.held, chunk...)
			data = iw.held
		}
		v := iw.scanHeld(data, fresh)
		if v == verdictPending {
			if len(p) == 0 {
				if fresh == 0 {
					iw.held = append(iw.held, chunk...)
				}
				iw.peakHeld = max(iw.peakHeld, len(iw.held))
				return nil
			}
			v = iw.scan.force() // MaxPrefix reached
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
			iw.scan = iw.cached.scan
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
	}
	return v
}

// settle acts on the verdict about data, the whole body so far, and does
// a Flush that was postponed.
func (iw *injector) settle(v pageVerdict, data []byte, atEOF bool) error {
	var err error
	if v == verdictInsert {
		err = iw.inject(data, atEOF)
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
	iw.held, iw.raw = nil, nil
	if err == nil && iw.flushPending {
		err = iw.flushOut()
	}
	return err
}

// inject sends the headers and data with the tag spliced in.
func (iw *injector) inject(data []byte, atEOF bool) error {
	tag := scriptTag(iw.cfg.ScriptSrc, iw.scan.nonce(), iw.xml)
	ins := iw.scan.insertion(len(tag))
	h := iw.w.Header()
	h.Del("Content-Length")
	if iw.coding == "" {
		if atEOF {
			h.Set("Content-Length", strconv.Itoa(len(data)+len(tag)))
		} else if iw.length >= 0 {
			h.Set("Content-Length", strconv.FormatInt(iw.length+int64(len(tag)), 10))
		}
	}
	if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("Etag", "W/"+et) // the bytes changed, the meaning did not
	}
	h.Del("Accept-Ranges")
	iw.w.WriteHeader(iw.status)
	iw.out = iw.w
	if iw.coding != "" {
		iw.enc = newBodyEncoder(iw.coding, iw.w)
		iw.out = iw.enc
	}
	iw.result = InjectResultInjected
	iw.state = injectStream
	// One Write, not three: a writer outside us may decide from the first
	// Write alone (Caddy's encode compresses only when that Write exceeds its
	// minimum_length or a Content-Length says the body will, so a short
	// "<html><head>" would leave a chunked page uncompressed).
	bp := spliceBufs.Get().(*[]byte)
	buf := append(append(append((*bp)[:0], data[:ins]...), tag...), data[ins:]...)
	_, err := iw.out.Write(buf)
	if cap(buf) <= 2*DefaultMaxPrefix {
		*bp = buf[:0]
		spliceBufs.Put(bp)
	}
	return err
}

// spliceBufs hold the held bytes with the tag spliced in, for one Write.
var spliceBufs = sync.Pool{New: func() any { b := make([]byte, 0, DefaultMaxPrefix+256); return &b }}

// writeEncoded takes body bytes of a response with a Content-Encoding.
func (iw *injector) writeEncoded(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && iw.state != injectPass {
		c := p
		if iw.state == injectHold {
			room := iw.limit - len(iw.raw)
			if room == 0 {
				// The budget for encoded bytes is spent: decide on what is decoded.
				if err := iw.settle(iw.scan.force(), iw.held, false); err != nil {
					return 0, err
				}
				continue
			}
			c = p[:min(room, len(p))]
			iw.raw = append(iw.raw, c...)
			iw.peakRaw = max(iw.peakRaw, len(iw.raw))
		}
		p = p[len(c):]
		if err := iw.pump.feed(c); err != nil {
			if err := iw.decodeFailed(err); err != nil {
				return 0, err
			}
		}
	}
	if iw.state == injectPass {
		iw.stopPump() // a verdict passed the held encoded bytes on
		if len(p) > 0 {
			if _, err := iw.w.Write(p); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// decodeFailed handles a body that does not decode: untouched while nothing
// of ours went out, otherwise an error that leaves the re-encoded stream
// unterminated, so the client sees a broken transfer and not a short page.
func (iw *injector) decodeFailed(err error) error {
	iw.pump = nil // it has stopped
	if iw.state == injectPass {
		return nil // a verdict already passed the encoded bytes on, as they are
	}
	iw.result = InjectResultError
	if iw.state == injectHold {
		iw.state = injectPass
		iw.w.WriteHeader(iw.status)
		_, werr := iw.w.Write(iw.raw)
		iw.held, iw.raw = nil, nil
		return werr
	}
	iw.err = fmt.Errorf("inject: decode %s body: %w", iw.coding, err)
	return iw.err
}

// sinkDecoded receives the decoder's output, on the pump's goroutine while
// the handler's goroutine waits for it.
func (iw *injector) sinkDecoded(p []byte) error {
	switch iw.state {
	case injectHold:
		return iw.absorb(p)
	case injectStream:
		_, err := iw.out.Write(p)
		return err
	}
	return nil
}

func (iw *injector) stopPump() {
	if iw.pump != nil {
		_ = iw.pump.close() // its remaining output is dropped: the encoded bytes passed
		iw.pump = nil
	}
}

func (iw *injector) finish() error {
	if iw.finished {
		return iw.err
	}
	iw.finished = true
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
	if iw.enc != nil && iw.err == nil {
		if err := iw.enc.Close(); err != nil {
			iw.err = fmt.Errorf("inject: close %s encoder: %w", iw.coding, err)
			iw.result = InjectResultError
		}
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

// cspNonce finds the nonce our script needs under the given policies: the
// first 'nonce-…' of the directive that governs script elements.
func cspNonce(headers []string) string {
	for _, header := range headers {
		for _, policy := range strings.Split(header, ",") {
			if n := policyNonce(policy); n != "" {
				return n
			}
		}
	}
	return ""
}

func policyNonce(policy string) string {
	// script-src-elem governs <script src>, then script-src, then default-src;
	// a repeated directive is ignored, as browsers do.
	order := [...]string{"script-src-elem", "script-src", "default-src"}
	var sources [len(order)][]string
	var seen [len(order)]bool
	for _, d := range strings.Split(policy, ";") {
		fields := strings.Fields(d)
		if len(fields) == 0 {
			continue
		}
		for i, name := range order {
			if !seen[i] && strings.EqualFold(fields[0], name) {
				sources[i], seen[i] = fields[1:], true
			}
		}
	}
	const prefix = "'nonce-"
	for i := range order {
		if !seen[i] {
			continue
		}
		for _, s := range sources[i] {
			if len(s) > len(prefix)+1 && strings.EqualFold(s[:len(prefix)], prefix) && s[len(s)-1] == '\'' {
				if v := s[len(prefix) : len(s)-1]; isBase64Value(v) {
					return v
				}
			}
		}
		return "" // the governing directive has no nonce
	}
	return ""
}

// isBase64Value is CSP's base64-value grammar (base64 or base64url).
func isBase64Value(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '+' || c == '/' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return s != ""
}

// pageVerdict is what the scan concluded about a page.
type pageVerdict int

const (
	verdictPending pageVerdict = iota
	verdictInsert
	verdictFragment
	verdictAlready
	verdictNoPoint
)

func (v pageVerdict) result() string {
	switch v {
	case verdictInsert:
		return InjectResultInjected
	case verdictFragment:
		return InjectResultFragment
	case verdictAlready:
		return InjectResultAlready
	}
	return InjectResultNoPoint
}

// Scan stages.
const (
	scanHead  = iota // looking for the insertion point and reading the head
	scanNonce        // head done; a CSP nonce is known, looking for a script that uses one
)

// pageScan reads the start of a page with the HTML tokenizer. Offsets are
// from the first body byte. The x/net tokenizer cannot resume after running
// out of input, so each scan starts a new one at next: a token boundary
// outside raw text, which is the only state the tokenizer carries between
// tokens. Tokens after next are read again, so noting them is idempotent.
type pageScan struct {
	src           string // our script's path, to spot a tag already there
	headerNonce   string // from the Content-Security-Policy header
	charsetHeader bool   // Content-Type names a charset: meta charset is moot

	next     int
	read     int // the end of the last token read: the verdict depends on no byte after it
	stage    int
	complete bool // the verdict came at the end of the body

	document    bool // a doctype, <html> or <head> was seen
	headEnd     int  // just after <head ...>, or -1
	first       int  // the first element of a headless document, or -1
	already     bool
	scriptNonce bool   // a script with a nonce attribute was seen
	metaNonce   string // from <meta http-equiv=Content-Security-Policy>
	charsetAt   [2]int // start and end of the first <meta charset>, or -1
}

func newPageScan(scriptSrc, nonce string, charsetHeader bool) pageScan {
	return pageScan{
		src:           scriptPath(scriptSrc),
		headerNonce:   nonce,
		charsetHeader: charsetHeader,
		headEnd:       -1,
		first:         -1,
		charsetAt:     [2]int{-1, -1},
	}
}

// pageToken is what the scan keeps of one tokenizer token.
type pageToken struct {
	tt         nethtml.TokenType
	name       atom.Atom
	start, end int
	blank      bool // text of only whitespace (and a BOM)
	rawText    bool // the contents of script, style, title...
	src        string
	nonce      bool
	httpEquiv  string
	content    string
	charset    bool
}

// scan reads data (the body so far; bytes from fresh on are new) and returns
// a verdict, or verdictPending when it needs more.
func (s *pageScan) scan(data []byte, fresh int, atEOF bool) pageVerdict {
	// No token can end without a '<' or '>' arriving, so a chunk without one
	// only waits for the next.
	if !atEOF && !bytes.ContainsAny(data[fresh:], "<>") {
		return verdictPending
	}
	z := nethtml.NewTokenizer(bytes.NewReader(data[s.next:]))
	off := s.next
	var pend pageToken // a text, comment or doctype: final once another token follows
	hasPend, afterRaw := false, false
	for {
		tt := z.Next()
		if tt == nethtml.ErrorToken {
			break
		}
		t := readPageToken(z, tt, off, afterRaw)
		if !atEOF && t.end == len(data) && (tt == nethtml.CommentToken || tt == nethtml.DoctypeToken || tt == nethtml.TextToken) {
			// x/net emits an unterminated comment, doctype or text at the end
			// of its input (a tag only once its '>' came): it may be cut
			// off by the end of the data so far, so wait for more. Then
			// every token the verdict rests on is whole (the VerdictCache
			// depends on it).
			break
		}
		off = t.end
		s.read = max(s.read, off)
		afterRaw = (tt == nethtml.StartTagToken || tt == nethtml.SelfClosingTagToken) && rawTextElement(t.name)
		if hasPend {
			hasPend = false
			if v := s.take(pend); v != verdictPending {
				return v
			}
			s.next = pend.end
		}
		switch tt {
		case nethtml.TextToken, nethtml.CommentToken, nethtml.DoctypeToken:
			pend, hasPend = t, true
			continue
		}
		if v := s.take(t); v != verdictPending {
			return v
		}
		if !afterRaw {
			s.next = t.end
		} else if skipRawText {
			// Nothing in raw text matters to the scan, and x/net reads it a
			// byte at a time: a head's inline styles and scripts can be most
			// of a page. A long one is skipped, going on with a new tokenizer
			// at its end tag, where the old one would have got to (a short
			// one is cheaper to read than a new tokenizer's buffer). One
			// whose end has not arrived waits for more, as it would.
			switch p, st := rawTextEnd(data, t.end, t.name); {
			case st == rawEnded && p-t.end >= rawSkipMin:
				s.next, off, afterRaw = p, p, false
				z = nethtml.NewTokenizer(bytes.NewReader(data[p:]))
			case st == rawOpen && !atEOF:
				return verdictPending
			}
		}
	}
	if !atEOF {
		return verdictPending
	}
	if hasPend {
		if v := s.take(pend); v != verdictPending {
			return v
		}
		off = pend.end
	}
	// The body ended: whatever is left unterminated after off stays after us.
	s.complete = true
	if s.stage == scanHead {
		if !s.document {
			return verdictFragment
		}
		if s.headEnd < 0 && s.first < 0 {
			s.first = off
		}
		if s.already {
			return verdictAlready
		}
	}
	return verdictInsert
}

func readPageToken(z *nethtml.Tokenizer, tt nethtml.TokenType, off int, afterRaw bool) pageToken {
	raw := z.Raw()
	t := pageToken{tt: tt, start: off, end: off + len(raw)}
	switch tt {
	case nethtml.TextToken:
		t.rawText = afterRaw
		t.blank = !afterRaw && blankText(raw)
	case nethtml.StartTagToken, nethtml.SelfClosingTagToken, nethtml.EndTagToken:
		name, more := z.TagName()
		t.name = atom.Lookup(name)
		if tt == nethtml.EndTagToken || (t.name != atom.Script && t.name != atom.Meta) {
			break
		}
		for more {
			var k, v []byte
			k, v, more = z.TagAttr()
			switch string(k) {
			case "src":
				t.src = string(v)
			case "nonce":
				t.nonce = true
			case "http-equiv":
				t.httpEquiv = strings.ToLower(strings.TrimSpace(string(v)))
			case "content":
				t.content = string(v)
			case "charset":
				t.charset = true
			}
		}
	}
	return t
}

// take notes one final token and returns a verdict if it settles the page.
func (s *pageScan) take(t pageToken) pageVerdict {
	if s.stage == scanNonce {
		if t.tt == nethtml.StartTagToken && t.name == atom.Script && t.nonce {
			s.scriptNonce = true
			return verdictInsert
		}
		return verdictPending
	}
	switch t.tt {
	case nethtml.CommentToken:
		return verdictPending
	case nethtml.DoctypeToken:
		s.document = true
		return verdictPending
	case nethtml.TextToken:
		if t.rawText || t.blank {
			return verdictPending
		}
		return s.headOver(t.start)
	case nethtml.EndTagToken:
		if headElement(t.name) {
			return verdictPending // </title>, </script>...
		}
		return s.headOver(t.start) // </head>, </html>, anything else
	}
	switch t.name {
	case atom.Html:
		s.document = true
		return verdictPending
	case atom.Head:
		if s.headEnd < 0 {
			s.headEnd, s.document = t.end, true
		}
		return verdictPending
	}
	if !headElement(t.name) {
		return s.headOver(t.start)
	}
	if !s.document {
		return verdictFragment // a partial starting with <link>, <script>...
	}
	if s.headEnd < 0 && s.first < 0 {
		s.first = t.start
	}
	s.note(t)
	return verdictPending
}

// note records what a head element tells about the page.
func (s *pageScan) note(t pageToken) {
	switch t.name {
	case atom.Script:
		if t.nonce {
			s.scriptNonce = true
		}
		if t.src != "" && scriptPath(t.src) == s.src {
			s.already = true
		}
	case atom.Meta:
		switch {
		case t.httpEquiv == "content-security-policy":
			if s.metaNonce == "" {
				s.metaNonce = cspNonce([]string{t.content})
			}
		case t.charset || (t.httpEquiv == "content-type" && strings.Contains(strings.ToLower(t.content), "charset")):
			if s.charsetAt[0] < 0 {
				s.charsetAt = [2]int{t.start, t.end}
			}
		}
	}
}

// headOver is reached at the first token that cannot be in a head.
func (s *pageScan) headOver(off int) pageVerdict {
	if !s.document {
		return verdictFragment
	}
	if s.headEnd < 0 && s.first < 0 {
		s.first = off
	}
	if s.already {
		return verdictAlready
	}
	if s.knownNonce() != "" && !s.scriptNonce {
		s.stage = scanNonce
		return verdictPending
	}
	return verdictInsert
}

// force gives a verdict on what has been seen, when no more can be held.
func (s *pageScan) force() pageVerdict {
	switch {
	case s.stage == scanNonce:
		return verdictInsert
	case s.headEnd < 0 && s.first < 0:
		return verdictNoPoint
	case s.already:
		return verdictAlready
	}
	return verdictInsert
}

func (s *pageScan) knownNonce() string {
	if s.headerNonce != "" {
		return s.headerNonce
	}
	return s.metaNonce
}

// nonce is the one our tag carries: the policy's, unless the whole page was
// read and no script uses a nonce.
func (s *pageScan) nonce() string {
	if s.scriptNonce || !s.complete {
		return s.knownNonce()
	}
	return ""
}

// insertion is where a tag of tagLen bytes goes: after <head ...>, else
// before the first element. A <meta charset> that the tag would push out of
// the browser's 1024-byte prescan gets the tag after it instead.
func (s *pageScan) insertion(tagLen int) int {
	at := s.headEnd
	if at < 0 {
		at = s.first
	}
	if c := s.charsetAt; !s.charsetHeader && c[0] >= at && c[1] <= charsetPrescan && c[1]+tagLen > charsetPrescan {
		at = c[1]
	}
	return at
}

// skipRawText is off only in the tests that compare the scan with and
// without rawTextEnd.
var skipRawText = true

// rawSkipMin is the shortest raw text skipped with rawTextEnd (a variable
// for the tests that compare skipping everything with skipping nothing).
var rawSkipMin = 2048

// rawTextEnd finds where the raw text that starts at from (after the start
// tag of element a) ends, as x/net's tokenizer does: at the first "</"
// followed by the element's name in any case and by whitespace, "/" or ">"
// (rawEnded, and its offset). rawOpen: that end is not in data yet.
// rawUnknown: plaintext (never ends), or a script whose text holds "<!--"
// (the escaped script states, where "</script>" may not end it); the
// tokenizer reads those itself.
func rawTextEnd(data []byte, from int, a atom.Atom) (int, rawState) {
	if a == atom.Plaintext || from > len(data) {
		return 0, rawUnknown
	}
	name := a.String()
	for i := from; ; {
		j := bytes.Index(data[i:], endTagOpen)
		if j < 0 {
			break
		}
		p := i + j
		k := p + len(endTagOpen) + len(name)
		if k >= len(data) {
			break // "</scr" at the end: the rest decides
		}
		if bytes.EqualFold(data[p+len(endTagOpen):k], []byte(name)) && rawEndDelimiter(data[k]) {
			if a == atom.Script && bytes.Contains(data[from:p], scriptEscape) {
				return 0, rawUnknown
			}
			return p, rawEnded
		}
		i = p + len(endTagOpen)
	}
	if a == atom.Script && bytes.Contains(data[from:], scriptEscape) {
		return 0, rawUnknown
	}
	return 0, rawOpen
}

type rawState int

const (
	rawUnknown rawState = iota
	rawEnded
	rawOpen
)

var endTagOpen, scriptEscape = []byte("</"), []byte("<!--")

func rawEndDelimiter(c byte) bool {
	switch c {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		return true
	}
	return false
}

// headElement reports elements that may come before <head> or inside it.
func headElement(a atom.Atom) bool {
	switch a {
	case atom.Base, atom.Basefont, atom.Bgsound, atom.Link, atom.Meta, atom.Noframes,
		atom.Noscript, atom.Script, atom.Style, atom.Template, atom.Title:
		return true
	}
	return false
}

// rawTextElement reports the start tags after which the tokenizer reads raw text.
func rawTextElement(a atom.Atom) bool {
	switch a {
	case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext,
		atom.Script, atom.Style, atom.Textarea, atom.Title, atom.Xmp:
		return true
	}
	return false
}

func blankText(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r', '\f':
		default:
			return false
		}
	}
	return true
}

// scriptPath is a script URL's path: our tag counts as present whatever its
// host, query or fragment.
func scriptPath(src string) string {
	if u, err := url.Parse(strings.TrimSpace(src)); err == nil {
		return u.Path
	}
	return src
}

// bodyEncoder re-encodes an injected body with the upstream's coding.
type bodyEncoder interface {
	io.Writer
	Flush() error
	Close() error
}

func newBodyEncoder(coding string, w io.Writer) bodyEncoder {
	switch coding {
	case "br":
		return brotli.NewWriterLevel(w, 5)
	case "zstd":
		// Caddy's encode settings: small window, one goroutine.
		z, _ := zstd.NewWriter(w, zstd.WithWindowSize(128<<10), zstd.WithEncoderConcurrency(1),
			zstd.WithZeroFrames(true))
		return z
	}
	z, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	return z
}

func newBodyDecoder(coding string, r io.Reader) (io.ReadCloser, error) {
	switch coding {
	case "br":
		return io.NopCloser(brotli.NewReader(r)), nil
	case "zstd":
		// 8 MiB is the window HTTP zstd allows (RFC 9659); larger is refused.
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(8<<20))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return gzip.NewReader(r)
}

var errTrailingData = errors.New("data after the end of the encoded stream")

// decodePump runs a pull decoder over pushed writes. Its goroutine works
// only between feed (or close) and its return, so the injector's state is
// never touched by two goroutines at once.
type decodePump struct {
	ctx  context.Context
	in   chan []byte   // handler → pump: the next chunk; closed at the end
	idle chan struct{} // pump → handler: chunk consumed, waiting for more
	done chan struct{} // closed when the pump has stopped; err is set then
	err  error

	cur       []byte
	owed      bool // a chunk was taken and its idle not yet sent
	abandoned bool // the request ended without close
}

func startPump(ctx context.Context, coding string, sink func([]byte) error) *decodePump {
	p := &decodePump{ctx: ctx, in: make(chan []byte), idle: make(chan struct{}), done: make(chan struct{})}
	go p.run(coding, sink)
	return p
}

func (p *decodePump) run(coding string, sink func([]byte) error) {
	defer close(p.done)
	dec, err := newBodyDecoder(coding, p)
	if err != nil {
		p.err = err
		return
	}
	defer dec.Close()
	bp := injectBufs.Get().(*[]byte)
	defer injectBufs.Put(bp)
	for {
		n, rerr := dec.Read(*bp)
		if p.abandoned {
			p.err = context.Canceled
			return
		}
		if n > 0 {
			if err := sink((*bp)[:n]); err != nil {
				p.err = err
				return
			}
		}
		if rerr == io.EOF {
			p.err = p.drain()
			return
		}
		if rerr != nil {
			p.err = rerr
			return
		}
	}
}

// drain checks that nothing follows the encoded stream's end.
func (p *decodePump) drain() error {
	var one [1]byte
	for {
		n, err := p.Read(one[:])
		if n > 0 {
			return errTrailingData
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Read is the decoder's input, on the pump's goroutine.
func (p *decodePump) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.owed {
			p.owed = false
			select {
			case p.idle <- struct{}{}:
			case <-p.ctx.Done():
				p.abandoned = true
				return 0, p.ctx.Err()
			}
		}
		select {
		case c, ok := <-p.in:
			if !ok {
				return 0, io.EOF
			}
			p.cur, p.owed = c, true
		case <-p.ctx.Done():
			p.abandoned = true
			return 0, p.ctx.Err()
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// feed hands c to the decoder and waits until all of it is consumed.
func (p *decodePump) feed(c []byte) error {
	if len(c) == 0 {
		return nil
	}
	select {
	case p.in <- c:
	case <-p.done:
		return p.stopped()
	}
	select {
	case <-p.idle:
		return nil
	case <-p.done:
		return p.stopped()
	}
}

func (p *decodePump) stopped() error {
	if p.err == nil {
		return errTrailingData // the stream ended and c was not wanted
	}
	return p.err
}

// close ends the input and waits for the decoder to finish.
func (p *decodePump) close() error {
	close(p.in)
	<-p.done
	return p.err
}
