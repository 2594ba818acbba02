package intercept

// Deflate's parts that gzsplice.go builds on (RFC 1951): canonical Huffman
// codes under zlib's rules, the length and distance tables, a bit writer
// with the empty blocks that move a stream's bit position, and the CRC-32
// algebra that combines the checksums of two pieces (zlib's crc32_combine).

// huffman is a canonical code: counts per length and the symbols in code
// order (as in zlib's puff), with a table for codes up to fastBits long.
type huffman struct {
	count [16]uint16
	sym   [288]uint16
	fast  [1 << fastBits]uint16 // symbol<<4 | length; 0: longer code
}

// init builds the code from code lengths under zlib's rules: no
// over-subscribed code; an incomplete one only as a single code of length 1
// (lit/len and distance codes), or no code at all for distances.
func (h *huffman) init(lengths []uint8, kind int) bool {
	h.count = [16]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	codes := len(lengths) - int(h.count[0])
	h.count[0] = 0
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - int(h.count[l])
		if left < 0 {
			return false
		}
	}
	if left > 0 {
		switch {
		case codes == 0 && kind == huffDist:
		case codes == 1 && h.count[1] == 1 && kind != huffCodeLen:
		default:
			return false
		}
	}
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for s, l := range lengths {
		if l != 0 {
			h.sym[offs[l]] = uint16(s)
			offs[l]++
		}
	}
	h.fast = [1 << fastBits]uint16{}
	code, idx := 0, 0
	for l := 1; l <= fastBits; l++ {
		for i := 0; i < int(h.count[l]); i++ {
			e := h.sym[idx]<<4 | uint16(l)
			idx++
			for j := reverseBits(code, l); j < 1<<fastBits; j += 1 << l {
				h.fast[j] = e
			}
			code++
		}
		code <<= 1
	}
	return true
}

const (
	huffCodeLen = iota
	huffLit
	huffDist
)

func reverseBits(v, n int) int {
	r := 0
	for i := 0; i < n; i++ {
		r = r<<1 | v&1
		v >>= 1
	}
	return r
}

var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	dstBase  = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	dstExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	clOrder  = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

var fixedLit, fixedDist = func() (*huffman, *huffman) {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	var d [32]uint8 // 30 and 31 complete the code; they never occur
	for i := range d {
		d[i] = 5
	}
	lit, dist := new(huffman), new(huffman)
	if !lit.init(l[:], huffLit) || !dist.init(d[:], huffDist) {
		panic("gzsplice: fixed codes")
	}
	return lit, dist
}()

// bitWriter appends bits LSB first, as deflate packs them.
type bitWriter struct {
	out []byte
	acc uint64
	n   int
}

func (w *bitWriter) put(v uint64, n int) {
	w.acc |= v << w.n
	w.n += n
	for w.n >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
}

// align pads with zero bits to a byte boundary.
func (w *bitWriter) align() {
	if w.n > 0 {
		w.put(0, 8-w.n)
	}
}

// copyBits appends n bits of src starting at bit off.
func (w *bitWriter) copyBits(src []byte, off, n int) {
	for n > 0 {
		k := min(n, 8-off%8)
		b := uint64(src[off/8]>>(off%8)) & (1<<k - 1)
		w.put(b, k)
		off += k
		n -= k
	}
}

// pad appends empty non-final blocks that are s bits long in all, mod 8:
// an empty fixed block is 10 bits (2 mod 8); the minimal dynamic block
// below is 95 bits (7 mod 8), so every residue is reachable.
func (w *bitWriter) pad(s int) {
	if s&1 == 1 {
		w.emptyDynamic()
		s = (s - 7) & 7
	}
	for ; s > 0; s -= 2 {
		w.put(0, 1) // not final
		w.put(1, 2) // fixed Huffman
		w.put(0, 7) // end of block: 0000000
	}
}

// emptyDynamic writes a dynamic block holding only its end: complete codes
// throughout (zlib rejects incomplete code-length codes), literal 0 and
// end-of-block with one bit each, two one-bit distance codes; the
// code-length code has lengths for symbols 1 and 18, so 19 of its entries
// are sent (symbol 1 is the 18th in the order, 15 the 19th).
func (w *bitWriter) emptyDynamic() {
	w.put(0, 1)  // not final
	w.put(2, 2)  // dynamic
	w.put(0, 5)  // HLIT: 257 codes
	w.put(1, 5)  // HDIST: 2 codes
	w.put(15, 4) // HCLEN: 19 code-length codes
	for _, s := range clOrder {
		if s == 1 || s == 18 {
			w.put(1, 3)
		} else {
			w.put(0, 3)
		}
	}
	// code lengths, with code-length codes 1 → "0", 18 → "1":
	w.put(0, 1)      // literal 0: length 1
	w.put(1, 1)      // 18: 138 zeros
	w.put(138-11, 7) //
	w.put(1, 1)      // 18: 117 zeros (1..255)
	w.put(117-11, 7) //
	w.put(0, 1)      // 256: length 1
	w.put(0, 1)      // distance 0: length 1
	w.put(0, 1)      // distance 1: length 1
	w.put(1, 1)      // end of block: code "1"
}

// crc32Combine is the CRC-32 of A||B from crc(A), crc(B) and len(B), as
// zlib's crc32_combine: crc(A||B) = crc(A)·x^(8·len(B)) mod P xor crc(B).
func crc32Combine(crcA, crcB uint32, lenB int64) uint32 {
	return multModP(x2nModP(lenB, 3), crcA) ^ crcB
}

const crcPoly = 0xedb88320 // reflected

// multModP multiplies a and b modulo the CRC polynomial (bit-reflected).
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	p := uint32(0)
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// x2nTable[k] is x^(2^k) mod P.
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for n := 1; n < 32; n++ {
		p = multModP(p, p)
		t[n] = p
	}
	return
}()

// x2nModP is x^(n·2^k) mod P.
func x2nModP(n int64, k int) uint32 {
	p := uint32(1) << 31 // x^0
	for n > 0 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		n >>= 1
		k++
	}
	return p
}
