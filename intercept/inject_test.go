package intercept

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	nethtml "golang.org/x/net/html"
)

const (
	testSrc = "/_leadproxy/c.js"
	testTag = `<script src="/_leadproxy/c.js" defer></script>`
	mark    = "§" // where a test page expects the tag
)

// tapWriter is an http.ResponseWriter that keeps every call as it came.
type tapWriter struct {
	header    http.Header
	sent      http.Header // the header at WriteHeader time
	status    int
	body      bytes.Buffer
	writes    [][]byte // the slices passed to Write, not copies
	flushes   int
	readFroms int
}

func newTap() *tapWriter { return &tapWriter{header: http.Header{}} }

func (t *tapWriter) Header() http.Header { return t.header }

func (t *tapWriter) WriteHeader(code int) {
	if t.status == 0 {
		t.status, t.sent = code, t.header.Clone()
	}
}

func (t *tapWriter) Write(p []byte) (int, error) {
	t.WriteHeader(http.StatusOK)
	t.writes = append(t.writes, p)
	return t.body.Write(p)
}

func (t *tapWriter) Flush() { t.WriteHeader(http.StatusOK); t.flushes++ }

type tapReaderFrom struct{ *tapWriter }

func (t tapReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	t.readFroms++
	t.WriteHeader(http.StatusOK)
	return t.body.ReadFrom(r)
}

// response describes what a test handler sends.
type response struct {
	status int
	header map[string]string
	body   []byte
	chunk  int // write size; 0 = one write
}

func htmlResponse(body string) response {
	return response{status: 200, header: map[string]string{"Content-Type": "text/html; charset=utf-8"}, body: []byte(body)}
}

// run sends resp through Wrap for req and returns the underlying writer,
// the result reported and finish's error.
func run(t testing.TB, req *http.Request, cfg InjectConfig, resp response) (*tapWriter, string, error) {
	t.Helper()
	tap := newTap()
	result, calls := "", 0
	cfg.OnResult = func(r string) { result = r; calls++ }
	if cfg.ScriptSrc == "" {
		cfg.ScriptSrc = testSrc
	}
	w, finish := Wrap(tap, req, &cfg)
	for k, v := range resp.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.status)
	werr := writeChunks(w, resp.body, resp.chunk)
	err := finish()
	if err == nil {
		err = werr
	}
	if calls != 1 {
		t.Fatalf("OnResult called %d times", calls)
	}
	if err2 := finish(); (err2 != nil) != (err != nil) || calls != 1 {
		t.Fatalf("second finish: %v, %d calls", err2, calls)
	}
	return tap, result, err
}

// writeChunks writes body in pieces of size (0: at once) and stops at the
// first error.
func writeChunks(w io.Writer, body []byte, size int) error {
	if size <= 0 {
		size = len(body)
	}
	for len(body) > 0 {
		n := min(size, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		body = body[n:]
	}
	return nil
}

func getPage() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	return r
}

// splitMark turns a page with a mark into the upstream's bytes and the
// expected output.
func splitMark(page string) (in, want string) {
	if !strings.Contains(page, mark) {
		return page, page
	}
	return strings.Replace(page, mark, "", 1), strings.Replace(page, mark, testTag, 1)
}

func TestInjectPlacement(t *testing.T) {
	// A charset in the header turns the meta-charset rule off: tested apart.
	cases := []struct {
		name, page, result string
	}{
		{"head", `<!DOCTYPE html><html><head>§<title>x</title></head><body></body></html>`, "injected"},
		{"head attributes, case, whitespace", "<HTML lang=ru>\n<HEAD\n  profile=\"a>b\" class='x'>§\n<meta charset=utf-8>", "injected"},
		{"self-closing head", `<html><head/>§<title>x</title>`, "injected"},
		{"bom", "\ufeff<!DOCTYPE html>\n<html><head>§</head></html>", "injected"},
		{"comments first", `<!-- <head> --><!----><html><!-- <head> --><head>§</head>`, "injected"},
		{"xml prolog", `<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head>§</head>`, "injected"},
		{"conditional comments", `<!--[if lt IE 9]><html class="ie"><head class="ie"><![endif]--><!--[if gte IE 9]><!--><html class="x"><!--<![endif]--><head>§`, "injected"},
		{"script with head string before head", `<html><script>var s = "<head>"; if (a<b) {}</script><head>§<title>t</title>`, "injected"},
		{"head string in attribute", `<html data-x="<head>"><head>§`, "injected"},
		{"header is not head", "<!DOCTYPE html><html>§<header>x</header>", "injected"},
		{"no head: body", "<!doctype html>\n<html>\n§<body>hi</body></html>", "injected"},
		{"no head: meta", `<!DOCTYPE html><html lang=en>§<meta charset=utf-8><title>t</title><body>`, "injected"},
		{"no head: title with tags", `<html>§<title><head></title><body>`, "injected"},
		{"no head: end tag", `<html>§</head><body>`, "injected"},
		{"doctype only, then text", "<!DOCTYPE html>§\nHello", "injected"},
		{"doctype only", "<!DOCTYPE html>§", "injected"},
		{"cdata before head", `<html><![CDATA[<head>§]]><head>`, "injected"},
		{"unterminated head tag", `<html>§<head`, "injected"},
		{"head after head elements", `<html><meta charset=utf-8><script src=/a.js></script><head>§<title>t</title>`, "injected"},
		{"fragment: div", `<div class="x">partial <head></div>`, "fragment"},
		{"fragment: table row", "\n  <tr><td>1</td></tr>", "fragment"},
		{"fragment: text", `Hello <b>world</b>`, "fragment"},
		{"fragment: link first", `<link rel="stylesheet" href="/a.css"><div></div>`, "fragment"},
		{"fragment: textarea with a page", `<textarea><html><head></textarea>`, "fragment"},
		{"fragment: turbo stream", `<turbo-stream action="append"><template><html><head></template></turbo-stream>`, "fragment"},
		{"fragment: whitespace only", " \n\t ", "fragment"},
		{"fragment: comment only", `<!-- nothing -->`, "fragment"},
		{"already", `<html><head><script src="/_leadproxy/c.js" defer></script><title>t</title></head>`, "already"},
		{"already, absolute with query", `<html><head><meta charset=utf-8><script src="https://a.example/_leadproxy/c.js?v=2"></script></head>`, "already"},
		{"already, before head", `<html><script src="/_leadproxy/c.js"></script><head>`, "already"},
		{"other script is not ours", `<html><head>§<script src="/_leadproxy/c.json"></script></head>`, "injected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, want := splitMark(c.page)
			tap, result, err := run(t, getPage(), InjectConfig{}, htmlResponse(in))
			if err != nil {
				t.Fatal(err)
			}
			if result != c.result {
				t.Errorf("result %q, want %q", result, c.result)
			}
			if got := tap.body.String(); got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			// Every write size gives the same bytes.
			for size := 1; size < len(in); size++ {
				resp := htmlResponse(in)
				resp.chunk = size
				tap, r2, err := run(t, getPage(), InjectConfig{}, resp)
				if err != nil || r2 != c.result || tap.body.String() != want {
					t.Fatalf("writes of %d: result %q err %v\ngot  %q\nwant %q", size, r2, err, tap.body.String(), want)
				}
			}
		})
	}
}

func TestInjectEmptyBody(t *testing.T) {
	tap, result, err := run(t, getPage(), InjectConfig{}, htmlResponse(""))
	if err != nil || result != "skipped_empty" || tap.status != 200 || tap.body.Len() != 0 {
		t.Fatalf("status %d body %q result %q err %v", tap.status, tap.body.String(), result, err)
	}
}

func TestInjectXHTML(t *testing.T) {
	page, err := os.ReadFile("testdata/inject/page.xhtml")
	if err != nil {
		t.Fatal(err)
	}
	resp := response{status: 200, header: map[string]string{"Content-Type": "application/xhtml+xml"}, body: page}
	tap, result, err := run(t, getPage(), InjectConfig{}, resp)
	if err != nil || result != "injected" {
		t.Fatalf("result %q err %v", result, err)
	}
	tag := `<script src="/_leadproxy/c.js" defer="defer"></script>`
	want := bytes.Replace(page, []byte("<head>"), []byte("<head>"+tag), 1)
	if !bytes.Equal(tap.body.Bytes(), want) {
		t.Fatalf("got %s", tap.body.Bytes())
	}
}

func TestInjectScriptSrcEscaped(t *testing.T) {
	cfg := InjectConfig{ScriptSrc: `/lp/c.js?a=1&b="2"`}
	tap, _, _ := run(t, getPage(), cfg, htmlResponse("<html><head></head>"))
	want := `<html><head><script src="/lp/c.js?a=1&amp;b=&#34;2&#34;" defer></script></head>`
	if tap.body.String() != want {
		t.Fatalf("got %s", tap.body.String())
	}
}

// TestInjectFixtures runs the real pages under testdata/inject: the output
// less the tag is the input, and a parser puts our script in the head.
func TestInjectFixtures(t *testing.T) {
	cases := []struct {
		file, contentType, result string
	}{
		{"landing.html", "text/html; charset=utf-8", "injected"},
		{"wordpress-cp1251.html", "text/html", "injected"},
		{"old-koi8r.html", "text/html; charset=koi8-r", "injected"},
		{"tilda-nonce.html", "text/html", "injected"},
		{"no-head.html", "text/html", "injected"},
		{"page.xhtml", "text/html", "injected"},
		{"htmx-partial.html", "text/html; charset=utf-8", "fragment"},
		{"turbo-stream.html", "text/html", "fragment"},
		{"already.html", "text/html", "already"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			page, err := os.ReadFile(filepath.Join("testdata/inject", c.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{0, 1, 7, 100} {
				resp := response{status: 200, header: map[string]string{"Content-Type": c.contentType}, body: page, chunk: size}
				tap, result, err := run(t, getPage(), InjectConfig{}, resp)
				if err != nil || result != c.result {
					t.Fatalf("writes of %d: result %q err %v", size, result, err)
				}
				out := tap.body.Bytes()
				if c.result != "injected" {
					if !bytes.Equal(out, page) {
						t.Fatalf("writes of %d: page changed", size)
					}
					continue
				}
				if at := tagInserted(page, out, []byte(testTag)); at < 0 {
					t.Fatalf("writes of %d: output is not the page plus one tag:\n%s", size, out)
				}
				if parent := scriptParent(t, out); parent != "head" {
					t.Fatalf("writes of %d: a parser puts the script in <%s>", size, parent)
				}
			}
		})
	}
}

// TestInjectLegacyCharsets pins the exact offset in cp1251 and koi8-r pages:
// right after <head>, whatever the bytes around it.
func TestInjectLegacyCharsets(t *testing.T) {
	for _, file := range []string{"wordpress-cp1251.html", "old-koi8r.html"} {
		page, err := os.ReadFile(filepath.Join("testdata/inject", file))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexFunc(page, func(r rune) bool { return r == 0xFFFD }) < 0 {
			t.Fatalf("%s: expected non-UTF-8 bytes in the fixture", file)
		}
		tap, _, _ := run(t, getPage(), InjectConfig{}, response{status: 200,
			header: map[string]string{"Content-Type": "text/html"}, body: page, chunk: 3})
		at := bytes.Index(page, []byte("<head>")) + len("<head>")
		want := append(append(append([]byte{}, page[:at]...), testTag...), page[at:]...)
		if !bytes.Equal(tap.body.Bytes(), want) {
			t.Fatalf("%s: tag misplaced:\n%s", file, tap.body.Bytes())
		}
	}
}

// TestInjectCharsetPrescan: a <meta charset> that the tag would push past
// the browser's 1024-byte prescan gets the tag after it.
func TestInjectCharsetPrescan(t *testing.T) {
	meta := `<meta charset="windows-1251">`
	pad := strings.Repeat(" ", prescanPad(meta))
	in := "<!DOCTYPE html><html><head>" + pad + meta + "<title>\xcf\xf0\xe8\xe2\xe5\xf2</title></head>"
	end := strings.Index(in, meta) + len(meta)
	if end > charsetPrescan || end+len(testTag) <= charsetPrescan {
		t.Fatalf("bad fixture: meta ends at %d", end)
	}
	tap, _, _ := run(t, getPage(), InjectConfig{}, response{status: 200,
		header: map[string]string{"Content-Type": "text/html"}, body: []byte(in)})
	if want := in[:end] + testTag + in[end:]; tap.body.String() != want {
		t.Errorf("no charset header: tag not after the meta")
	}
	// With the charset in the header the meta does not matter.
	tap, _, _ = run(t, getPage(), InjectConfig{}, response{status: 200,
		header: map[string]string{"Content-Type": "text/html; charset=windows-1251"}, body: []byte(in)})
	at := strings.Index(in, "<head>") + len("<head>")
	if want := in[:at] + testTag + in[at:]; tap.body.String() != want {
		t.Errorf("charset header: tag not after <head>")
	}
}

func prescanPad(meta string) int {
	return charsetPrescan - len("<!DOCTYPE html><html><head>") - len(meta) - 10
}

// tagInserted returns where tag was inserted into in to give out, or -1.
func tagInserted(in, out, tag []byte) int {
	return insertedWhere(in, out, len(tag), func(b []byte) bool { return bytes.Equal(b, tag) })
}

// insertedWhere returns where tagLen bytes accepted by isTag were inserted
// into in to give out, or -1.
func insertedWhere(in, out []byte, tagLen int, isTag func([]byte) bool) int {
	if len(out) != len(in)+tagLen {
		return -1
	}
	pre := 0
	for pre < len(in) && in[pre] == out[pre] {
		pre++
	}
	suf := 0
	for suf < len(in) && in[len(in)-1-suf] == out[len(out)-1-suf] {
		suf++
	}
	for at := max(0, len(in)-suf); at <= pre; at++ {
		if isTag(out[at : at+tagLen]) {
			return at
		}
	}
	return -1
}

// scriptParent parses a page as a browser would and names the element
// holding our script ("" when there is none, or it is there twice).
func scriptParent(t testing.TB, page []byte) string {
	t.Helper()
	// Browsers drop a BOM while decoding; this parser would take it for text.
	doc, err := nethtml.Parse(bytes.NewReader(bytes.TrimPrefix(page, []byte("\ufeff"))))
	if err != nil {
		t.Fatal(err)
	}
	var parents []string
	var walk func(n *nethtml.Node)
	walk = func(n *nethtml.Node) {
		if n.Type == nethtml.ElementNode && n.Data == "script" {
			for _, a := range n.Attr {
				if a.Key == "src" && a.Val == testSrc {
					parents = append(parents, n.Parent.Data)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(parents) != 1 {
		return fmt.Sprint(parents)
	}
	return parents[0]
}

// genPage builds a random page and where the tag belongs in it (-1: a
// fragment, not injected).
func genPage(r *rand.Rand) (string, int) {
	pick := func(xs ...string) string { return xs[r.Intn(len(xs))] }
	ws := func() string { return pick("", "", " ", "\n", "\r\n\t") }
	var b strings.Builder
	document := false
	fragment := r.Intn(4) == 0 // no doctype, <html> or <head>
	if r.Intn(10) == 0 {
		b.WriteString("\ufeff")
	}
	if r.Intn(20) == 0 {
		b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + ws())
	}
	if !fragment && r.Intn(3) > 0 {
		b.WriteString(pick("<!DOCTYPE html>", "<!doctype HTML>",
			`<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">`) + ws())
		document = true
	}
	for i := r.Intn(3); i > 0; i-- {
		b.WriteString(pick("<!-- <head> -->", "<!---->", "<!-- a -- b > c -->",
			`<!--[if lt IE 9]><html class="ie"><head><![endif]-->`,
			"<!--[if !IE]><!-->", "<!--<![endif]-->") + ws())
	}
	if !fragment && r.Intn(10) < 7 {
		b.WriteString(pick("<html>", `<HTML lang="ru" class='no-js'>`, "<html\n data-x=\"<head>\">", `<html xmlns="http://www.w3.org/1999/xhtml">`) + ws())
		document = true
	}
	ins := -1
	if document && r.Intn(3) == 0 {
		ins = b.Len()
		for i := 1 + r.Intn(3); i > 0; i-- {
			b.WriteString(pick(`<script>document.write("<head>"); if (a<b) {}</script>`,
				`<title>Заголовок <head> &amp; </title>`, `<meta charset="utf-8">`,
				"<style>head > p { content: '<head>' }</style>", `<noscript><head></noscript>`,
				`<link rel="icon" href="/favicon.ico">`) + ws())
		}
	}
	if !fragment && r.Intn(10) < 7 {
		b.WriteString(pick("<head>", "<HEAD>", "<head \n class=\"a\" data-x='>'>", "<Head/>"))
		ins = b.Len()
		document = true
		for i := r.Intn(4); i > 0; i-- {
			b.WriteString(ws() + pick(`<meta charset="utf-8">`, `<title>a <b>c</b></title>`,
				`<script>if (a<b) { s = "</scr" + "ipt><head>"; }</script>`, `<![CDATA[ x ]]>`,
				`<script src="/js/app.js" defer></script>`, `<!-- </head> -->`))
		}
		b.WriteString(ws() + pick("</head>", "", "</HEAD >"))
	}
	if ins < 0 && document {
		ins = b.Len()
	}
	// The body starts with an element, so a headless page gets the tag just
	// before it.
	b.WriteString(pick(`<body class="x">`, "<div>", `<p>text`, `<textarea><head></textarea>`, "<table><tr><td>1</td></tr></table>"))
	for i := r.Intn(4); i > 0; i-- {
		b.WriteString(ws() + pick("<p>Привет, <b>мир</b></p>", `<form action="/send"><input name="phone"></form>`,
			"<script>var h = '<head>';</script>", "</body>", "</html>", "text & more"))
	}
	if !document {
		ins = -1
	}
	return b.String(), ins
}

// TestInjectProperty: over generated pages written in random pieces, the
// output less the tag is the input, the tag is where the generator put the
// insertion point, and a parser finds the script in the head.
func TestInjectProperty(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var injected, fragments int
	defer func() {
		// The generator must keep producing both kinds.
		if !t.Failed() && (injected < 1000 || fragments < 300) {
			t.Errorf("%d injected, %d fragments", injected, fragments)
		}
	}()
	for i := 0; i < 3000; i++ {
		page, ins := genPage(r)
		tap := newTap()
		w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		for rest := []byte(page); len(rest) > 0; {
			n := min(len(rest), 1+r.Intn(40))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		out := tap.body.Bytes()
		if ins < 0 {
			if string(out) != page {
				t.Fatalf("fragment changed:\n%q\n%q", page, out)
			}
			fragments++
			continue
		}
		injected++
		want := page[:ins] + testTag + page[ins:]
		if string(out) != want {
			t.Fatalf("page %d:\n in  %q\n got %q\nwant %q", i, page, out, want)
		}
		if parent := scriptParent(t, out); parent != "head" {
			t.Fatalf("page %d: a parser puts the script in <%s>:\n%q", i, parent, out)
		}
	}
}

func TestInjectHeaders(t *testing.T) {
	page := "<html><head></head><body>" + strings.Repeat("x", 100) + "</body></html>"
	headOnly := "<html><head><title>no verdict before the end</title>" // held whole
	cases := []struct {
		name, body, length string
		chunk              int
		etag, wantETag     string
		wantLength         string
	}{
		{"length known upfront", page, strconv.Itoa(len(page)), 10, `"v1"`, `W/"v1"`, strconv.Itoa(len(page) + len(testTag))},
		{"whole body held", headOnly, strconv.Itoa(len(headOnly)), 0, `"v1"`, `W/"v1"`, strconv.Itoa(len(headOnly) + len(testTag))},
		{"whole body held, no length", headOnly, "", 3, `"v1"`, `W/"v1"`, strconv.Itoa(len(headOnly) + len(testTag))},
		{"length unknown, streamed", page, "", 10, `W/"v2"`, `W/"v2"`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			header := map[string]string{"Content-Type": "text/html", "Etag": c.etag,
				"Last-Modified": "Wed, 25 Nov 2026 10:00:00 GMT", "Accept-Ranges": "bytes"}
			if c.length != "" {
				header["Content-Length"] = c.length
			}
			tap, result, err := run(t, getPage(), InjectConfig{}, response{status: 200, header: header, body: []byte(c.body), chunk: c.chunk})
			if err != nil || result != "injected" {
				t.Fatalf("result %q err %v", result, err)
			}
			h := tap.sent
			if got := h.Get("Content-Length"); got != c.wantLength {
				t.Errorf("Content-Length %q, want %q", got, c.wantLength)
			}
			if c.wantLength != "" && strconv.Itoa(tap.body.Len()) != c.wantLength {
				t.Errorf("body is %d bytes, Content-Length says %s", tap.body.Len(), c.wantLength)
			}
			if got := h.Get("Etag"); got != c.wantETag {
				t.Errorf("Etag %q, want %q", got, c.wantETag)
			}
			if h.Get("Last-Modified") == "" || h.Get("Accept-Ranges") != "" {
				t.Errorf("Last-Modified %q Accept-Ranges %q", h.Get("Last-Modified"), h.Get("Accept-Ranges"))
			}
		})
	}
}

// TestInjectUntouched: these responses reach the underlying writer as they
// are written, the very slices, with their headers unchanged.
func TestInjectUntouched(t *testing.T) {
	page := []byte("<!DOCTYPE html><html><head><title>t</title></head><body>" + strings.Repeat("y", 300) + "</body></html>")
	html := map[string]string{"Content-Type": "text/html", "Etag": `"e"`, "Content-Length": strconv.Itoa(len(page))}
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for a, b := range html {
			h[a] = b
		}
		h[k] = v
		return h
	}
	req := func(method string, hdr ...string) *http.Request {
		r := getPage()
		r.Method = method
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	cases := []struct {
		name   string
		req    *http.Request
		status int
		header map[string]string
		result string
		direct bool // Wrap hands back the writer itself
	}{
		{"HEAD", req(http.MethodHead), 200, html, "skipped_head", true},
		{"Range request", req(http.MethodGet, "Range", "bytes=0-10"), 200, html, "skipped_range", true},
		{"206", req(http.MethodGet, "Range", "bytes=0-10"), 206, with("Content-Range", "bytes 0-10/400"), "skipped_range", true},
		{"206 without Range", req(http.MethodGet), 206, html, "skipped_status", false},
		{"304", req(http.MethodGet), 304, html, "skipped_status", false},
		{"204", req(http.MethodGet), 204, html, "skipped_status", false},
		{"404 page", req(http.MethodGet), 404, html, "skipped_status", false},
		{"image", req(http.MethodGet), 200, with("Content-Type", "image/png"), "skipped_type", false},
		{"no content type", req(http.MethodGet), 200, with("Content-Type", ""), "skipped_type", false},
		{"json", req(http.MethodPost), 200, with("Content-Type", "application/json"), "skipped_type", false},
		{"event stream", req(http.MethodGet), 200, with("Content-Type", "text/event-stream"), "skipped_type", false},
		{"no-transform", req(http.MethodGet), 200, with("Cache-Control", "public, no-transform"), "skipped_no_transform", false},
		{"attachment", req(http.MethodGet), 200, with("Content-Disposition", `attachment; filename="a.html"`), "skipped_attachment", false},
		{"utf-16", req(http.MethodGet), 200, with("Content-Type", "text/html; charset=UTF-16LE"), "skipped_charset", false},
		{"deflate", req(http.MethodGet), 200, with("Content-Encoding", "deflate"), "skipped_encoding", false},
		{"stacked codings", req(http.MethodGet), 200, with("Content-Encoding", "gzip, br"), "skipped_encoding", false},
		{"upgrade", req(http.MethodGet, "Connection", "Upgrade", "Upgrade", "websocket"), 101, html, "skipped_upgrade", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tap := newTap()
			var result string
			w, finish := Wrap(tap, c.req, &InjectConfig{ScriptSrc: testSrc, OnResult: func(r string) { result = r }})
			if _, isTap := w.(*tapWriter); isTap != c.direct {
				t.Fatalf("writer handed back is %T", w)
			}
			for k, v := range c.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(c.status)
			for i, rest := 0, page; len(rest) > 0; i++ {
				n := min(len(rest), 37)
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				// Unbuffered and uncopied: the same slice is already below.
				last := tap.writes[len(tap.writes)-1]
				if len(tap.writes) != i+1 || &last[0] != &rest[0] || len(last) != n {
					t.Fatalf("write %d did not pass straight through", i)
				}
				rest = rest[n:]
			}
			if err := finish(); err != nil {
				t.Fatal(err)
			}
			if result != c.result {
				t.Errorf("result %q, want %q", result, c.result)
			}
			if tap.status != c.status || !bytes.Equal(tap.body.Bytes(), page) {
				t.Errorf("status %d, body changed: %v", tap.status, !bytes.Equal(tap.body.Bytes(), page))
			}
			for k, v := range c.header {
				if got := tap.sent.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestInjectReadFrom(t *testing.T) {
	img := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 5000)
	tap := newTap()
	w, finish := Wrap(tapReaderFrom{tap}, getPage(), &InjectConfig{ScriptSrc: testSrc})
	w.Header().Set("Content-Type", "image/png")
	// A reader without WriteTo, as io.Copy would otherwise not ask ReadFrom.
	if _, err := io.Copy(w, struct{ io.Reader }{bytes.NewReader(img)}); err != nil {
		t.Fatal(err)
	}
	_ = finish()
	if tap.readFroms != 1 || !bytes.Equal(tap.body.Bytes(), img) {
		t.Fatalf("pass-through did not use the underlying ReadFrom (%d calls)", tap.readFroms)
	}

	page := "<html><head></head><body>" + strings.Repeat("z", 100<<10) + "</body></html>"
	tap = newTap()
	w, finish = Wrap(tapReaderFrom{tap}, getPage(), &InjectConfig{ScriptSrc: testSrc})
	w.Header().Set("Content-Type", "text/html")
	if _, err := io.Copy(w, strings.NewReader(page)); err != nil {
		t.Fatal(err)
	}
	_ = finish()
	if tap.body.String() != strings.Replace(page, "<head>", "<head>"+testTag, 1) {
		t.Fatal("ReadFrom on an HTML page did not inject")
	}
}

// TestInjectFlushWhileHolding: a Flush in the middle of the head waits for
// the verdict; one after it goes through.
func TestInjectFlushWhileHolding(t *testing.T) {
	tap := newTap()
	w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc})
	w.Header().Set("Content-Type", "text/html")
	rc := http.NewResponseController(w)
	io.WriteString(w, "<html><head><title>t")
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	if tap.status != 0 || tap.body.Len() != 0 || tap.flushes != 0 {
		t.Fatalf("flushed while holding: status %d, %d bytes", tap.status, tap.body.Len())
	}
	io.WriteString(w, "</title></head><body>")
	if tap.flushes != 1 || !strings.Contains(tap.body.String(), testTag) {
		t.Fatalf("postponed flush not done at the verdict: %d flushes, %q", tap.flushes, tap.body.String())
	}
	io.WriteString(w, "<p>more")
	if err := rc.Flush(); err != nil || tap.flushes != 2 {
		t.Fatalf("flush after the verdict: %v, %d", err, tap.flushes)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
}

func TestInjectCSPNonce(t *testing.T) {
	withNonce := func(n string) string { return `<script src="/_leadproxy/c.js" defer nonce="` + n + `"></script>` }
	cases := []struct {
		name string
		csp  []string
		page string
		tag  string
	}{
		{"header, nonce'd script in head", []string{"default-src 'self'; script-src 'nonce-abc123' 'strict-dynamic'"},
			`<html><head>§<script nonce="abc123">x()</script></head><body>`, withNonce("abc123")},
		{"header, nonce'd script in body", []string{"script-src 'nonce-Zm9v+/=='"},
			`<html><head>§<title>t</title></head><body><p>x</p><script nonce="Zm9v+/==">y()</script>`, withNonce("Zm9v+/==")},
		{"header, no script uses it", []string{"script-src 'nonce-abc123'"},
			`<html><head>§<title>t</title></head><body><script src="/a.js"></script></body></html>`, testTag},
		{"two policies", []string{"img-src *", "object-src 'none', script-src 'self' 'nonce-second'"},
			`<html><head>§<script nonce="second"></script>`, withNonce("second")},
		{"script-src without nonce governs", []string{"default-src 'nonce-dflt'; script-src 'self'"},
			`<html><head>§<script nonce="dflt"></script>`, testTag},
		{"default-src nonce", []string{"default-src 'nonce-dflt'"},
			`<html><head>§<script nonce="dflt"></script>`, withNonce("dflt")},
		{"script-src-elem first", []string{"script-src 'nonce-aaa'; script-src-elem 'nonce-bbb'"},
			`<html><head>§<script nonce="bbb"></script>`, withNonce("bbb")},
		{"bad nonce ignored", []string{`script-src 'nonce-a"b'`},
			`<html><head>§<script nonce="x"></script>`, testTag},
		{"meta before head", nil,
			`<html><meta http-equiv="Content-Security-Policy" content="script-src 'nonce-m1'"><head>§<script nonce="m1"></script>`, withNonce("m1")},
		{"meta in head", nil,
			`<html><head>§<meta http-equiv="content-security-policy" content="script-src 'nonce-m2'"><script nonce="m2"></script></head>`, withNonce("m2")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := strings.Replace(c.page, mark, "", 1)
			want := strings.Replace(c.page, mark, c.tag, 1)
			for _, size := range []int{0, 1, 5} {
				tap := newTap()
				w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc})
				w.Header().Set("Content-Type", "text/html")
				for _, v := range c.csp {
					w.Header().Add("Content-Security-Policy", v)
				}
				if err := writeChunks(w, []byte(in), size); err != nil {
					t.Fatal(err)
				}
				if err := finish(); err != nil {
					t.Fatal(err)
				}
				if got := tap.body.String(); got != want {
					t.Fatalf("writes of %d:\n got %s\nwant %s", size, got, want)
				}
			}
		})
	}
}

// TestInjectNonceFlush: once the head is read, a Flush stops the search for
// a nonce'd script and the tag takes the policy's nonce.
func TestInjectNonceFlush(t *testing.T) {
	tap := newTap()
	w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc})
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Security-Policy", "script-src 'nonce-n1'")
	io.WriteString(w, "<html><head></head><body><p>streaming")
	if tap.body.Len() != 0 {
		t.Fatal("sent before the nonce was settled")
	}
	http.NewResponseController(w).Flush()
	want := `<html><head><script src="/_leadproxy/c.js" defer nonce="n1"></script></head><body><p>streaming`
	if tap.body.String() != want || tap.flushes != 1 {
		t.Fatalf("got %q, %d flushes", tap.body.String(), tap.flushes)
	}
	_ = finish()
}

// TestInjectLargePage: a 20 MB page streams through with at most MaxPrefix
// held, plain and gzip-encoded, injected or not.
func TestInjectLargePage(t *testing.T) {
	const size = 20 << 20
	body := make([]byte, 0, size)
	body = append(body, "<!DOCTYPE html><html><head><title>big</title></head><body>"...)
	row := []byte("<tr><td>Заявка</td><td>+7 999 123-45-67</td></tr>\n")
	for len(body)+len(row) < size {
		body = append(body, row...)
	}
	noHead := bytes.Repeat([]byte("<!-- x -->\n"), size/11) // no insertion point, ever
	for _, c := range []struct {
		name   string
		body   []byte
		coding string
		result string
	}{
		{"plain", body, "", "injected"},
		{"gzip", body, "gzip", "injected"},
		{"plain, no point", noHead, "", "no_point"},
		{"gzip, no point", noHead, "gzip", "no_point"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := c.body
			if c.coding != "" {
				sent = encode(t, c.coding, c.body)
			}
			// Plain output is hashed, encoded output (small) kept.
			hashed := &hashWriter{header: http.Header{}, h: sha256.New()}
			tap := newTap()
			var under http.ResponseWriter = hashed
			if c.coding != "" {
				under = tap
			}
			var result string
			cfg := &InjectConfig{ScriptSrc: testSrc, OnResult: func(r string) { result = r }}
			w, finish := Wrap(under, getPage(), cfg)
			w.Header().Set("Content-Type", "text/html")
			if c.coding != "" {
				w.Header().Set("Content-Encoding", c.coding)
			}
			if err := writeChunks(w, sent, 32<<10); err != nil {
				t.Fatal(err)
			}
			if err := finish(); err != nil {
				t.Fatal(err)
			}
			iw := w.(*injector)
			if iw.peakHeld > DefaultMaxPrefix || iw.peakRaw > DefaultMaxPrefix {
				t.Fatalf("held %d decoded and %d encoded bytes, limit %d", iw.peakHeld, iw.peakRaw, DefaultMaxPrefix)
			}
			if result != c.result {
				t.Fatalf("result %q", result)
			}
			want := c.body
			if c.result == "injected" {
				at := len("<!DOCTYPE html><html><head>")
				want = append(append(append([]byte{}, c.body[:at]...), testTag...), c.body[at:]...)
			}
			got := sha256.Sum256(nil)
			switch {
			case c.coding == "":
				copy(got[:], hashed.h.Sum(nil))
			case c.result == "injected":
				out, err := decode(c.coding, tap.body.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				got = sha256.Sum256(out)
			default:
				if !bytes.Equal(tap.body.Bytes(), sent) {
					t.Fatal("encoded bytes changed")
				}
				got = sha256.Sum256(c.body)
			}
			if got != sha256.Sum256(want) {
				t.Fatal("output differs")
			}
		})
	}
}

// hashWriter keeps a hash of the body and nothing else.
type hashWriter struct {
	header http.Header
	h      hash.Hash
	n      int
}

func (h *hashWriter) Header() http.Header { return h.header }
func (h *hashWriter) WriteHeader(int)     {}
func (h *hashWriter) Write(p []byte) (int, error) {
	h.n += len(p)
	return h.h.Write(p)
}

func encode(t testing.TB, coding string, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		z, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = z
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decode(coding string, p []byte) ([]byte, error) {
	var r io.Reader
	switch coding {
	case "gzip":
		z, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		r = z
	case "br":
		r = brotli.NewReader(bytes.NewReader(p))
	case "zstd":
		z, err := zstd.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		defer z.Close()
		r = z
	}
	return io.ReadAll(r)
}

func TestInjectEncodings(t *testing.T) {
	page := []byte("<!DOCTYPE html><html><head><meta charset=utf-8><title>Окна</title></head><body>" +
		strings.Repeat("<p>Текст страницы, много текста.</p>\n", 3000) + "</body></html>")
	want := bytes.Replace(page, []byte("<head>"), []byte("<head>"+testTag), 1)
	fragment := []byte("<div>" + strings.Repeat("<p>partial</p>", 500) + "</div>")
	for _, coding := range []string{"gzip", "br", "zstd"} {
		for _, size := range []int{0, 1, 13, 4096} {
			t.Run(fmt.Sprintf("%s/%d", coding, size), func(t *testing.T) {
				sent := encode(t, coding, page)
				if size == 1 && len(sent) > 20000 {
					t.Fatalf("encoded page too big for byte writes: %d", len(sent))
				}
				resp := response{status: 200, chunk: size, body: sent, header: map[string]string{
					"Content-Type": "text/html", "Content-Encoding": coding, "Etag": `"x"`,
					"Content-Length": strconv.Itoa(len(sent))}}
				tap, result, err := run(t, getPage(), InjectConfig{}, resp)
				if err != nil || result != "injected" {
					t.Fatalf("result %q err %v", result, err)
				}
				// A gzip page is spliced as it streams; br and zstd are held
				// to their end (reencode.go) and get their length.
				wantCL := ""
				if coding != "gzip" {
					wantCL = strconv.Itoa(tap.body.Len())
				}
				if tap.sent.Get("Content-Encoding") != coding || tap.sent.Get("Content-Length") != wantCL || tap.sent.Get("Etag") != `W/"x"` {
					t.Fatalf("headers %v", tap.sent)
				}
				got, err := decode(coding, tap.body.Bytes())
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("decoded output differs (err %v)", err)
				}

				// Not injected: the encoded bytes go out as they came.
				resp.body = encode(t, coding, fragment)
				resp.header["Content-Length"] = strconv.Itoa(len(resp.body))
				tap, result, err = run(t, getPage(), InjectConfig{}, resp)
				if err != nil || result != "fragment" || !bytes.Equal(tap.body.Bytes(), resp.body) {
					t.Fatalf("fragment: result %q err %v, same bytes %v", result, err, bytes.Equal(tap.body.Bytes(), resp.body))
				}
				if tap.sent.Get("Content-Length") != resp.header["Content-Length"] || tap.sent.Get("Etag") != `"x"` {
					t.Fatalf("fragment headers changed: %v", tap.sent)
				}
			})
		}
	}
}

// randomPage is HTML that compresses poorly, so its encoded form is larger
// than MaxPrefix and spans many blocks.
func randomPage(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	var b strings.Builder
	b.WriteString("<html><head></head><body>")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "<p>%d %x</p>", i, r.Int63())
	}
	return []byte(b.String())
}

// TestInjectEncodedOneWrite: an encoded body larger than MaxPrefix written
// in one call is still injected, holding no more than MaxPrefix of it.
func TestInjectEncodedOneWrite(t *testing.T) {
	page := randomPage(3, 45000)
	for _, coding := range []string{"gzip", "br", "zstd"} {
		sent := encode(t, coding, page)
		if len(sent) <= DefaultMaxPrefix {
			t.Fatalf("%s: encoded page only %d bytes", coding, len(sent))
		}
		tap := newTap()
		w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc})
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", coding)
		if _, err := w.Write(sent); err != nil {
			t.Fatal(err)
		}
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		if iw := w.(*injector); iw.peakRaw > DefaultMaxPrefix || iw.peakHeld > DefaultMaxPrefix {
			t.Fatalf("%s: held %d encoded, %d decoded", coding, iw.peakRaw, iw.peakHeld)
		}
		got, err := decode(coding, tap.body.Bytes())
		if err != nil || tagInserted(page, got, []byte(testTag)) != len("<html><head>") {
			t.Fatalf("%s: not injected after <head> (err %v)", coding, err)
		}
	}
}

// flushTap is a tapWriter that signals its flushes.
type flushTap struct {
	*tapWriter
	flushed chan struct{}
}

func (t flushTap) Flush() { t.tapWriter.Flush(); t.flushed <- struct{}{} }

// TestInjectEncodedFlush: a Flush after the verdict pushes the re-encoded
// bytes out, so a client can already decode the page's start: at once for
// gzip; for br and zstd, held to check their size, once FlushHold has
// passed without the page's end (the test waits for the flush, whenever
// it comes). A page whose end follows the Flush is sent whole, checked,
// with a Content-Length.
func TestInjectEncodedFlush(t *testing.T) {
	for _, coding := range []string{"gzip", "br", "zstd"} {
		for _, ends := range []bool{false, true} {
			var up bytes.Buffer
			enc := newBodyEncoder(coding, &up) // the upstream streams and flushes too
			tap := flushTap{newTap(), make(chan struct{}, 4)}
			hold := time.Millisecond
			if ends {
				hold = time.Hour // the end comes first, whatever the machine's speed
			}
			w, finish := Wrap(tap, getPage(), &InjectConfig{ScriptSrc: testSrc, FlushHold: hold})
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", coding)
			io.WriteString(enc, "<!DOCTYPE html><html><head><title>t</title></head><body><p>first")
			enc.Flush()
			w.Write(up.Bytes())
			up.Reset()
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Fatal(err)
			}
			if ends && coding != "gzip" {
				io.WriteString(enc, " and the rest</p></body></html>")
				enc.Close()
				w.Write(up.Bytes())
				if err := finish(); err != nil {
					t.Fatal(err)
				}
				if tap.flushes != 0 || tap.sent.Get("Content-Length") != strconv.Itoa(tap.body.Len()) {
					t.Fatalf("%s: ended after the Flush: %d flushes, Content-Length %q for %d bytes", coding, tap.flushes, tap.sent.Get("Content-Length"), tap.body.Len())
				}
				continue
			}
			<-tap.flushed
			part := readSome(t, coding, tap.body.Bytes())
			if !strings.Contains(part, testTag+"<title>t</title></head><body><p>first") {
				t.Fatalf("%s: flushed bytes decode to %q", coding, part)
			}
			io.WriteString(enc, " and the rest</p></body></html>")
			enc.Close()
			w.Write(up.Bytes())
			if err := finish(); err != nil {
				t.Fatal(err)
			}
			got, err := decode(coding, tap.body.Bytes())
			if err != nil || !strings.HasSuffix(string(got), "first and the rest</p></body></html>") {
				t.Fatalf("%s: %q %v", coding, got, err)
			}
		}
	}
}

// readSome decodes what it can of an unfinished encoded stream.
func readSome(t *testing.T, coding string, p []byte) string {
	t.Helper()
	var r io.Reader
	switch coding {
	case "gzip":
		z, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		r = z
	case "br":
		r = brotli.NewReader(bytes.NewReader(p))
	case "zstd":
		z, err := zstd.NewReader(bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		defer z.Close()
		r = z
	}
	var out bytes.Buffer
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

// TestInjectBadEncoding: a body that does not decode goes out untouched
// while nothing was sent; once the re-encoded page is under way, the error
// leaves it unterminated, so no client takes it for a whole page.
func TestInjectBadEncoding(t *testing.T) {
	// Random words compress into many blocks, so the verdict comes long
	// before the damage.
	page := randomPage(2, 20000)
	good := encode(t, "gzip", page)
	corruptTail := append([]byte{}, good...)
	for i := len(good) * 3 / 4; i < len(good)-8; i += 97 {
		corruptTail[i] ^= 0x5a
	}
	cases := []struct {
		name   string
		coding string
		body   []byte
		result string
		fails  bool
	}{
		{"not gzip at all", "gzip", page, "error", false},
		{"not brotli", "br", []byte("<html><head></head></html>"), "error", false},
		{"not zstd", "zstd", []byte("<html><head></head></html>"), "error", false},
		{"truncated", "gzip", good[:len(good)/2], "error", true},
		{"corrupt tail", "gzip", corruptTail, "error", true},
		{"trailing garbage", "gzip", append(append([]byte{}, good...), "<script>evil()</script>"...), "error", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := response{status: 200, chunk: 1000, body: c.body,
				header: map[string]string{"Content-Type": "text/html", "Content-Encoding": c.coding}}
			tap, result, err := run(t, getPage(), InjectConfig{}, resp)
			if result != c.result {
				t.Fatalf("result %q", result)
			}
			if !c.fails {
				if err != nil || !bytes.Equal(tap.body.Bytes(), c.body) {
					t.Fatalf("undecodable body not passed untouched: err %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("finish reported no error")
			}
			if _, err := decode(c.coding, tap.body.Bytes()); err == nil {
				t.Fatal("the client would take the output for a complete page")
			}
		})
	}
}

// TestInjectPumpStopsWithRequest: when finish is never called (a handler
// panicked), the decoding goroutine ends with the request's context.
func TestInjectPumpStopsWithRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, _ := Wrap(newTap(), getPage().WithContext(ctx), &InjectConfig{ScriptSrc: testSrc})
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Encoding", "gzip")
	sent := encode(t, "gzip", []byte("<html><head><title>never finished"))
	if _, err := w.Write(sent[:len(sent)/2]); err != nil {
		t.Fatal(err)
	}
	done := w.(*injector).pump.done
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("decoder goroutine still running after the request ended")
	}
}

// TestInjectSSE: an event written and flushed through the wrapper reaches a
// real client before the handler returns.
func TestInjectSSE(t *testing.T) {
	got := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw, finish := Wrap(w, r, &InjectConfig{ScriptSrc: testSrc})
		defer finish()
		iw.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(iw, "data: one\n\n")
		if err := http.NewResponseController(iw).Flush(); err != nil {
			t.Error(err)
		}
		select {
		case <-got:
		case <-time.After(20 * time.Second):
			t.Error("client never saw the event")
		}
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("read %q: %v", line, err)
	}
	close(got)
}

// TestInjectHijack: an Upgrade echo over a real connection, on the writer
// Wrap returns, both for an Upgrade request and through the wrapper itself.
func TestInjectHijack(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw, finish := Wrap(w, r, &InjectConfig{ScriptSrc: testSrc})
		defer finish()
		conn, brw, err := http.NewResponseController(iw).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString(line)
		brw.Flush()
	}))
	defer srv.Close()
	for _, headers := range []string{
		"Connection: Upgrade\r\nUpgrade: echo\r\n",
		"Accept: text/html\r\n", // not an upgrade: the wrapper's Unwrap serves Hijack
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n", headers)
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != 101 {
			t.Fatalf("%q: %v %v", headers, res, err)
		}
		io.WriteString(conn, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("%q: echo %q %v", headers, line, err)
		}
		conn.Close()
	}
}

// TestInjectOverHTTP: a page through a real server and client, with the
// wrapper's decision made at WriteHeader and the length fixed.
func TestInjectOverHTTP(t *testing.T) {
	page := "<!DOCTYPE html><html><head><title>t</title></head><body>hi</body></html>"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iw, finish := Wrap(w, r, &InjectConfig{ScriptSrc: testSrc})
		defer finish()
		iw.Header().Set("Content-Type", "text/html; charset=utf-8")
		iw.Header().Set("Content-Length", strconv.Itoa(len(page)))
		io.WriteString(iw, page)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Accept-Encoding", "gzip, br")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	want := strings.Replace(page, "<head>", "<head>"+testTag, 1)
	if err != nil || string(body) != want || res.ContentLength != int64(len(want)) {
		t.Fatalf("got %q (length %d): %v", body, res.ContentLength, err)
	}
}

func TestCSPNonceParse(t *testing.T) {
	cases := map[string]string{
		"script-src 'nonce-abc'":                                          "abc",
		"SCRIPT-SRC 'NONCE-abc' 'self'":                                   "abc",
		"default-src 'self'; script-src 'nonce-x' ; script-src 'nonce-y'": "x",
		"script-src 'self'; default-src 'nonce-x'":                        "",
		"script-src-elem 'self'; script-src 'nonce-x'":                    "",
		"object-src 'none'":                                               "",
		"script-src 'nonce-'":                                             "",
		"script-src 'nonce-a b'":                                          "",
		"script-src 'nonce-<x>'":                                          "",
	}
	for policy, want := range cases {
		if got := cspNonce([]string{policy}); got != want {
			t.Errorf("%q: %q, want %q", policy, got, want)
		}
	}
}

// TestInjectWriteError: a failing client write surfaces as the Write error.
func TestInjectWriteError(t *testing.T) {
	w, finish := Wrap(failWriter{http.Header{}}, getPage(), &InjectConfig{ScriptSrc: testSrc})
	w.Header().Set("Content-Type", "text/html")
	if _, err := io.WriteString(w, "<html><head></head><body>"); !errors.Is(err, errClientGone) {
		t.Fatalf("write error %v", err)
	}
	_ = finish()
}

var errClientGone = errors.New("client gone")

type failWriter struct{ h http.Header }

func (f failWriter) Header() http.Header       { return f.h }
func (f failWriter) WriteHeader(int)           {}
func (f failWriter) Write([]byte) (int, error) { return 0, errClientGone }

// discardWriter is the cheapest ResponseWriter, for benchmarks.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func benchServe(b *testing.B, body []byte, contentType string, wrap bool, cache *VerdictCache) {
	req := getPage()
	cfg := &InjectConfig{ScriptSrc: testSrc, Verdicts: cache}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d := &discardWriter{h: http.Header{"Content-Type": {contentType}}}
		var w http.ResponseWriter = d
		finish := func() error { return nil }
		if wrap {
			w, finish = Wrap(d, req, cfg)
		}
		w.WriteHeader(200)
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			w.Write(rest[:n])
			rest = rest[n:]
		}
		if err := finish(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInject50KB(b *testing.B) {
	page, err := os.ReadFile("testdata/inject/landing.html")
	if err != nil {
		b.Fatal(err)
	}
	for len(page) < 50<<10 {
		page = append(page, "<p>Окна ПВХ от производителя, замер бесплатно.</p>\n"...)
	}
	b.Run("plain", func(b *testing.B) { benchServe(b, page, "text/html; charset=utf-8", false, nil) })
	b.Run("inject", func(b *testing.B) { benchServe(b, page, "text/html; charset=utf-8", true, nil) })
	b.Run("inject-cached", func(b *testing.B) {
		benchServe(b, page, "text/html; charset=utf-8", true, NewVerdictCache())
	})
}

func BenchmarkPassThroughImage(b *testing.B) {
	img := bytes.Repeat([]byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3}, 128<<10) // 1 MiB
	b.Run("plain", func(b *testing.B) { benchServe(b, img, "image/png", false, nil) })
	b.Run("wrapped", func(b *testing.B) { benchServe(b, img, "image/png", true, nil) })
}
