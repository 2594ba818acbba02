package intercept

// Splicing the tag into a gzip page without compressing the page again.
//
// A deflate stream is a sequence of tokens (literals and back-references of
// up to 258 bytes, at most 32 KiB back) in blocks, each with its Huffman
// tables in its header. Inserting the tag at decoded offset ins shifts
// everything after it, which breaks only the back-references that start at
// or after ins and reach before it; none can start at ins+32 KiB or later.
// So the splicer decodes the member while keeping every token's place,
// picks X, the first token boundary at or after ins and after the end of the
// last such reference (or the start of a block that comes within 32 KiB
// after that: no block header is then sent twice), and writes:
//
//   - the upstream's gzip header, byte for byte;
//   - decoded [0, X) with the tag at ins, deflated at the best level (Go's,
//     or klauspost's when that is smaller), in non-final blocks, the sync
//     flush's empty stored block that ends them dropped;
//   - empty blocks that bring the bit position to the original's at X, mod 8;
//   - the header of the original block that holds X (its Huffman tables),
//     unless X is a block's start;
//   - the original bits from X on, unchanged: the first partial byte through
//     the bit writer, then a byte copy to the end of the member;
//   - the trailer: CRC-32 and size of the new content, from the prefix's CRC
//     and the suffix's by crc32Combine.
//
// The rest of the member is still decoded (and the result discarded): that
// checks the upstream's CRC and size, and finds the member's end, so a
// second member is copied as it is behind the patched first one. Decoding
// costs a fraction of deflating; only the prefix is deflated.
//
// Before anything of ours went out, a stream that does not decode (or whose
// insertion point lies past the first member) is written as it came and the
// rest copied: the page goes out untouched and the result is "error".
//
// Nothing goes out before X, except at a Flush where the upstream's own
// stream flushed (flushNow): then what is decoded so far is deflated and
// sent, and the prefix continues in the same deflate stream.

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"sync"

	kflate "github.com/klauspost/compress/flate"
)

var (
	errGzipHeader  = errors.New("gzip: invalid header")
	errDeflateData = errors.New("gzip: invalid deflate data")
	errGzipTrailer = errors.New("gzip: checksum or size mismatch")
	errPastMember  = errors.New("gzip: insertion point past the first member")
)

const (
	deflateWindow = 32 << 10
	fastBits      = 10
)

// blockHead is where a deflate block's header lies and, for a dynamic
// block, its bits (from the byte holding its first bit).
type blockHead struct {
	final bool
	typ   int   // 0 stored, 1 fixed, 2 dynamic
	start int64 // bit offset of the header in the stream
	nbits int   // header length in bits (dynamic)
	bytes []byte
}

// gzSplicer runs on a decodePump's goroutine: src is the upstream's encoded
// body, w the client's side.
type gzSplicer struct {
	src io.Reader
	w   io.Writer
	ins int64
	tag []byte

	in     []byte // input from stream offset base on
	base   int64
	bit    int64 // next bit to read
	srcEOF bool
	keep   int64 // input bytes from here on are kept
	fwd    int64 // next input byte to copy to w; -1 while not copying
	hdrLen int   // the gzip header's length

	out     []byte // decoded bytes from outBase on: all until the splice, then a window
	outBase int64
	crcPos  int64  // decoded bytes [X, crcPos) are in sufCRC
	sufCRC  uint32 // CRC-32 of the decoded suffix [X, crcPos)

	lit, dist huffman
	lens      [320]uint8
	blk       blockHead

	need    int64 // X so far: a token boundary, or -1
	needBit int64
	needBlk blockHead // the block holding X; typ -1 when X is a block's start
	spliced bool
	ended   bool // the member's last block is decoded
	settled bool // need is final: no later token can reach before ins

	prefixCRC, newCRC uint32 // of decoded [0, X) as it came and with the tag
	x                 int64

	wrote   bool // something of ours went out
	members int
	syncBit int64 // where the last empty stored block ended (an upstream's flush)
	walk    bool  // blockStarts: only the block structure matters

	// A Flush honoured before X (the upstream flushed there): the prefix
	// is deflated as it comes, up to written.
	sw      *flate.Writer
	swBuf   bufWriter
	written int64
	tagIn   bool
	pending []byte // the first member's new trailer, until what follows is known

	failed error // the page went out untouched because of this
	// splice, when set, receives what the splice wrote before the copy.
	onSplice func(s *gzSplice)
}

// gzSplice is what the splice of one page made: enough to splice the same
// encoded bytes again without decoding them (encodecache.go).
type gzSplice struct {
	copyFrom  int64  // input bytes before this one are replaced by out
	out       []byte // what replaces them
	x         int64  // decoded length of the replaced prefix
	prefixCRC uint32
	newCRC    uint32
	tagLen    int
}

func newGzSplicer(src io.Reader, w io.Writer, ins int, tag []byte) *gzSplicer {
	return &gzSplicer{src: src, w: w, ins: int64(ins), tag: tag, fwd: -1, need: -1, syncBit: -1}
}

// run splices the stream; it returns when the input ends.
func (g *gzSplicer) run() error {
	err := g.member()
	if err != nil && !g.wrote {
		return g.untouched(err)
	}
	if err != nil {
		return err
	}
	// Later members are checked as they are copied: garbage after the
	// first is an error, as for a decoder.
	for {
		if err := g.fill(8); err != nil {
			return err
		}
		if g.bit >= g.inEnd()*8 {
			if err := g.writePending(); err != nil {
				return err
			}
			return g.forward(g.inEnd())
		}
		g.out, g.outBase, g.crcPos, g.sufCRC, g.x, g.prefixCRC = g.out[:0], 0, 0, 0, 0, 0
		if err := g.header(); err != nil {
			return err
		}
		if err := g.writePending(); err != nil {
			return err
		}
		if err := g.blocks(); err != nil {
			return err
		}
		if err := g.trailer(false); err != nil {
			return err
		}
	}
}

func (g *gzSplicer) writePending() error {
	if g.pending == nil {
		return nil
	}
	_, err := g.w.Write(g.pending)
	g.pending = nil
	return err
}

// untouched writes the input as it came, and the rest of it.
func (g *gzSplicer) untouched(cause error) error {
	if errors.Is(cause, errReadFailed) {
		return cause
	}
	g.failed = cause
	g.fwd = g.base // everything was kept
	return g.copyRest()
}

var errReadFailed = errors.New("gzip splice: read failed")

// copyRest copies every input byte from fwd to the end.
func (g *gzSplicer) copyRest() error {
	for {
		if err := g.forward(int64(len(g.in)) + g.base); err != nil {
			return err
		}
		if g.srcEOF {
			return nil
		}
		if err := g.read(); err != nil {
			return err
		}
	}
}

// forward writes input bytes [fwd, to).
func (g *gzSplicer) forward(to int64) error {
	if g.fwd < 0 || to <= g.fwd || g.pending != nil {
		return nil
	}
	_, err := g.w.Write(g.in[g.fwd-g.base : to-g.base])
	g.fwd = to
	return err
}

// read appends input, first dropping what is no longer needed.
func (g *gzSplicer) read() error {
	if g.fwd >= 0 {
		if err := g.forward(min(g.bit>>3, g.base+int64(len(g.in)))); err != nil {
			return err
		}
	}
	drop := min(g.bit>>3, g.keep)
	if g.fwd >= 0 {
		drop = min(drop, g.fwd)
	}
	if k := drop - g.base; k > 0 && k >= int64(len(g.in))/2 {
		n := copy(g.in, g.in[k:])
		g.in = g.in[:n]
		g.base = drop
	}
	if cap(g.in)-len(g.in) < 4<<10 {
		g.in = append(g.in, make([]byte, max(16<<10, len(g.in)))...)[:len(g.in)]
	}
	n, err := g.src.Read(g.in[len(g.in):cap(g.in)])
	g.in = g.in[:len(g.in)+n]
	if err == io.EOF {
		g.srcEOF = true
		return nil
	}
	if err != nil {
		return errors.Join(errReadFailed, err)
	}
	return nil
}

func (g *gzSplicer) inEnd() int64 { return g.base + int64(len(g.in)) }

// fill makes n more bits available unless the input ends first.
func (g *gzSplicer) fill(n int) error {
	for g.bit+int64(n) > g.inEnd()*8 && !g.srcEOF {
		if err := g.read(); err != nil {
			return err
		}
	}
	return nil
}

// peek returns the next bits (57 of them, zeros past the input's end).
func (g *gzSplicer) peek() uint64 {
	i := int(g.bit>>3 - g.base)
	var v uint64
	if i+8 <= len(g.in) {
		v = binary.LittleEndian.Uint64(g.in[i:])
	} else {
		for k := 0; i+k < len(g.in); k++ {
			v |= uint64(g.in[i+k]) << (8 * k)
		}
	}
	return v >> (g.bit & 7)
}

func (g *gzSplicer) bits(n int) (uint64, error) {
	if err := g.fill(n); err != nil {
		return 0, err
	}
	v := g.peek() & (1<<n - 1)
	g.bit += int64(n)
	if g.bit > g.inEnd()*8 {
		return 0, io.ErrUnexpectedEOF
	}
	return v, nil
}

func (g *gzSplicer) symbol(h *huffman) (int, error) {
	if err := g.fill(15); err != nil {
		return 0, err
	}
	v := g.peek()
	if e := h.fast[v&(1<<fastBits-1)]; e != 0 {
		g.bit += int64(e & 15)
		if g.bit > g.inEnd()*8 {
			return 0, io.ErrUnexpectedEOF
		}
		return int(e >> 4), nil
	}
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		code |= int(v & 1)
		v >>= 1
		count := int(h.count[l])
		if code-count < first {
			g.bit += int64(l)
			if g.bit > g.inEnd()*8 {
				return 0, io.ErrUnexpectedEOF
			}
			return int(h.sym[index+code-first]), nil
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, errDeflateData
}

func (g *gzSplicer) byteAt() (byte, error) {
	v, err := g.bits(8)
	return byte(v), err
}

// header reads the gzip member header (RFC 1952).
func (g *gzSplicer) header() error {
	start := g.bit >> 3
	old := g.keep
	g.keep = min(old, start) // for FHCRC
	defer func() { g.keep = old }()
	g.members++
	var h [10]byte
	for i := range h {
		b, err := g.byteAt()
		if err != nil {
			return err
		}
		h[i] = b
	}
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3]&0xe0 != 0 {
		return errGzipHeader
	}
	flg := h[3]
	if flg&4 != 0 { // FEXTRA
		lo, err := g.bits(16)
		if err != nil {
			return err
		}
		for i := 0; i < int(lo); i++ {
			if _, err := g.byteAt(); err != nil {
				return err
			}
		}
	}
	for _, f := range []byte{8, 16} { // FNAME, FCOMMENT: zero-terminated
		if flg&f == 0 {
			continue
		}
		for {
			b, err := g.byteAt()
			if err != nil {
				return err
			}
			if b == 0 {
				break
			}
		}
	}
	if flg&2 != 0 { // FHCRC: the CRC-32's low half of the header, kept as it is
		want, err := g.bits(16)
		if err != nil {
			return err
		}
		hdr := g.in[start-g.base : g.bit>>3-g.base-2]
		if uint64(crc32.ChecksumIEEE(hdr)&0xffff) != want {
			return errGzipHeader
		}
	}
	if g.hdrLen == 0 {
		g.hdrLen = int(g.bit >> 3) // the first member's
	}
	return nil
}

// blocks decodes a member's deflate blocks, to the last.
func (g *gzSplicer) blocks() error {
	for {
		final, err := g.block()
		if err != nil || final {
			return err
		}
	}
}

// member decodes the first member and splices it.
func (g *gzSplicer) member() error {
	if err := g.header(); err != nil {
		return err
	}
	if err := g.blocks(); err != nil {
		return err
	}
	g.ended = true
	if !g.spliced {
		if g.need < 0 {
			if g.pos() < g.ins {
				return errPastMember
			}
			g.need, g.needBit, g.needBlk.typ = g.pos(), g.bit, -1 // the whole page is re-encoded
		}
		if err := g.splice(); err != nil {
			return err
		}
	}
	return g.trailer(true)
}

// boundary is called between tokens, with the decoded offset there.
func (g *gzSplicer) boundary(pos int64) error {
	if g.spliced || pos < g.ins {
		return nil
	}
	if g.need < 0 {
		g.setNeed(pos, g.bit, &g.blk)
	}
	if pos >= g.ins+deflateWindow {
		// No token from here on can reach before ins: X is known. Splicing
		// at the next block's start spares re-sending a block header, when
		// it comes soon enough.
		g.settled = true
		if pos >= g.need+spliceReach {
			return g.splice()
		}
	}
	return nil
}

// spliceReach is how much further than X the splice may wait for a block
// start (more to re-encode, but no block header sent twice).
const spliceReach = 32 << 10

func (g *gzSplicer) setNeed(pos, bit int64, b *blockHead) {
	g.need, g.needBit = pos, bit
	if b == nil {
		g.needBlk.typ = -1
		return
	}
	g.needBlk.final, g.needBlk.typ, g.needBlk.start, g.needBlk.nbits = b.final, b.typ, b.start, b.nbits
	g.needBlk.bytes = append(g.needBlk.bytes[:0], b.bytes...)
}

func (g *gzSplicer) pos() int64 { return g.outBase + int64(len(g.out)) }

// block decodes one deflate block.
func (g *gzSplicer) block() (bool, error) {
	start := g.bit
	if !g.spliced && g.pos() >= g.ins {
		g.setNeed(g.pos(), start, nil) // a block's start: nothing to re-emit
		if g.settled || g.pos() >= g.ins+deflateWindow {
			if err := g.splice(); err != nil {
				return false, err
			}
		}
	}
	hb, err := g.bits(3)
	if err != nil {
		return false, err
	}
	g.blk.final, g.blk.typ, g.blk.start = hb&1 == 1, int(hb>>1), start
	switch g.blk.typ {
	case 0:
		return g.blk.final, g.stored()
	case 1:
		return g.blk.final, g.codes(fixedLit, fixedDist)
	case 2:
		if err := g.dynamic(); err != nil {
			return false, err
		}
		return g.blk.final, g.codes(&g.lit, &g.dist)
	}
	return false, errDeflateData
}

func (g *gzSplicer) stored() error {
	g.bit = (g.bit + 7) &^ 7
	n, err := g.bits(16)
	if err != nil {
		return err
	}
	nn, err := g.bits(16)
	if err != nil {
		return err
	}
	if n != ^nn&0xffff {
		return errDeflateData
	}
	if n == 0 {
		g.syncBit = g.bit
	}
	for n > 0 {
		if err := g.fill(8); err != nil {
			return err
		}
		i := g.bit>>3 - g.base
		k := min(int64(n), int64(len(g.in))-i)
		if k <= 0 {
			return io.ErrUnexpectedEOF
		}
		g.out = append(g.out, g.in[i:i+k]...)
		g.bit += 8 * k
		n -= uint64(k)
		if err := g.slide(); err != nil {
			return err
		}
	}
	return nil
}

func (g *gzSplicer) dynamic() error {
	old := g.keep
	g.keep = min(old, g.blk.start>>3) // the header's bits are copied once it is read
	defer func() { g.keep = old }()
	v, err := g.bits(14)
	if err != nil {
		return err
	}
	nlen, ndist, ncode := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlen > 286 || ndist > 30 {
		return errDeflateData
	}
	var cl [19]uint8
	for i := 0; i < ncode; i++ {
		b, err := g.bits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(b)
	}
	var clh huffman
	if !clh.init(cl[:], huffCodeLen) {
		return errDeflateData
	}
	lens := g.lens[:nlen+ndist]
	for i := 0; i < len(lens); {
		s, err := g.symbol(&clh)
		if err != nil {
			return err
		}
		if s < 16 {
			lens[i] = uint8(s)
			i++
			continue
		}
		var rep int
		var val uint8
		switch s {
		case 16:
			if i == 0 {
				return errDeflateData
			}
			val = lens[i-1]
			b, err := g.bits(2)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		case 17:
			b, err := g.bits(3)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		default:
			b, err := g.bits(7)
			if err != nil {
				return err
			}
			rep = 11 + int(b)
		}
		if i+rep > len(lens) {
			return errDeflateData
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 || !g.lit.init(lens[:nlen], huffLit) || !g.dist.init(lens[nlen:], huffDist) {
		return errDeflateData
	}
	g.blk.nbits = int(g.bit - g.blk.start)
	from := g.blk.start>>3 - g.base
	g.blk.bytes = append(g.blk.bytes[:0], g.in[from:(g.bit+7)>>3-g.base]...)
	return nil
}

// codes decodes a Huffman block's tokens.
func (g *gzSplicer) codes(lit, dist *huffman) error {
	for {
		pos := g.pos()
		if err := g.boundary(pos); err != nil {
			return err
		}
		s, err := g.symbol(lit)
		if err != nil {
			return err
		}
		if s < 256 {
			g.out = append(g.out, byte(s))
			continue
		}
		if s == 256 {
			return nil
		}
		s -= 257
		if s >= 29 {
			return errDeflateData
		}
		e, err := g.bits(int(lenExtra[s]))
		if err != nil {
			return err
		}
		n := int(lenBase[s]) + int(e)
		ds, err := g.symbol(dist)
		if err != nil {
			return err
		}
		if ds >= 30 {
			return errDeflateData
		}
		de, err := g.bits(int(dstExtra[ds]))
		if err != nil {
			return err
		}
		d := int(dstBase[ds]) + int(de)
		from := len(g.out) - d
		switch {
		case int64(d) > pos || d > len(g.out):
			if !g.walk {
				return errDeflateData
			}
			g.out = append(g.out, make([]byte, n)...) // before the part walked
		case d >= n:
			g.out = append(g.out, g.out[from:from+n]...)
		default:
			for i := 0; i < n; i++ {
				g.out = append(g.out, g.out[from+i])
			}
		}
		if !g.spliced && pos >= g.ins && pos-int64(d) < g.ins {
			g.setNeed(pos+int64(n), g.bit, &g.blk) // a reference across ins
		}
		if err := g.slide(); err != nil {
			return err
		}
	}
}

// slide keeps the decoded window bounded once spliced.
func (g *gzSplicer) slide() error {
	if !g.spliced || len(g.out) < 4*deflateWindow {
		return nil
	}
	g.sumSuffix()
	k := len(g.out) - deflateWindow
	n := copy(g.out, g.out[k:])
	g.out = g.out[:n]
	g.outBase += int64(k)
	return nil
}

// sumSuffix adds the decoded bytes up to now to the suffix's CRC.
func (g *gzSplicer) sumSuffix() {
	g.sufCRC = crc32.Update(g.sufCRC, crc32.IEEETable, g.out[g.crcPos-g.outBase:])
	g.crcPos = g.pos()
}

// splice writes the header, the re-encoded prefix [0, X) with the tag, and
// the bits that bring the stream to the original's at X; from then on the
// input is copied.
func (g *gzSplicer) splice() error {
	g.spliced = true
	x := g.need
	g.x = x
	prefix := g.out[:x] // outBase is 0 until now
	g.prefixCRC = crc32.ChecksumIEEE(prefix)
	g.newCRC = crc32.Update(crc32.Update(crc32.ChecksumIEEE(prefix[:g.ins]), crc32.IEEETable, g.tag), crc32.IEEETable, prefix[g.ins:])
	g.crcPos = x
	whole := g.ended && x == g.pos() && g.needBit == g.bit
	if whole {
		g.fwd = (g.bit + 7) >> 3 // the trailer
	} else {
		g.fwd = (g.needBit + 7) >> 3
	}
	g.keep = math.MaxInt64 // what is copied is dropped
	// The upstream spent fwd bytes on what is replaced. When one library's
	// best level takes much more than that plus the tag, the other's is
	// tried too and the smaller kept.
	if g.sw != nil {
		// Part of the prefix went out at a flush: the rest follows in the
		// same deflate stream.
		g.feedPrefix(x)
		_ = g.sw.Flush()
		stdWriters.Put(g.sw)
		g.sw = nil
		bits := g.deflated(g.swBuf.b, nil, whole)
		out := g.finishReplacement(bits, whole)
		g.wrote = true
		_, err := g.w.Write(out)
		return err
	}
	out := g.replacement(prefix, whole, stdFlate)
	if len(out) > int(g.fwd)+len(g.tag)*3/4 {
		if alt := g.replacement(prefix, whole, klauspostFlate); len(alt) < len(out) {
			out = alt
		}
	}
	g.wrote = true
	if g.onSplice != nil {
		g.onSplice(&gzSplice{copyFrom: g.fwd, out: out, x: x, prefixCRC: g.prefixCRC, newCRC: g.newCRC, tagLen: len(g.tag)})
	}
	_, err := g.w.Write(out)
	return err
}

// replacement is what replaces the input before fwd: the header, the
// prefix deflated by lib, then (not whole) the padding, the header of the
// block holding X and X's partial byte.
func (g *gzSplicer) replacement(prefix []byte, whole bool, lib int) []byte {
	return g.finishReplacement(g.encodePrefix(prefix, whole, lib), whole)
}

func (g *gzSplicer) finishReplacement(bits bitWriter, whole bool) []byte {
	if whole {
		return bits.out
	}
	h := 0
	switch g.needBlk.typ {
	case 1:
		h = 3
	case 2:
		h = g.needBlk.nbits
	}
	bits.pad(int((g.needBit - int64(h) - int64(bits.n)) & 7))
	switch g.needBlk.typ {
	case 1:
		bits.put(b2u(g.needBlk.final), 1)
		bits.put(1, 2)
	case 2:
		bits.copyBits(g.needBlk.bytes, int(g.needBlk.start&7), g.needBlk.nbits)
	}
	if r := int(g.needBit & 7); r != 0 {
		b := g.in[g.needBit>>3-g.base]
		bits.put(uint64(b>>r), 8-r)
	}
	if bits.n != 0 {
		panic("gzsplice: unaligned")
	}
	return bits.out
}

const (
	stdFlate = iota
	klauspostFlate
)

var stdWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestCompression)
	return w
}}

var klauspostWriters = sync.Pool{New: func() any {
	w, _ := kflate.NewWriter(nil, kflate.BestCompression)
	return w
}}

// encodePrefix deflates the prefix with the tag, after the gzip header, and
// returns the bits so far. Not whole: the blocks are not final and the bit
// writer stands where the last one ended. Whole: the last block is final
// and the writer is byte-aligned.
func (g *gzSplicer) encodePrefix(prefix []byte, whole bool, lib int) bitWriter {
	bw := &bufWriter{b: make([]byte, 0, len(prefix)/3+256)}
	var fw interface {
		io.Writer
		Flush() error
	}
	switch lib {
	case stdFlate:
		w := stdWriters.Get().(*flate.Writer)
		w.Reset(bw)
		defer stdWriters.Put(w)
		fw = w
	default:
		w := klauspostWriters.Get().(*kflate.Writer)
		w.Reset(bw)
		defer klauspostWriters.Put(w)
		fw = w
	}
	_, _ = fw.Write(prefix[:g.ins])
	_, _ = fw.Write(g.tag)
	_, _ = fw.Write(prefix[g.ins:])
	_ = fw.Flush() // the blocks, then an empty stored one (the sync marker)
	return g.deflated(bw.b, g.in[:g.hdrLen], whole)
}

// deflated returns head and raw, deflate blocks that start byte-aligned
// and end with a sync flush, as bits: the sync marker (5 bytes or so) is
// dropped and, when whole, the last block made final.
func (g *gzSplicer) deflated(raw, head []byte, whole bool) bitWriter {
	out := append(make([]byte, 0, len(head)+len(raw)+32), head...)
	starts := blockStarts(raw)
	n := len(starts)
	if n < 2 || !bytes.HasSuffix(raw, []byte{0, 0, 0xff, 0xff}) {
		w := bitWriter{out: append(out, raw...)} // not as expected: keep it
		if whole {
			w.put(1, 1) // an empty final fixed block
			w.put(1, 2)
			w.put(0, 7)
			w.align()
		}
		return w
	}
	p := starts[n-1]
	if whole {
		raw[starts[n-2]>>3] |= 1 << (starts[n-2] & 7) // the last data block becomes final
	}
	w := bitWriter{out: append(out, raw[:p>>3]...)}
	if r := int(p & 7); r != 0 {
		w.acc, w.n = uint64(raw[p>>3])&(1<<r-1), r
	}
	if whole {
		w.align()
	}
	return w
}

// blockStarts returns the bit offsets of the deflate blocks in b, which
// ends after a sync flush; nil unless the last block is an empty stored
// one that ends b.
func blockStarts(b []byte) []int64 {
	d := &gzSplicer{src: bytes.NewReader(b), ins: math.MaxInt64, need: -1, fwd: -1, walk: true, syncBit: -1}
	var starts []int64
	for {
		start := d.bit
		if _, err := d.block(); err != nil {
			return nil
		}
		starts = append(starts, start)
		if d.bit == int64(len(b))*8 {
			if d.blk.typ != 0 || d.syncBit != d.bit {
				return nil
			}
			return starts
		}
	}
}

// trailer checks the member's CRC-32 and size and writes the new ones.
func (g *gzSplicer) trailer(patch bool) error {
	g.bit = (g.bit + 7) &^ 7
	if patch {
		if err := g.forward(g.bit >> 3); err != nil {
			return err
		}
		g.fwd = -1
	}
	v, err := g.bits(32)
	if err != nil {
		return err
	}
	size, err := g.bits(32)
	if err != nil {
		return err
	}
	g.sumSuffix()
	n := g.pos()
	sufLen := n - g.x
	if uint32(v) != crc32Combine(g.prefixCRC, g.sufCRC, sufLen) || uint32(size) != uint32(n) {
		return errGzipTrailer
	}
	if !patch {
		return nil
	}
	// Held until what follows is known to be the end or another member:
	// after garbage, the page stays unterminated.
	g.pending = binary.LittleEndian.AppendUint32(g.pending[:0], crc32Combine(g.newCRC, g.sufCRC, sufLen))
	g.pending = binary.LittleEndian.AppendUint32(g.pending, uint32(n)+uint32(len(g.tag)))
	g.fwd = g.bit >> 3
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

type bufWriter struct{ b []byte }

func (w *bufWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// flushNow sends what is decoded so far, deflated, when the upstream's
// stream ends with a flush there (its bytes so far decode to the end):
// a page that flushes its head early gets it out early. Any other Flush
// before X waits for X, at most 32 KiB of page later. It runs on the
// handler's goroutine while the splicer's waits for input.
func (g *gzSplicer) flushNow() error {
	if g.spliced || g.hdrLen == 0 || g.syncBit != g.bit || g.bit != g.inEnd()*8 {
		return nil
	}
	if g.sw == nil {
		g.sw = stdWriters.Get().(*flate.Writer)
		g.swBuf.b = append(g.swBuf.b[:0], g.in[:g.hdrLen]...)
		g.sw.Reset(&g.swBuf)
	}
	g.feedPrefix(g.pos())
	if err := g.sw.Flush(); err != nil {
		return err
	}
	g.wrote = true
	_, err := g.w.Write(g.swBuf.b)
	g.swBuf.b = g.swBuf.b[:0]
	return err
}

// feedPrefix deflates decoded [written, to), with the tag at ins.
func (g *gzSplicer) feedPrefix(to int64) {
	from := g.written
	if !g.tagIn && to >= g.ins {
		_, _ = g.sw.Write(g.out[from:g.ins])
		_, _ = g.sw.Write(g.tag)
		g.tagIn = true
		from = g.ins
	}
	_, _ = g.sw.Write(g.out[from:to])
	g.written = to
}
