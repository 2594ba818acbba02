package intercept

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

// The cost of putting the tag into a 60 KB gzip page (nginx-like level 6):
// the splice (decode all, deflate [0, X)), a full re-encode at the best
// and the default level, and the injector on an EncodedCache hit. Run:
// go test ./intercept -run XXX -bench Gzip -benchmem

func benchPage(b *testing.B) ([]byte, []byte, int) {
	page := cmsPage(60, 60<<10)
	enc := gzipWith(b, "std", 6, page)
	return page, enc, bytes.Index(page, []byte("<head>")) + len("<head>")
}

func BenchmarkGzipSplice(b *testing.B) {
	_, enc, ins := benchPage(b)
	tag := []byte(testTag)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		g := newGzSplicer(bytes.NewReader(enc), io.Discard, ins, tag)
		if err := g.run(); err != nil || g.failed != nil {
			b.Fatal(err, g.failed)
		}
	}
}

func benchReencode(b *testing.B, level int) {
	_, enc, ins := benchPage(b)
	tag := []byte(testTag)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		zr, _ := kgzip.NewReader(bytes.NewReader(enc))
		page, err := io.ReadAll(zr)
		if err != nil {
			b.Fatal(err)
		}
		zw, _ := kgzip.NewWriterLevel(io.Discard, level)
		zw.Write(page[:ins])
		zw.Write(tag)
		zw.Write(page[ins:])
		zw.Close()
	}
}

func BenchmarkGzipReencodeBest(b *testing.B)    { benchReencode(b, kgzip.BestCompression) }
func BenchmarkGzipReencodeDefault(b *testing.B) { benchReencode(b, kgzip.DefaultCompression) }

func benchInjector(b *testing.B, cache *EncodedCache) {
	_, enc, _ := benchPage(b)
	cfg := &InjectConfig{ScriptSrc: testSrc, Encoded: cache}
	req := getPage()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		w, finish := Wrap(&discardWriter{h: http.Header{}}, req, cfg)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(200)
		for p := enc; len(p) > 0; {
			n := min(len(p), 16<<10)
			w.Write(p[:n])
			p = p[n:]
		}
		if err := finish(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGzipInjectorSplice(b *testing.B)   { benchInjector(b, nil) }
func BenchmarkGzipInjectorCacheHit(b *testing.B) { benchInjector(b, NewEncodedCache()) }
