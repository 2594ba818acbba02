package intercept

import (
	"bytes"
	"strings"
	"testing"
)

// longHead is a page whose head holds pad bytes of inline CSS before extra,
// and more after it, so the head runs far past 64 KiB.
func longHead(pad int, extra string) []byte {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html><html><head><meta charset=utf-8><title>x</title>\n<style>")
	for b.Len() < pad {
		b.WriteString(".wp-block-cover__inner-container{width:100%;z-index:1;color:#fff}\n")
	}
	b.WriteString("</style>\n")
	b.WriteString(extra)
	b.WriteString("\n<script type=\"application/ld+json\">")
	for b.Len() < pad+60000 {
		b.WriteString(`{"@type":"WebPage","name":"Окна </p>"},`)
	}
	b.WriteString("{}</script>\n</head><body><form><input name=phone></form>")
	b.WriteString(strings.Repeat("<p>Окна ПВХ</p>\n", 2000))
	b.WriteString("</body></html>")
	return []byte(b.String())
}

// TestInjectHeadsOver64KB: a head longer than the 64 KiB the injector used
// to hold is read to its real end: our tag or a meta CSP far down the head
// is seen, and the tag goes after <head>.
func TestInjectHeadsOver64KB(t *testing.T) {
	const meta = `<meta http-equiv="Content-Security-Policy" content="script-src 'nonce-Zm9v'">`
	cases := []struct {
		name, extra, result, tag string
	}{
		{"plain", "", "injected", testTag},
		{"our tag at 150 KB", `<script src="/_leadproxy/c.js" defer></script>`, "already", ""},
		{"meta CSP at 150 KB", meta + `<script nonce="Zm9v">x</script>`, "injected",
			`<script src="/_leadproxy/c.js" defer nonce="Zm9v"></script>`},
	}
	for _, c := range cases {
		page := longHead(150<<10, c.extra)
		for _, chunk := range []int{0, 1 << 10, 32 << 10} {
			resp := htmlResponse(string(page))
			resp.chunk = chunk
			w, result, err := run(t, getPage(), InjectConfig{}, resp)
			if err != nil || result != c.result {
				t.Fatalf("%s, writes of %d: %s (%v), want %s", c.name, chunk, result, err, c.result)
			}
			out := w.body.Bytes()
			if c.tag == "" {
				if !bytes.Equal(out, page) {
					t.Fatalf("%s: page changed", c.name)
				}
				continue
			}
			at := bytes.Index(page, []byte("<head>")) + len("<head>")
			if got := tagInserted(page, out, []byte(c.tag)); got != at {
				t.Fatalf("%s, writes of %d: tag at %d, want %d", c.name, chunk, got, at)
			}
		}
	}
}

// TestInjectHeadPastBound: a head longer than DefaultMaxPrefix is decided
// on what was read: the tag after <head>, the page otherwise intact.
func TestInjectHeadPastBound(t *testing.T) {
	page := longHead(DefaultMaxPrefix+(10<<10), `<script src="/_leadproxy/c.js" defer></script>`)
	w, result, err := run(t, getPage(), InjectConfig{}, htmlResponse(string(page)))
	if err != nil || result != "injected" {
		t.Fatalf("%s (%v)", result, err)
	}
	at := bytes.Index(page, []byte("<head>")) + len("<head>")
	if got := tagInserted(page, w.body.Bytes(), []byte(testTag)); got != at {
		t.Fatalf("tag at %d, want %d", got, at)
	}
}

// TestHeadScanAllocations: reading a WordPress-like head allocates nothing
// per tag, nor at all.
func TestHeadScanAllocations(t *testing.T) {
	page := bigHeadPage()
	allocs := testing.AllocsPerRun(20, func() {
		s := newPageScan("/_leadproxy/c.js", "", true)
		if v := s.scan(page, 0, false); v != verdictInsert {
			t.Fatalf("verdict %v", v)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per scan of a head with %d tags", allocs, bytes.Count(page, []byte("<link")))
	}
}
