package intercept

// The head scanner: it reads the start of a page to find where the tag goes
// and what the head says (an existing tag, nonces, a meta CSP or charset).

import (
	"bytes"
	"net/url"
	"strings"

	nethtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// pageVerdict is what the scan concluded about a page.
type pageVerdict int

const (
	verdictPending pageVerdict = iota
	verdictInsert
	verdictFragment
	verdictAlready
	verdictNoPoint
)

func (v pageVerdict) result() string {
	switch v {
	case verdictInsert:
		return InjectResultInjected
	case verdictFragment:
		return InjectResultFragment
	case verdictAlready:
		return InjectResultAlready
	}
	return InjectResultNoPoint
}

// Scan stages.
const (
	scanHead  = iota // looking for the insertion point and reading the head
	scanNonce        // head done; a CSP nonce is known, looking for a script that uses one
)

// pageScan reads the start of a page with the HTML tokenizer. Offsets are
// from the first body byte. The x/net tokenizer cannot resume after running
// out of input, so each scan starts a new one at next: a token boundary
// outside raw text, which is the only state the tokenizer carries between
// tokens. Tokens after next are read again, so noting them is idempotent.
type pageScan struct {
	src           string // our script's path, to spot a tag already there
	headerNonce   string // from the Content-Security-Policy header
	charsetHeader bool   // Content-Type names a charset: meta charset is moot

	next     int
	read     int // the end of the last token read: the verdict depends on no byte after it
	stage    int
	complete bool // the verdict came at the end of the body

	document    bool // a doctype, <html> or <head> was seen
	headEnd     int  // just after <head ...>, or -1
	first       int  // the first element of a headless document, or -1
	already     bool
	scriptNonce bool   // a script with a nonce attribute was seen
	metaNonce   string // from <meta http-equiv=Content-Security-Policy>
	charsetAt   [2]int // start and end of the first <meta charset>, or -1
}

func newPageScan(scriptSrc, nonce string, charsetHeader bool) pageScan {
	return pageScan{
		src:           scriptPath(scriptSrc),
		headerNonce:   nonce,
		charsetHeader: charsetHeader,
		headEnd:       -1,
		first:         -1,
		charsetAt:     [2]int{-1, -1},
	}
}

// pageToken is what the scan keeps of one tokenizer token.
type pageToken struct {
	tt         nethtml.TokenType
	name       atom.Atom
	start, end int
	blank      bool // text of only whitespace (and a BOM)
	rawText    bool // the contents of script, style, title...
	src        string
	nonce      bool
	httpEquiv  string
	content    string
	charset    bool
}

// scan reads data (the body so far; bytes from fresh on are new) and returns
// a verdict, or verdictPending when it needs more.
func (s *pageScan) scan(data []byte, fresh int, atEOF bool) pageVerdict {
	// No token can end without a '<' or '>' arriving, so a chunk without one
	// only waits for the next.
	if !atEOF && !bytes.ContainsAny(data[fresh:], "<>") {
		return verdictPending
	}
	z := nethtml.NewTokenizer(bytes.NewReader(data[s.next:]))
	off := s.next
	var pend pageToken // a text, comment or doctype: final once another token follows
	hasPend, afterRaw := false, false
	for {
		tt := z.Next()
		if tt == nethtml.ErrorToken {
			break
		}
		t := readPageToken(z, tt, off, afterRaw)
		if !atEOF && t.end == len(data) && (tt == nethtml.CommentToken || tt == nethtml.DoctypeToken || tt == nethtml.TextToken) {
			// x/net emits an unterminated comment, doctype or text at the end
			// of its input (a tag only once its '>' came): it may be cut
			// off by the end of the data so far, so wait for more. Then
			// every token the verdict rests on is whole (the VerdictCache
			// depends on it).
			break
		}
		off = t.end
		s.read = max(s.read, off)
		afterRaw = (tt == nethtml.StartTagToken || tt == nethtml.SelfClosingTagToken) && rawTextElement(t.name)
		if hasPend {
			hasPend = false
			if v := s.take(pend); v != verdictPending {
				return v
			}
			s.next = pend.end
		}
		switch tt {
		case nethtml.TextToken, nethtml.CommentToken, nethtml.DoctypeToken:
			pend, hasPend = t, true
			continue
		}
		if v := s.take(t); v != verdictPending {
			return v
		}
		if !afterRaw {
			s.next = t.end
		} else if skipRawText {
			// Nothing in raw text matters to the scan, and x/net reads it a
			// byte at a time: a head's inline styles and scripts can be most
			// of a page. A long one is skipped, going on with a new tokenizer
			// at its end tag, where the old one would have got to (a short
			// one is cheaper to read than a new tokenizer's buffer). One
			// whose end has not arrived waits for more, as it would.
			switch p, st := rawTextEnd(data, t.end, t.name); {
			case st == rawEnded && p-t.end >= rawSkipMin:
				s.next, off, afterRaw = p, p, false
				z = nethtml.NewTokenizer(bytes.NewReader(data[p:]))
			case st == rawOpen && !atEOF:
				return verdictPending
			}
		}
	}
	if !atEOF {
		return verdictPending
	}
	if hasPend {
		if v := s.take(pend); v != verdictPending {
			return v
		}
		off = pend.end
	}
	// The body ended: whatever is left unterminated after off stays after us.
	s.complete = true
	if s.stage == scanHead {
		if !s.document {
			return verdictFragment
		}
		if s.headEnd < 0 && s.first < 0 {
			s.first = off
		}
		if s.already {
			return verdictAlready
		}
	}
	return verdictInsert
}

func readPageToken(z *nethtml.Tokenizer, tt nethtml.TokenType, off int, afterRaw bool) pageToken {
	raw := z.Raw()
	t := pageToken{tt: tt, start: off, end: off + len(raw)}
	switch tt {
	case nethtml.TextToken:
		t.rawText = afterRaw
		t.blank = !afterRaw && blankText(raw)
	case nethtml.StartTagToken, nethtml.SelfClosingTagToken, nethtml.EndTagToken:
		name, more := z.TagName()
		t.name = atom.Lookup(name)
		if tt == nethtml.EndTagToken || (t.name != atom.Script && t.name != atom.Meta) {
			break
		}
		for more {
			var k, v []byte
			k, v, more = z.TagAttr()
			switch string(k) {
			case "src":
				t.src = string(v)
			case "nonce":
				t.nonce = true
			case "http-equiv":
				t.httpEquiv = strings.ToLower(strings.TrimSpace(string(v)))
			case "content":
				t.content = string(v)
			case "charset":
				t.charset = true
			}
		}
	}
	return t
}

// take notes one final token and returns a verdict if it settles the page.
func (s *pageScan) take(t pageToken) pageVerdict {
	if s.stage == scanNonce {
		if t.tt == nethtml.StartTagToken && t.name == atom.Script && t.nonce {
			s.scriptNonce = true
			return verdictInsert
		}
		return verdictPending
	}
	switch t.tt {
	case nethtml.CommentToken:
		return verdictPending
	case nethtml.DoctypeToken:
		s.document = true
		return verdictPending
	case nethtml.TextToken:
		if t.rawText || t.blank {
			return verdictPending
		}
		return s.headOver(t.start)
	case nethtml.EndTagToken:
		if headElement(t.name) {
			return verdictPending // </title>, </script>...
		}
		return s.headOver(t.start) // </head>, </html>, anything else
	}
	switch t.name {
	case atom.Html:
		s.document = true
		return verdictPending
	case atom.Head:
		if s.headEnd < 0 {
			s.headEnd, s.document = t.end, true
		}
		return verdictPending
	}
	if !headElement(t.name) {
		return s.headOver(t.start)
	}
	if !s.document {
		return verdictFragment // a partial starting with <link>, <script>...
	}
	if s.headEnd < 0 && s.first < 0 {
		s.first = t.start
	}
	s.note(t)
	return verdictPending
}

// note records what a head element tells about the page.
func (s *pageScan) note(t pageToken) {
	switch t.name {
	case atom.Script:
		if t.nonce {
			s.scriptNonce = true
		}
		if t.src != "" && scriptPath(t.src) == s.src {
			s.already = true
		}
	case atom.Meta:
		switch {
		case t.httpEquiv == "content-security-policy":
			if s.metaNonce == "" {
				s.metaNonce = cspNonce([]string{t.content})
			}
		case t.charset || (t.httpEquiv == "content-type" && strings.Contains(strings.ToLower(t.content), "charset")):
			if s.charsetAt[0] < 0 {
				s.charsetAt = [2]int{t.start, t.end}
			}
		}
	}
}

// headOver is reached at the first token that cannot be in a head.
func (s *pageScan) headOver(off int) pageVerdict {
	if !s.document {
		return verdictFragment
	}
	if s.headEnd < 0 && s.first < 0 {
		s.first = off
	}
	if s.already {
		return verdictAlready
	}
	if s.knownNonce() != "" && !s.scriptNonce {
		s.stage = scanNonce
		return verdictPending
	}
	return verdictInsert
}

// force gives a verdict on what has been seen, when no more can be held.
func (s *pageScan) force() pageVerdict {
	switch {
	case s.stage == scanNonce:
		return verdictInsert
	case s.headEnd < 0 && s.first < 0:
		return verdictNoPoint
	case s.already:
		return verdictAlready
	}
	return verdictInsert
}

func (s *pageScan) knownNonce() string {
	if s.headerNonce != "" {
		return s.headerNonce
	}
	return s.metaNonce
}

// nonce is the one our tag carries: the policy's, unless the whole page was
// read and no script uses a nonce.
func (s *pageScan) nonce() string {
	if s.scriptNonce || !s.complete {
		return s.knownNonce()
	}
	return ""
}

// insertion is where a tag of tagLen bytes goes: after <head ...>, else
// before the first element. A <meta charset> that the tag would push out of
// the browser's 1024-byte prescan gets the tag after it instead.
func (s *pageScan) insertion(tagLen int) int {
	at := s.headEnd
	if at < 0 {
		at = s.first
	}
	if c := s.charsetAt; !s.charsetHeader && c[0] >= at && c[1] <= charsetPrescan && c[1]+tagLen > charsetPrescan {
		at = c[1]
	}
	return at
}

// skipRawText is off only in the tests that compare the scan with and
// without rawTextEnd.
var skipRawText = true

// rawSkipMin is the shortest raw text skipped with rawTextEnd (a variable
// for the tests that compare skipping everything with skipping nothing).
var rawSkipMin = 2048

// rawTextEnd finds where the raw text that starts at from (after the start
// tag of element a) ends, as x/net's tokenizer does: at the first "</"
// followed by the element's name in any case and by whitespace, "/" or ">"
// (rawEnded, and its offset). rawOpen: that end is not in data yet.
// rawUnknown: plaintext (never ends), or a script whose text holds "<!--"
// (the escaped script states, where "</script>" may not end it); the
// tokenizer reads those itself.
func rawTextEnd(data []byte, from int, a atom.Atom) (int, rawState) {
	if a == atom.Plaintext || from > len(data) {
		return 0, rawUnknown
	}
	name := a.String()
	for i := from; ; {
		j := bytes.Index(data[i:], endTagOpen)
		if j < 0 {
			break
		}
		p := i + j
		k := p + len(endTagOpen) + len(name)
		if k >= len(data) {
			break // "</scr" at the end: the rest decides
		}
		if bytes.EqualFold(data[p+len(endTagOpen):k], []byte(name)) && rawEndDelimiter(data[k]) {
			if a == atom.Script && bytes.Contains(data[from:p], scriptEscape) {
				return 0, rawUnknown
			}
			return p, rawEnded
		}
		i = p + len(endTagOpen)
	}
	if a == atom.Script && bytes.Contains(data[from:], scriptEscape) {
		return 0, rawUnknown
	}
	return 0, rawOpen
}

type rawState int

const (
	rawUnknown rawState = iota
	rawEnded
	rawOpen
)

var endTagOpen, scriptEscape = []byte("</"), []byte("<!--")

func rawEndDelimiter(c byte) bool {
	switch c {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		return true
	}
	return false
}

// headElement reports elements that may come before <head> or inside it.
func headElement(a atom.Atom) bool {
	switch a {
	case atom.Base, atom.Basefont, atom.Bgsound, atom.Link, atom.Meta, atom.Noframes,
		atom.Noscript, atom.Script, atom.Style, atom.Template, atom.Title:
		return true
	}
	return false
}

// rawTextElement reports the start tags after which the tokenizer reads raw text.
func rawTextElement(a atom.Atom) bool {
	switch a {
	case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext,
		atom.Script, atom.Style, atom.Textarea, atom.Title, atom.Xmp:
		return true
	}
	return false
}

func blankText(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r', '\f':
		default:
			return false
		}
	}
	return true
}

// scriptPath is a script URL's path: our tag counts as present whatever its
// host, query or fragment.
func scriptPath(src string) string {
	if u, err := url.Parse(strings.TrimSpace(src)); err == nil {
		return u.Path
	}
	return src
}
