package intercept

// The codec of an encoded page: a gzip, br or zstd body is decoded by a
// goroutine (decodePump) that runs only while the handler's goroutine waits
// for it, and an injected page is encoded again with the same coding.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

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
			if iw.ecand != nil { // the same as the remembered page so far?
				p = p[len(c):]
				if err := iw.matchEncoded(c); err != nil {
					return 0, err
				}
				continue
			}
			iw.raw = append(iw.raw, c...)
			iw.peakRaw = max(iw.peakRaw, len(iw.raw))
		}
		p = p[len(c):]
		if err := iw.feedEncoded(c); err != nil {
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
	if iw.re != nil && iw.re.decodeFailed() {
		return nil // nothing of ours went out: the page went as it came
	}
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
		if iw.gz != nil {
			return nil // the splice decodes for itself
		}
		_, err := iw.out.Write(p)
		return err
	}
	return nil
}

// gzRun is the splice of an injected gzip page (gzsplice.go), on a pump of
// its own: the scan's decoder stops at the verdict.
type gzRun struct {
	pump    *decodePump
	g       *gzSplicer
	stopped bool
	entry   *encodedEntry // the splice, for the EncodedCache
}

// startSplice hands the encoded bytes held so far, and from then on every
// Write, to a gzSplicer, which writes the page with the tag at ins.
func (iw *injector) startSplice(ins int, tag []byte) error {
	iw.result = InjectResultInjected
	iw.state = injectStream
	g := newGzSplicer(nil, iw.w, ins, tag)
	r := &gzRun{g: g}
	if c := iw.cfg.Encoded; c != nil {
		g.onSplice = func(sp *gzSplice) {
			if sp.copyFrom <= int64(iw.limit) {
				r.entry = c.keyed(g.in[:sp.copyFrom], sp) // all input is kept until the splice
			}
		}
	}
	r.pump = startPumpFunc(iw.ctx, func(p *decodePump) error {
		g.src = p
		return g.run()
	})
	iw.gz = r
	return iw.gz.feed(iw.raw)
}

func (r *gzRun) feed(c []byte) error {
	err := r.pump.feed(c)
	if err != nil {
		r.stopped = true
	}
	return err
}

// feedEncoded gives encoded body bytes to the scan's decoder, or to the
// splice once there is one.
func (iw *injector) feedEncoded(c []byte) error {
	if iw.tail != nil {
		return iw.tail.write(iw.w, nil, c)
	}
	if iw.gz == nil {
		if iw.re != nil {
			if err := iw.re.addRaw(c); err != nil {
				return err
			}
		}
		err := iw.pump.feed(c)
		if err != nil && iw.gz != nil && !iw.gz.stopped {
			iw.pump = nil // the verdict came in c: the splice has all of it
			return nil
		}
		return err
	}
	iw.stopPump()
	if iw.gz.stopped {
		return iw.err
	}
	return iw.gz.feed(c) // an error: decodeFailed
}

// finishSplice ends the splice's input and waits for its last bytes.
func (iw *injector) finishSplice() {
	if !iw.gz.stopped {
		iw.gz.stopped = true
		if err := iw.gz.pump.close(); err != nil && iw.err == nil {
			iw.err = fmt.Errorf("inject: splice gzip body: %w", err)
			iw.result = InjectResultError
		}
	}
	if iw.gz.g.failed != nil {
		iw.result = InjectResultError // it went out as it came
	}
	iw.rememberSplice()
}

func (iw *injector) stopPump() {
	if iw.pump != nil {
		_ = iw.pump.close() // its remaining output is dropped: the encoded bytes passed
		iw.pump = nil
	}
}

// bodyEncoder re-encodes an injected body with the upstream's coding.
type bodyEncoder interface {
	io.Writer
	Flush() error
	Close() error
}

// newBodyEncoder encodes with coding at the first step of its ladder
// (reencode.go) or gzip's default; head is the start of the upstream's
// encoded body.
func newBodyEncoder(coding string, w io.Writer, head ...byte) bodyEncoder {
	if steps := reLadders[coding]; steps != nil {
		return newStepEncoder(steps[0], w, head)
	}
	z, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	return z
}

// flushGate passes the first Flush (the head goes out early) and then one
// per flushEvery bytes of page: Caddy's reverse_proxy flushes after every
// write of a chunked response, and each flush of a brotli or zstd stream
// costs bytes (a block ended early, its statistics started again; 17 bytes
// on a 60 KB page at brotli 6).
type flushGate struct {
	bodyEncoder
	since   int
	flushed bool
}

const flushEvery = 256 << 10

func (f *flushGate) Write(p []byte) (int, error) {
	f.since += len(p)
	return f.bodyEncoder.Write(p)
}

func (f *flushGate) Flush() error {
	if f.flushed && f.since < flushEvery {
		return nil
	}
	f.flushed, f.since = true, 0
	return f.bodyEncoder.Flush()
}

// zstdWindow is the window of the zstd frame that head starts, as a power
// of two from 128 KiB to 8 MiB (RFC 8878 §3.1.1.1).
func zstdWindow(head []byte) int {
	const lo, hi = 128 << 10, 8 << 20
	if len(head) < 6 || head[0] != 0x28 || head[1] != 0xb5 || head[2] != 0x2f || head[3] != 0xfd {
		return lo
	}
	fhd := head[4]
	var win uint64
	if fhd&0x20 != 0 { // single segment: the window is the content size
		p := head[5+[]int{0, 1, 2, 4}[fhd&3]:]
		switch fhd >> 6 {
		case 0:
			if len(p) > 0 {
				win = uint64(p[0])
			}
		case 1:
			if len(p) >= 2 {
				win = uint64(p[0]) | uint64(p[1])<<8 + 256
			}
		case 2:
			if len(p) >= 4 {
				win = uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24
			}
		default:
			win = hi
		}
	} else {
		wd := head[5]
		base := uint64(1) << (10 + wd>>3)
		win = base + base/8*uint64(wd&7)
	}
	n := lo
	for n < hi && uint64(n) < win {
		n <<= 1
	}
	return n
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
	return startPumpFunc(ctx, func(p *decodePump) error { return p.decode(coding, sink) })
}

// startPumpFunc runs body on the pump's goroutine; body reads the fed
// chunks from p.
func startPumpFunc(ctx context.Context, body func(p *decodePump) error) *decodePump {
	p := &decodePump{ctx: ctx, in: make(chan []byte), idle: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = body(p)
	}()
	return p
}

func (p *decodePump) decode(coding string, sink func([]byte) error) error {
	dec, err := newBodyDecoder(coding, p)
	if err != nil {
		return err
	}
	defer dec.Close()
	bp := injectBufs.Get().(*[]byte)
	defer injectBufs.Put(bp)
	for {
		n, rerr := dec.Read(*bp)
		if p.abandoned {
			return context.Canceled
		}
		if n > 0 {
			if err := sink((*bp)[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return p.drain()
		}
		if rerr != nil {
			return rerr
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
