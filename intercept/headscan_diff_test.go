package intercept

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The head scanner (headscan.go) tokenizes as golang.org/x/net/html does.
// These tests hold it to the scanner it replaced, built on that tokenizer
// (headscan_ref_test.go): the same verdict, insertion point, nonce and
// "already" on every input, however it is cut into writes, under every
// combination of header nonce and charset header. The inputs are the
// product's own cases, WordPress-shaped heads, and every input of the
// html5lib tokenizer and tree-construction tests that x/net ships, each put
// in the places of a page where the scan reads it.

// bigHeadPage stands for a WordPress-like page: 45 KB of inline style and
// JSON-LD and 60 preload links in the head.
func bigHeadPage() []byte {
	var sb strings.Builder
	sb.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>x</title>\n<style>")
	for sb.Len() < 30000 {
		sb.WriteString(".wp-block-button__link{color:#fff;background-color:#32373c;border-radius:9999px}\n")
	}
	sb.WriteString("</style>\n<script type=\"application/ld+json\">")
	for sb.Len() < 45000 {
		sb.WriteString(`{"@context":"https://schema.org","@type":"Organization","name":"Окна","url":"https://example.com/</p>"},`)
	}
	sb.WriteString("{}</script>\n")
	for i := 0; i < 60; i++ {
		sb.WriteString(`<link rel="preload" href="/wp-content/themes/x/fonts/font.woff2" as="font" type="font/woff2" crossorigin>` + "\n")
	}
	sb.WriteString("</head><body>")
	for sb.Len() < 80000 {
		sb.WriteString("<p>Окна ПВХ от производителя, замер бесплатно.</p>\n")
	}
	sb.WriteString("</body></html>")
	return []byte(sb.String())
}


// scanResult is everything a scan's verdict hands the injector.
type scanResult struct {
	verdict   pageVerdict
	insertion int
	nonce     string
	complete  bool
}

// scanner is what both the product's scan and the reference have.
type scanner interface {
	scan(data []byte, fresh int, atEOF bool) pageVerdict
	state() *pageScan
}

func (s *pageScan) state() *pageScan { return s }

func resultOf(sc scanner, v pageVerdict) scanResult {
	s := sc.state()
	return scanResult{v, s.insertion(len(testTagBytes)), s.nonce(), s.complete}
}

var testTagBytes = []byte(`<script src="/_leadproxy/c.js" defer></script>`)

// feed gives page to sc in writes of chunk bytes (all at once for 0), as
// the injector does, and returns the outcome.
func feed(sc scanner, page []byte, chunk int) scanResult {
	if chunk <= 0 {
		chunk = len(page) + 1
	}
	for k := 0; k < len(page); {
		fresh := k
		k = min(len(page), k+chunk)
		if v := sc.scan(page[:k], fresh, false); v != verdictPending {
			return resultOf(sc, v)
		}
	}
	return resultOf(sc, sc.scan(page, len(page), true))
}

type scanConfig struct {
	nonce   string
	charset bool
}

var scanConfigs = []scanConfig{{"", false}, {"", true}, {"hdr", false}}

// diffScan fails when the two scanners disagree on page.
func diffScan(t *testing.T, page []byte, chunks ...int) {
	t.Helper()
	for _, cfg := range scanConfigs {
		want := feed(ptr(newRefScan("/_leadproxy/c.js", cfg.nonce, cfg.charset)), page, 0)
		for _, chunk := range append([]int{0}, chunks...) {
			got := feed(ptr(newPageScan("/_leadproxy/c.js", cfg.nonce, cfg.charset)), page, chunk)
			if got != want {
				t.Fatalf("config %+v, writes of %d: scan %+v, reference %+v\npage %.400q", cfg, chunk, got, want, page)
			}
		}
	}
}

var headScanSeeds = []string{
	// What follows raw text decides: our tag already there, a nonce to
	// copy, a charset to stay ahead of, the first element of a headless page.
	"<html><head><style>a</style><script src=\"/_leadproxy/c.js\"></script></head><body>",
	"<html><head><script>x</script><script src=/_leadproxy/c.js defer></script><body>",
	"<html><head><title>Окна</title><script src=\"/_leadproxy/c.js\"></script><body>",
	"<html><head><meta http-equiv=content-security-policy content=\"script-src 'nonce-k'\"><style>b</style><script nonce=k></script></head>",
	"<html><style>a</style><meta charset=utf-8><body>",
	"<!DOCTYPE html><style>a</style>text<body>",
	"<html><head><style>a</style>" + strings.Repeat(" ", 1000) + "<meta charset=windows-1251></head>",
	"<html><head><script>var s='<script src=\"/_leadproxy/c.js\"></scr'+'ipt>'</script></head>",
	"<html><head><style>a{}</style><body>",
	"<html><head><STYLE>a</StYlE\f><body>",
	"<html><head><style>a</styles></style ><body>",
	"<html><head><style>a</style",
	"<html><head><script>if (a</script) {}</script><body>",
	"<html><head><script><!--<script>x</script>--></script><script src=/_leadproxy/c.js></script><body>",
	"<html><head><script><!-- x </script><script src=/_leadproxy/c.js></script><body>",
	"<html><head><script>'<head>'</scr",
	"<html><head><title>a</title/><script nonce=n>x</script><body>",
	"<html><head><noscript><img src=x></noscript><body>",
	"<html><head><textarea></textarea><body>",
	"<html><head><script/>x</script><body>",
	"<html><head><xmp></xmp></head>",
	"<html><head><plaintext></plaintext><body>",
	"<html><head><iframe>a</iframe></head><body>",
	"<html><head><meta http-equiv=Content-Security-Policy content=\"script-src 'nonce-q'\"><script>a</script><script nonce=q></script><body>",
	// Tags the scan reads a byte at a time: quotes, stray '=' and '/',
	// self-closing and not, duplicate attributes, entities.
	"<html><head><script src='/_leadproxy/c.js' src=/x></script><body>",
	"<html><head><script src=/x src='/_leadproxy/c.js'></script><body>",
	"<html><head><script src=\"/_leadproxy/c&#46;js\"></script><body>",
	"<html><head><script src=\"/_leadproxy/c.js?v=1&amp;x\"></script><body>",
	"<html><head><meta http-equiv=content-security-policy content=\"script-src &#39;nonce-e&#39;\"><body>",
	"<html><head><meta =a http-equiv = \"Content-Security-Policy\" content = 'script-src \"x\" &apos;nonce-s&apos;'><body>",
	"<html><head><link a=\">\" b='>' c=>d><body>",
	"<html><head><script nonce=x/></script><body>",
	"<html><head><script nonce=x /></script><body>",
	"<html><head><script a=b/>", "<html><head><script a=\"b\"/>x", "<html><head><script a=b a=c/>x",
	"<html><head><meta charset=\"utf-8\"/><meta http-equiv=content-type content='text/html; CHARSET=koi8-r'>",
	"<html><head><!--a--!><!----><!---><!--><!-- -- --><body>", "<html><!-- a --!- b --><head>",
	"<html><head><? pi ?><!bogus><![CDATA[x]]></ 1><//a></><body>", "<!DOCTYPEhtml><head>", "<!doctype",
	"<!DOCTYPE html><html><head></head", "<html><head>\ufeff\n<body>", "\ufeff<html>", "<html>\ufeff x",
	"<html></a></head></title><body>", "<html><head>< a<3 </ a>", "<html><head>x<", "<html><head>x</", "<html><head>x<!",
	"<HTML><HEAD><TITLE>t</TITLE><SCRIPT SRC=/_leadproxy/c.js></SCRIPT>", "<html><head><template><p></template>",
	"<html><head><script><!--<script>--></script></script>x", "<html><head><script><!--<scripT\t></scripT></script>x",
	"<html><head><script><!-- -<-- <!--<a</script>x", "<html><head><script><!----></script>x<body>",
}

func TestHeadScanMatchesReference(t *testing.T) {
	pages := [][]byte{bigHeadPage()}
	for _, s := range headScanSeeds {
		pages = append(pages, []byte(s))
	}
	files, _ := filepath.Glob("testdata/inject/*")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			pages = append(pages, b)
		}
	}
	for _, page := range pages {
		for cut := range len(page) + 1 { // every place a page can be cut in two
			if len(page) > 2000 && cut%97 != 0 {
				continue
			}
			diffScan(t, page[:cut])
		}
		diffScan(t, page, 1, 2, 3, 7, 100, 4096, 32<<10)
	}
}

// html5libInputs are the inputs of the html5lib tests in x/net's module.
func html5libInputs(t testing.TB) []string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/net").Output()
	if err != nil {
		t.Fatalf("locating golang.org/x/net: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "html", "testdata", "html5lib-tests")
	var inputs []string
	tok, _ := filepath.Glob(filepath.Join(dir, "tokenizer", "*.test"))
	for _, name := range tok {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Tests []struct{ Input string } `json:"tests"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, c := range f.Tests {
			inputs = append(inputs, c.Input)
		}
	}
	tree, _ := filepath.Glob(filepath.Join(dir, "tree-construction", "*.dat"))
	for _, name := range tree {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range strings.Split(string(b), "\n#data\n") {
			data, _, _ := strings.Cut(strings.TrimPrefix(block, "#data\n"), "\n#errors")
			inputs = append(inputs, data)
		}
	}
	if len(inputs) < 1000 {
		t.Fatalf("only %d html5lib inputs found in %s", len(inputs), dir)
	}
	return inputs
}

// html5libPlaces puts an input where the scan reads it: at the start, in a
// head, in raw text, after our tag's rivals.
var html5libPlaces = []string{"", "<html>", "<!DOCTYPE html><html><head>", "<html><head><script>",
	"<html><head><style>", "<html><head><title>", "<html><head><noscript>", "<html><head><!--"}

func TestHeadScanMatchesReferenceHTML5Lib(t *testing.T) {
	inputs := html5libInputs(t)
	for _, in := range inputs {
		for _, place := range html5libPlaces {
			page := []byte(place + in + "<script src=/_leadproxy/c.js nonce=n></script><body>")
			diffScan(t, page, 1, 5)
			diffScan(t, []byte(place+in))
		}
	}
	t.Logf("%d html5lib inputs in %d places", len(inputs), len(html5libPlaces))
}

// FuzzHeadScanDiff: on any page, cut into writes anywhere, the scan agrees
// with the reference built on x/net's tokenizer.
func FuzzHeadScanDiff(f *testing.F) {
	for _, s := range headScanSeeds {
		f.Add([]byte(s), uint8(0))
	}
	for i, in := range html5libInputs(f) {
		if i%7 == 0 {
			f.Add([]byte(html5libPlaces[i%len(html5libPlaces)]+in), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, page []byte, cut uint8) {
		diffScan(t, page, int(cut%80)+1)
	})
}

// What the scan costs on a WordPress-like head, against the reference
// (go test -run '^$' -bench HeadScan ./intercept).
func BenchmarkHeadScan(b *testing.B) {
	page := bigHeadPage()
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for range b.N {
			feed(ptr(newRefScan("/_leadproxy/c.js", "", true)), page, 32<<10)
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for range b.N {
			feed(ptr(newPageScan("/_leadproxy/c.js", "", true)), page, 32<<10)
		}
	})
	b.Run("serve", func(b *testing.B) { benchServe(b, page, "text/html; charset=utf-8", true, nil) })
	b.Run("serve-cached", func(b *testing.B) { benchServe(b, page, "text/html; charset=utf-8", true, NewVerdictCache()) })
}

func ptr[T any](v T) *T { return &v }
