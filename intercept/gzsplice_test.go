package intercept

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
	kgzip "github.com/klauspost/compress/gzip"
)

// chunkReader returns its data in reads of random sizes.
type chunkReader struct {
	b   []byte
	rnd *rand.Rand
	max int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rnd.IntN(r.max))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func spliceBytes(t testing.TB, enc []byte, ins int, tag []byte, rnd *rand.Rand) ([]byte, *gzSplicer) {
	t.Helper()
	var out bytes.Buffer
	var src io.Reader = bytes.NewReader(enc)
	if rnd != nil {
		src = &chunkReader{b: enc, rnd: rnd, max: 1 + rnd.IntN(8<<10)}
	}
	g := newGzSplicer(src, &out, ins, tag)
	if err := g.run(); err != nil {
		t.Fatalf("splice: %v", err)
	}
	return out.Bytes(), g
}

func gunzipStd(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := stdgzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// gzipWith compresses page with Go's compress/gzip ("std") or klauspost's.
func gzipWith(t testing.TB, lib string, level int, page []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	if lib == "std" {
		w, err = stdgzip.NewWriterLevel(&b, level)
	} else {
		w, err = kgzip.NewWriterLevel(&b, level)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Write(page)
	w.Close()
	return b.Bytes()
}

// cmsPage is shaped like a WordPress page: a head with many <link>s, inline
// CSS and JSON-LD, then a body of repetitive markup, about size bytes.
func cmsPage(seed uint64, size int) []byte {
	rnd := rand.New(rand.NewPCG(seed, 7))
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en-US\">\n<head>\n<meta charset=\"UTF-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	fmt.Fprintf(&b, "<title>Post %d &#8211; Example Site</title>\n", rnd.IntN(1000))
	for i := 0; i < 20+rnd.IntN(40); i++ {
		fmt.Fprintf(&b, "<link rel='stylesheet' id='plugin-%d-css' href='https://example.com/wp-content/plugins/plugin-%d/assets/style.css?ver=%d.%d.%d' media='all' />\n", i, rnd.IntN(90), rnd.IntN(9), rnd.IntN(20), rnd.IntN(30))
	}
	b.WriteString("<style id='global-styles-inline-css'>\n")
	for i := 0; i < 50+rnd.IntN(300); i++ {
		fmt.Fprintf(&b, ".wp-block-%d{--wp--preset--color--c%d:#%06x;margin:%dpx %dpx;font-size:var(--wp--preset--font-size--%d)}\n", i, rnd.IntN(40), rnd.IntN(1<<24), rnd.IntN(40), rnd.IntN(40), rnd.IntN(6))
	}
	b.WriteString("</style>\n<script type=\"application/ld+json\" class=\"yoast-schema-graph\">{\"@context\":\"https://schema.org\",\"@graph\":[")
	for i := 0; i < 20+rnd.IntN(100); i++ {
		fmt.Fprintf(&b, "{\"@type\":\"WebPage\",\"@id\":\"https://example.com/p/%d/#webpage\",\"name\":\"Page %x\",\"datePublished\":\"2024-0%d-1%dT10:%02d:00+00:00\"},", i, rnd.Uint32(), 1+rnd.IntN(9), rnd.IntN(10), rnd.IntN(60))
	}
	b.WriteString("{}]}</script>\n</head>\n<body class=\"post-template-default single single-post\">\n")
	for b.Len() < size {
		switch rnd.IntN(4) {
		case 0:
			fmt.Fprintf(&b, "<div class=\"wp-block-group is-layout-flow\"><p>Paragraph %d with some text %x about things.</p></div>\n", rnd.IntN(1e6), rnd.Uint64())
		case 1:
			fmt.Fprintf(&b, "<a href=\"https://example.com/category/%d/\" rel=\"category tag\">Category %d</a>\n", rnd.IntN(50), rnd.IntN(50))
		case 2:
			fmt.Fprintf(&b, "<img src=\"https://example.com/wp-content/uploads/2024/%02d/img-%d.jpg\" width=\"%d\" height=\"%d\" loading=\"lazy\" alt=\"\">\n", 1+rnd.IntN(12), rnd.IntN(1e4), rnd.IntN(2000), rnd.IntN(2000))
		default:
			for i := 0; i < 8; i++ {
				b.WriteByte(byte('a' + rnd.IntN(26)))
			}
			b.WriteByte('\n')
		}
	}
	b.WriteString("</body>\n</html>\n")
	return []byte(b.String())
}

// tagAllowance is the compressed size of the tag: raw deflate at the best
// level, by itself (no page to reference).
func tagAllowance(tag []byte) int {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(tag)
	w.Close()
	return b.Len()
}

// spliceAllowance is what an injected gzip page may weigh more than the
// upstream's, at the head's insertion points: the compressed tag and 8
// bytes (the splice's empty blocks, and the best level of one library
// against another's on the re-encoded prefix).
func spliceAllowance(tag []byte) int { return tagAllowance(tag) + 8 }

func insertAt(page []byte, ins int, tag []byte) []byte {
	return append(append(append([]byte(nil), page[:ins]...), tag...), page[ins:]...)
}

func TestGzipSpliceLevels(t *testing.T) {
	tag := []byte(`<script src="/_leadproxy/c.js" defer></script>`)
	for _, size := range []int{200, 30 << 10, 60 << 10, 300 << 10} {
		page := cmsPage(uint64(size), size)
		for _, lib := range []string{"std", "klauspost"} {
			for level := 1; level <= 9; level++ {
				enc := gzipWith(t, lib, level, page)
				for _, ins := range []int{0, bytes.Index(page, []byte("<meta")), bytes.Index(page, []byte("</head>")), len(page) / 2, len(page)} {
					name := fmt.Sprintf("%d/%s-%d/ins=%d", size, lib, level, ins)
					out, g := spliceBytes(t, enc, ins, tag, rand.New(rand.NewPCG(uint64(level), uint64(ins))))
					if g.failed != nil {
						t.Fatalf("%s: untouched: %v", name, g.failed)
					}
					got := gunzipStd(t, out)
					if !bytes.Equal(got, insertAt(page, ins, tag)) {
						t.Fatalf("%s: decoded output differs", name)
					}
					head := ins == bytes.Index(page, []byte("<meta")) || ins == bytes.Index(page, []byte("</head>"))
					if head && len(out) > len(enc)+spliceAllowance(tag) {
						t.Errorf("%s: %d bytes from %d (+%d)", name, len(out), len(enc), len(out)-len(enc))
					}
					if len(out) > len(enc)+3*len(tag) {
						t.Errorf("%s: %d bytes from %d (+%d)", name, len(out), len(enc), len(out)-len(enc))
					}
				}
			}
		}
	}
}

func TestCRC32Combine(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		a := make([]byte, rnd.IntN(3000))
		b := make([]byte, rnd.IntN(70000))
		for j := range a {
			a[j] = byte(rnd.Uint32())
		}
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		want := crc32.ChecksumIEEE(append(append([]byte(nil), a...), b...))
		if got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b))); got != want {
			t.Fatalf("combine %d+%d: %08x, want %08x", len(a), len(b), got, want)
		}
	}
}

func spliceRun(enc []byte, ins int, tag []byte, rnd *rand.Rand) ([]byte, *gzSplicer, error) {
	var out bytes.Buffer
	g := newGzSplicer(&chunkReader{b: enc, rnd: rnd, max: 1 + rnd.IntN(4<<10)}, &out, ins, tag)
	err := g.run()
	return out.Bytes(), g, err
}

// TestGzipSpliceShapes: gzip streams as other writers make them.
func TestGzipSpliceShapes(t *testing.T) {
	tag := []byte(`<script src="/_leadproxy/c.js" defer></script>`)
	page := cmsPage(3, 90<<10)
	ins := bytes.Index(page, []byte("</head>"))
	rnd := rand.New(rand.NewPCG(5, 5))
	check := func(name string, enc []byte, want []byte) {
		t.Helper()
		out, g, err := spliceRun(enc, ins, tag, rnd)
		if err != nil || g.failed != nil {
			t.Fatalf("%s: %v / %v", name, err, g.failed)
		}
		if got := gunzipStd(t, out); !bytes.Equal(got, want) {
			t.Fatalf("%s: decoded output differs", name)
		}
	}
	for _, level := range []int{stdgzip.NoCompression, stdgzip.HuffmanOnly, 1, 9} {
		check(fmt.Sprintf("level %d", level), gzipWith(t, "std", level, page), insertAt(page, ins, tag))
	}
	// FEXTRA, FNAME, FCOMMENT, kept as they are.
	var b bytes.Buffer
	zw, _ := stdgzip.NewWriterLevel(&b, 6)
	zw.Header.Name, zw.Header.Comment, zw.Header.Extra = "index.html", "a comment", []byte("AB\x02\x00hi")
	zw.Write(page)
	zw.Close()
	named := b.Bytes()
	out, _, _ := spliceRun(named, ins, tag, rnd)
	if zr, err := stdgzip.NewReader(bytes.NewReader(out)); err != nil || zr.Name != "index.html" || zr.Comment != "a comment" || string(zr.Extra) != "AB\x02\x00hi" {
		t.Fatalf("header fields not kept: %v", err)
	}
	check("named", named, insertAt(page, ins, tag))
	// FHCRC.
	plain := gzipWith(t, "std", 6, page)
	hc := append([]byte(nil), plain[:10]...)
	hc[3] |= 2
	c := crc32.ChecksumIEEE(hc)
	hc = append(hc, byte(c), byte(c>>8))
	check("fhcrc", append(hc, plain[10:]...), insertAt(page, ins, tag))
	// Two members: the second is copied behind the spliced first.
	k := ins + 40<<10
	two := append(gzipWith(t, "std", 6, page[:k]), gzipWith(t, "klauspost", 6, page[k:])...)
	check("two members", two, insertAt(page, ins, tag))
	short := append(gzipWith(t, "std", 6, page[:ins+10]), gzipWith(t, "std", 6, page[ins+10:])...)
	check("two members, X past the first", short, insertAt(page, ins, tag))
	// The insertion point in the second member: untouched.
	late := append(gzipWith(t, "std", 6, page[:100]), gzipWith(t, "std", 6, page[100:])...)
	out, g, err := spliceRun(late, ins, tag, rnd)
	if err != nil || g.failed == nil || !bytes.Equal(out, late) {
		t.Fatalf("insertion past the first member: %v %v, same %v", err, g.failed, bytes.Equal(out, late))
	}
	// A page ending right after the insertion point.
	check("ends at ins", gzipWith(t, "std", 6, page[:ins]), insertAt(page[:ins], ins, tag))
}

// TestGzipSpliceCorrupt: a stream that does not decode before X goes out as
// it came; after X the splice ends in an error (the client sees a broken
// transfer, never a wrong page).
func TestGzipSpliceCorrupt(t *testing.T) {
	tag := []byte(`<script src="/_leadproxy/c.js" defer></script>`)
	page := cmsPage(4, 120<<10)
	ins := bytes.Index(page, []byte("</head>"))
	enc := gzipWith(t, "std", 6, page)
	rnd := rand.New(rand.NewPCG(6, 6))
	for i := 0; i < 300; i++ {
		bad := append([]byte(nil), enc...)
		switch i % 3 {
		case 0:
			bad[rnd.IntN(len(bad))] ^= byte(1 + rnd.IntN(255))
		case 1:
			bad = bad[:rnd.IntN(len(bad))]
		default:
			bad = append(bad, byte(rnd.Uint32()))
		}
		out, g, err := spliceRun(bad, ins, tag, rnd)
		switch {
		case g.failed != nil:
			if err != nil || !bytes.Equal(out, bad) {
				t.Fatalf("case %d: untouched page changed (%v)", i, err)
			}
		case err != nil:
		default:
			// It decoded: then the output must decode to the tagged page,
			// with anything after the first member as it came.
			zr, zerr := stdgzip.NewReader(bytes.NewReader(out))
			if zerr != nil {
				t.Fatalf("case %d: %v", i, zerr)
			}
			zr.Multistream(false)
			got, rerr := io.ReadAll(zr)
			if rerr != nil || !bytes.Equal(got, insertAt(page, ins, tag)) {
				t.Fatalf("case %d: spliced output wrong: %v", i, rerr)
			}
		}
	}
}

func FuzzGzipSplice(f *testing.F) {
	f.Add(uint64(1), uint16(2000), uint8(6), false, uint16(100), uint64(9))
	f.Add(uint64(2), uint16(60000), uint8(1), true, uint16(30000), uint64(3))
	f.Add(uint64(3), uint16(500), uint8(9), false, uint16(65535), uint64(4))
	f.Fuzz(func(t *testing.T, seed uint64, size uint16, level uint8, klauspost bool, insAt uint16, chunks uint64) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		page := make([]byte, int(size)*3)
		// Mostly text with repeats, so that references cross the insertion point.
		words := []string{"<div class=\"a\">", "</div>", "<link rel=\"x\">", "lorem ", "ipsum ", "\n", "<p>", "</p>"}
		for i := 0; i < len(page); {
			if rnd.IntN(5) == 0 {
				page[i] = byte(rnd.Uint32())
				i++
				continue
			}
			i += copy(page[i:], words[rnd.IntN(len(words))])
		}
		ins := int(insAt) * len(page) / 65535
		lib := "std"
		if klauspost {
			lib = "klauspost"
		}
		enc := gzipWith(t, lib, 1+int(level)%9, page)
		tag := []byte(`<script src="/_leadproxy/c.js" defer></script>`)
		out, g, err := spliceRun(enc, ins, tag, rand.New(rand.NewPCG(chunks, 2)))
		if err != nil || g.failed != nil {
			t.Fatalf("splice: %v / %v", err, g.failed)
		}
		if got := gunzipStd(t, out); !bytes.Equal(got, insertAt(page, ins, tag)) {
			t.Fatal("decoded output differs")
		}
	})
}

// TestGzipSpliceBounded: a large page streams through a bounded window.
func TestGzipSpliceBounded(t *testing.T) {
	page := cmsPage(8, 6<<20)
	enc := gzipWith(t, "std", 6, page)
	tag := []byte(testTag)
	ins := bytes.Index(page, []byte("<head>")) + 6
	out, g, err := spliceRun(enc, ins, tag, rand.New(rand.NewPCG(8, 8)))
	if err != nil || g.failed != nil {
		t.Fatal(err, g.failed)
	}
	if !bytes.Equal(gunzipStd(t, out), insertAt(page, ins, tag)) {
		t.Fatal("decoded output differs")
	}
	if cap(g.in) > 1<<20 || cap(g.out) > 1<<20 {
		t.Fatalf("held %d input, %d decoded bytes", cap(g.in), cap(g.out))
	}
}

// TestGzipSpliceEarlyFlush: an upstream that flushes its gzip stream after
// the head gets the head out at once, and the rest spliced behind it.
func TestGzipSpliceEarlyFlush(t *testing.T) {
	page := cmsPage(14, 200<<10)
	cut := bytes.Index(page, []byte("</head>")) + 7
	for _, lib := range []string{"std", "klauspost"} {
		var up bytes.Buffer
		var zw interface {
			io.WriteCloser
			Flush() error
		}
		if lib == "std" {
			zw, _ = stdgzip.NewWriterLevel(&up, 6)
		} else {
			zw, _ = kgzip.NewWriterLevel(&up, 6)
		}
		tap := newTap()
		w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		zw.Write(page[:cut])
		zw.Flush()
		w.Write(up.Bytes())
		up.Reset()
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Fatal(err)
		}
		if part := readSome(t, "gzip", tap.body.Bytes()); !strings.Contains(part, testTag) || !strings.HasSuffix(part, "</head>") {
			t.Fatalf("%s: after the flush the client has %d bytes", lib, len(part))
		}
		zw.Write(page[cut:])
		zw.Close()
		writeChunks(w, up.Bytes(), 3000)
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		plain, _, _ := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
		if got := gunzipStd(t, tap.body.Bytes()); !bytes.Equal(got, plain.body.Bytes()) {
			t.Fatalf("%s: decoded output differs", lib)
		}
	}
}

// TestGzipSpliceDropsSyncMarker: the re-encoded prefix ends where its last
// block does, not after a sync flush's empty stored block, and with a final
// block added it inflates to the prefix with the tag.
func TestGzipSpliceDropsSyncMarker(t *testing.T) {
	page := cmsPage(15, 50<<10)
	for _, lib := range []int{stdFlate, klauspostFlate} {
		g := &gzSplicer{ins: 10, tag: []byte(testTag)}
		bits := g.encodePrefix(page, false, lib)
		if bits.n == 0 && bytes.HasSuffix(bits.out, []byte{0, 0, 0xff, 0xff}) {
			t.Fatalf("lib %d: sync marker kept", lib)
		}
		bits.put(1, 1) // an empty final fixed block
		bits.put(1, 2)
		bits.put(0, 7)
		bits.align()
		got, err := io.ReadAll(flate.NewReader(bytes.NewReader(bits.out)))
		if err != nil || !bytes.Equal(got, insertAt(page, 10, g.tag)) {
			t.Fatalf("lib %d: %v", lib, err)
		}
	}
}
