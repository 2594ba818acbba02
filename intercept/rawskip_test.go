package intercept

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The scan skips long raw text (inline styles and scripts) with rawTextEnd
// instead of letting x/net read it. These tests hold it to doing exactly
// what the tokenizer alone does: the same result and the same bytes out, for
// every page and every way of cutting it into writes.

// injectBoth serves page with raw-text skipping off, then on for every raw
// text however short, and fails on any difference.
func injectBoth(t *testing.T, page []byte, chunk int) {
	t.Helper()
	serve := func(skip bool) ([]byte, string) {
		skipRawText, rawSkipMin = skip, 0
		defer func() { skipRawText, rawSkipMin = true, 2048 }()
		resp := htmlResponse(string(page))
		resp.chunk = chunk
		w, result, err := run(t, getPage(), InjectConfig{}, resp)
		if err != nil {
			t.Fatal(err)
		}
		return w.body.Bytes(), result
	}
	want, wantResult := serve(false)
	got, gotResult := serve(true)
	if gotResult != wantResult || !bytes.Equal(got, want) {
		t.Fatalf("writes of %d: skipping raw text gave %s, the tokenizer alone %s\npage %.300q\nskip %.300q\nnone %.300q",
			chunk, gotResult, wantResult, page, got, want)
	}
}

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

var rawSkipSeeds = []string{
	// What follows the raw text decides: our tag already there, a nonce to
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
}

func TestRawTextSkipMatchesTokenizer(t *testing.T) {
	pages := [][]byte{bigHeadPage()}
	for _, s := range rawSkipSeeds {
		pages = append(pages, []byte(s))
	}
	files, _ := filepath.Glob("testdata/inject/*")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			pages = append(pages, b)
		}
	}
	for _, page := range pages {
		for _, chunk := range []int{0, 1, 7, 100, 4096, 32 << 10} {
			injectBoth(t, page, chunk)
		}
	}
}

// The skip pays where it should: a WordPress-like head is read in a fraction
// of the tokenizer's time (go test -bench RawTextSkip ./intercept).
func BenchmarkRawTextSkip(b *testing.B) {
	page := bigHeadPage()
	for _, on := range []bool{false, true} {
		name := "tokenizer-only"
		if on {
			name = "skip"
		}
		b.Run(name, func(b *testing.B) {
			skipRawText = on
			defer func() { skipRawText = true }()
			benchServe(b, page, "text/html; charset=utf-8", true, nil)
		})
	}
	b.Run("cached", func(b *testing.B) { benchServe(b, page, "text/html; charset=utf-8", true, NewVerdictCache()) })
}

func FuzzRawTextSkip(f *testing.F) {
	for _, s := range rawSkipSeeds {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, page []byte, cut uint8) {
		injectBoth(t, page, int(cut%80))
	})
}
