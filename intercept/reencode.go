package intercept

// An injected br or zstd page is decoded and encoded again: neither can be
// spliced (brotli's static-dictionary references depend on the position,
// zstd blocks carry entropy tables and repeat offsets from block to block).
// Whether the result is larger than what the upstream sent depends on the
// page and on the level the upstream used, and levels do not nest (on the
// bench's repetitive page brotli 6 beats brotli 7 and zstd 1 beats zstd's
// "better"; on a WordPress page the reverse), so no one level is right.
// Instead the page is held, decoded, to its end, within wholeMax encoded
// and wholePageMax decoded bytes (the injector held up to MaxPrefix until
// the verdict anyway), and encoded by the steps of a ladder, cheapest
// first, until one comes out no larger than the upstream's bytes plus the
// tag; that one is sent, with a Content-Length. A client that accepts br
// may get a zstd page as br: on HTML brotli 6 beats zstd at any level (the
// page's Vary names Accept-Encoding). When no step gets there, the page
// goes out as it came, without the tag (result "heavier"), and the
// EncodedCache's background encoder tries brotli 11 for the next request.
//
// A Flush that is not followed by the page's end within FlushHold (20 ms by
// default), or a page past the bounds, ends the hold: from then on the page
// streams, encoded by the step that fitted this path last time, the second
// of its ladder at least; if it comes out larger than it came, the path
// starts one step up next time.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/http/httpguts"
)

// reStep is one encoding of a ladder: a coding and its level (a brotli
// quality or a zstd.EncoderLevel).
type reStep struct {
	coding string
	level  int
}

// The ladders, measured with pages the brotli and zstd commands made at
// every level (TestReencodeNeverLarger, three page shapes): brotli 6 fits
// an upstream's 1-6 on two of them, but on the rows page the command's 6 is
// 51 bytes smaller than ours, where our 7 fits; 7 fits 1-8, 9 fits 9 on all
// three. klauspost's default fits zstd 1-4 and its best zstd 1-6, while
// zstd 7-19 on a WordPress page are within reach of brotli only. Costs on
// the 117 KB WordPress page (one core, a shared machine): zstd default
// 1.3 ms, brotli 6 5 ms, brotli 7 6.5 ms, zstd best and brotli 9 11 ms;
// brotli 11 300 ms, which is why it only runs in the background.
var (
	reLadders = map[string][]reStep{
		"br":   {{"br", 6}, {"br", 7}, {"br", 9}},
		"zstd": {{"zstd", int(zstd.SpeedDefault)}, {"br", 6}, {"zstd", int(zstd.SpeedBestCompression)}, {"br", 9}},
	}
	reHeavy = reStep{"br", brotli.BestCompression}
)

// wholePageMax bounds the decoded page held while it is re-encoded whole.
const wholePageMax = 4 * wholeMax

// reencoder is the writer of an injected br or zstd page's decoded bytes.
type reencoder struct {
	iw       *injector
	ins      int
	tag      []byte
	head     []byte  // the upstream's first encoded bytes (the zstd frame header)
	raw      []byte  // the upstream's encoded body, while it fits wholeMax
	page     []byte  // the decoded page with the tag, while held
	pageBuf  *[]byte // its pooled buffer
	enc      bodyEncoder
	streamed bool // the hold ended early: enc writes to the client
	step     int  // the ladder step it streams with
	sent     countingWriter
	timer    *time.Timer // a Flush came while held (flush)
	done     bool
}

// countingWriter counts what a streamed page sent.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var pageBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128<<10); return &b }}

// startReencode takes the page at the verdict: data, the decoded bytes so
// far, with the tag going in at ins.
func (iw *injector) startReencode(data []byte, ins int, tag []byte) error {
	re := &reencoder{iw: iw, ins: ins, tag: tag, head: bytes.Clone(iw.raw[:min(len(iw.raw), 32)])}
	if len(iw.raw) <= wholeMax {
		re.raw = bytes.Clone(iw.raw)
	}
	re.pageBuf = pageBufs.Get().(*[]byte)
	re.page = append(append(append((*re.pageBuf)[:0], data[:ins]...), tag...), data[ins:]...)
	iw.re, iw.out = re, re
	iw.result = InjectResultInjected
	iw.state = injectStream
	if re.raw == nil || len(re.page) > wholePageMax {
		return re.stream()
	}
	return nil
}

// Write takes decoded bytes after the verdict.
func (re *reencoder) Write(p []byte) (int, error) {
	if re.streamed {
		return re.enc.Write(p)
	}
	re.page = append(re.page, p...)
	if len(re.page) > wholePageMax {
		return len(p), re.stream()
	}
	return len(p), nil
}

// addRaw takes the upstream's encoded bytes after the verdict.
func (re *reencoder) addRaw(c []byte) error {
	if re.raw == nil {
		return nil
	}
	if len(re.raw)+len(c) > wholeMax {
		re.raw = nil // too long to hold, or to remember
		if !re.streamed {
			return re.stream()
		}
		return nil
	}
	re.raw = append(re.raw, c...)
	return nil
}

// ladder is the steps for the upstream's coding this client accepts.
func (re *reencoder) ladder() []reStep {
	var steps []reStep
	for _, s := range reLadders[re.iw.coding] {
		if s.coding == re.iw.coding || re.iw.accepts(s.coding) {
			steps = append(steps, s)
		}
	}
	return steps
}

// stream ends the hold: the headers and the page so far go out, encoded by
// the step that fitted this path last time.
func (re *reencoder) stream() error {
	iw := re.iw
	steps := re.ladder()
	// Unchecked, it starts at the second step at least: on both page
	// shapes the first is only just within an upstream at its level.
	re.step = min(max(iw.cfg.Encoded.stepFor(iw.path, iw.coding), 1), len(steps)-1)
	s := steps[re.step]
	iw.sendCoding(s.coding)
	iw.writeInjectedHeader(-1)
	re.sent.w = iw.w
	re.enc = newStepEncoder(s, &re.sent, re.head)
	re.streamed = true
	_, err := re.enc.Write(re.page)
	re.release()
	return err
}

func (re *reencoder) release() {
	if re.pageBuf != nil && cap(re.page) <= pooledBufMax {
		*re.pageBuf = re.page[:0]
		pageBufs.Put(re.pageBuf)
	}
	re.page, re.pageBuf = nil, nil
}

// flush flushes the encoder of a streamed page (held false). A held page
// waits FlushHold for its end before it streams: Caddy's reverse_proxy
// flushes after every write of a chunked response, so a Flush is most
// often not a pause of the upstream's, and the page's end, with its size
// checked, is a few milliseconds away.
func (re *reencoder) flush() (held bool, err error) {
	if re.streamed {
		return false, re.enc.Flush()
	}
	if re.timer == nil {
		re.timer = time.AfterFunc(re.iw.cfg.flushHold(), re.holdExpired)
	}
	return true, nil
}

// stop: nothing may be written for the page from the timer on.
func (re *reencoder) stop() {
	re.done = true
	if re.timer != nil {
		re.timer.Stop()
	}
}

// holdExpired streams a page still held after FlushHold, and flushes
// it: the start of a page whose upstream paused goes out.
func (re *reencoder) holdExpired() {
	iw := re.iw
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if re.streamed || re.done || iw.err != nil {
		return
	}
	err := re.stream()
	if err == nil {
		err = re.enc.Flush()
	}
	if err == nil {
		err = http.NewResponseController(iw.w).Flush()
	}
	if err != nil {
		iw.err = fmt.Errorf("inject: %s page: %w", iw.coding, err)
		iw.result = InjectResultError
	}
}

// finish sends a held page: the first step of the ladder that fits, or
// the upstream's bytes as they came.
func (re *reencoder) finish() error {
	iw := re.iw
	re.stop()
	if re.streamed {
		if err := re.enc.Close(); err != nil {
			return err
		}
		if re.sent.n > int64(len(re.raw)+len(re.tag)) && re.raw != nil {
			// Larger than it came: this path starts one step up next time.
			iw.cfg.Encoded.setStep(iw.path, iw.coding, min(re.step+1, len(re.ladder())-1))
		}
		iw.rememberStreamed()
		return nil
	}
	defer re.release()
	budget := len(re.raw) + len(re.tag)
	steps := re.ladder()
	c := iw.cfg.Encoded
	for i := min(c.stepFor(iw.path, iw.coding), len(steps)-1); i < len(steps); i++ {
		out := encodeStep(steps[i], re.page, re.head)
		if out == nil || len(out) > budget {
			continue
		}
		c.setStep(iw.path, iw.coding, i)
		iw.sendCoding(steps[i].coding)
		iw.writeInjectedHeader(len(out))
		if _, err := iw.w.Write(out); err != nil {
			return err
		}
		c.store(iw.path, iw.wholeEntry(re.raw, out, steps[i].coding))
		return nil
	}
	c.setStep(iw.path, iw.coding, len(steps)-1)
	// No step fits: the page as it came, and the background tries harder.
	iw.result = InjectResultHeavier
	iw.w.WriteHeader(iw.status)
	if _, err := iw.w.Write(re.raw); err != nil {
		return err
	}
	if c != nil {
		page := re.page
		re.page, re.pageBuf = nil, nil // the background's now
		c.buildHeavy(iw.path, iw.wholeEntry(re.raw, nil, ""), page, re.head, budget, iw.accepts(reHeavy.coding))
	}
	return nil
}

// decodeFailed: while the page is held, it goes out as it came.
func (re *reencoder) decodeFailed() bool {
	iw := re.iw
	if re.streamed || re.raw == nil {
		return false
	}
	re.stop()
	re.release()
	iw.state = injectPass
	iw.w.WriteHeader(iw.status)
	_, _ = iw.w.Write(re.raw)
	iw.re, iw.out = nil, nil
	return true
}

// encodeStep encodes page whole by s; nil if the encoder failed.
func encodeStep(s reStep, page, head []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(page) / 8)
	w := newStepEncoder(s, &b, head)
	if _, err := w.Write(page); err != nil || w.Close() != nil {
		return nil
	}
	return b.Bytes()
}

// sendCoding sets the Content-Encoding of a page sent in another coding
// than the upstream's, and makes sure caches key it on Accept-Encoding.
func (iw *injector) sendCoding(coding string) {
	if coding == iw.coding {
		return
	}
	h := iw.w.Header()
	h.Set("Content-Encoding", coding)
	if !httpguts.HeaderValuesContainsToken(h["Vary"], "Accept-Encoding") && !httpguts.HeaderValuesContainsToken(h["Vary"], "*") {
		h.Add("Vary", "Accept-Encoding")
	}
}

// accepts says whether the request's Accept-Encoding takes coding.
func (iw *injector) accepts(coding string) bool {
	if iw.req == nil {
		return false
	}
	return acceptsCoding(iw.req.Values("Accept-Encoding"), coding)
}

// acceptsCoding reads Accept-Encoding values (RFC 9110 §12.5.3): coding or
// "*" with a q above 0; coding's own entry wins over "*".
func acceptsCoding(values []string, coding string) bool {
	star := false
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(e, ";")
			name = strings.TrimSpace(name)
			ok := true
			for _, p := range strings.Split(params, ";") {
				k, val, found := strings.Cut(strings.TrimSpace(p), "=")
				if found && strings.EqualFold(strings.TrimSpace(k), "q") {
					q, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					ok = err == nil && q > 0
				}
			}
			switch {
			case strings.EqualFold(name, coding):
				return ok
			case name == "*":
				star = ok
			}
		}
	}
	return star
}

// newStepEncoder encodes into w by s; head is the start of the upstream's
// encoded body (a zstd frame's window is kept, within 128 KiB and 8 MiB).
// A zstd frame goes without its optional content checksum (RFC 8878
// §3.1.1): 4 bytes of the tag's budget, and TCP and TLS check the bytes.
func newStepEncoder(s reStep, w io.Writer, head []byte) bodyEncoder {
	if s.coding == "br" {
		return &flushGate{bodyEncoder: brotli.NewWriterLevel(w, s.level)}
	}
	z, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevel(s.level)), zstd.WithWindowSize(zstdWindow(head)),
		zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
	return &flushGate{bodyEncoder: z}
}
