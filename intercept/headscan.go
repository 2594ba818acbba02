package intercept

// The head scanner: it reads the start of a page to find where the tag goes
// and what the head says (an existing tag, nonces, a meta CSP or charset).
//
// It tokenizes as the HTML tokenizer does (WHATWG §13.2.5, as
// golang.org/x/net/html implements it: the same token boundaries on every
// input, held to it by TestHeadScanMatchesReference and FuzzHeadScanDiff),
// but reads only what injection needs. Text, comments, doctypes and the raw
// text of <style>, <script>, <title>, <textarea>, <noscript>... are skipped
// with byte searches for their end; only tags are read a byte at a time,
// and a quoted attribute value is skipped with a byte search too. Nothing is
// allocated per tag: names are matched from a stack copy, and attribute
// values are slices of the page except the few that are kept (a meta CSP,
// a script src with an entity in it).
//
// The scan is resumable: the page arrives in writes, and each call goes on
// from the first token not yet read (next), or inside a raw text from where
// its end was last looked for. A token is only taken once it is whole: a
// tag at its '>', a comment or doctype at its end, a text once the '<' and
// the character that end it arrived. read is how far the verdict depends on
// the bytes (the VerdictCache compares that many).

import (
	"bytes"
	"html"
	"net/url"
	"strings"

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

// pageScan reads the start of a page. Offsets are from the first body byte.
// It is a value: the VerdictCache keeps a copy of one.
type pageScan struct {
	src           string // our script's path, to spot a tag already there
	headerNonce   string // from the Content-Security-Policy header
	charsetHeader bool   // Content-Type names a charset: meta charset is moot

	next     int // the first byte not yet read into a token
	read     int // the verdict depends on no byte at or after it
	stage    int
	complete bool // the verdict came at the end of the body

	// Inside the raw text after a <style>, <script>... start tag: its
	// element, where to look for its end again, and for a script the
	// escape state there (x/net's readScript states).
	raw      atom.Atom
	rawAt    int
	rawEsc   scriptState
	rawStart int // where that raw text starts

	// With a VerdictCache: where the page's bytes do not matter to the
	// verdict as long as they keep their kind (opaque.go), in page order.
	// nil: not recorded.
	spans *[]opaqueSpan

	document    bool // a doctype, <html> or <head> was seen
	headEnd     int  // just after <head ...>, or -1
	first       int  // the first element of a headless document, or -1
	already     bool
	scriptNonce bool   // a script with a nonce attribute was seen
	metaNonce   string // from <meta http-equiv=Content-Security-Policy>
	charsetAt   [2]int // start and end of the first <meta charset>, or -1
}

// newPageScan starts a scan for our script at path srcPath (the
// scriptPath of its URL).
func newPageScan(srcPath, nonce string, charsetHeader bool) pageScan {
	return pageScan{
		src:           srcPath,
		headerNonce:   nonce,
		charsetHeader: charsetHeader,
		headEnd:       -1,
		first:         -1,
		charsetAt:     [2]int{-1, -1},
	}
}

// Token kinds, as the HTML tokenizer names them.
type tokenKind uint8

const (
	tokText tokenKind = iota
	tokComment
	tokDoctype
	tokStartTag
	tokSelfClosing
	tokEndTag
)

// headToken is one whole token. The attribute values are slices of the
// page, still escaped; only script and meta tags have them read.
type headToken struct {
	kind       tokenKind
	name       atom.Atom
	start, end int
	blank      bool // text of only whitespace (and a BOM)
	nonce      bool // a nonce attribute
	charset    bool // a charset attribute
	src        []byte
	httpEquiv  []byte
	content    []byte
	hasSrc     bool
	hasEquiv   bool
	hasContent bool

	spans    *[]opaqueSpan // where readTag notes opaque values, or nil
	content0 int           // the index in spans of content's value, or -1
}

// tokenState says whether a token could be read.
type tokenState uint8

const (
	tokenWhole tokenState = iota // a token, final
	tokenMore                    // the data ends inside a token: wait for more
	tokenEnd                     // at the end of the body: no more tokens
)

// scan reads data (the body so far; bytes from fresh on are new) and returns
// a verdict, or verdictPending when it needs more.
func (s *pageScan) scan(data []byte, fresh int, atEOF bool) pageVerdict {
	// A token is whole at a '>' (tags, comments, doctypes) or at the
	// character after the '<' that ends a text: new bytes with neither, after
	// bytes that did not end with '<', settle nothing.
	if !atEOF && (fresh == 0 || data[fresh-1] != '<') &&
		bytes.IndexByte(data[fresh:], '<') < 0 && bytes.IndexByte(data[fresh:], '>') < 0 {
		return verdictPending
	}
	for {
		if s.raw != 0 {
			end, ok := s.rawTextEnd(data, atEOF)
			if !ok {
				if !atEOF {
					return verdictPending
				}
				s.next, s.raw = len(data), 0 // the raw text runs to the end
				s.read = len(data)
				break
			}
			s.noteRaw(end)
			s.next, s.raw = end, 0
			s.read = max(s.read, end)
			continue
		}
		var t headToken
		mark := s.markSpans()
		t.spans = s.spans
		st, lookahead := readHeadToken(data, s.next, atEOF, &t)
		if st == tokenMore {
			s.cutSpans(mark) // the tag is read again with more bytes
			return verdictPending
		}
		if st == tokenEnd {
			break
		}
		s.read = max(s.read, lookahead)
		if v := s.take(data, &t); v != verdictPending {
			return v
		}
		s.next = t.end
		if (t.kind == tokStartTag || t.kind == tokSelfClosing) && rawTextElement(t.name) {
			s.raw, s.rawAt, s.rawEsc, s.rawStart = t.name, t.end, scriptData, t.end
		}
	}
	// The body ended: whatever is left unterminated after next stays after us.
	s.complete = true
	if s.stage == scanHead {
		if !s.document {
			return verdictFragment
		}
		if s.headEnd < 0 && s.first < 0 {
			s.first = s.next
		}
		if s.already {
			return verdictAlready
		}
	}
	return verdictInsert
}

// take notes one whole token and returns a verdict if it settles the page.
func (s *pageScan) take(data []byte, t *headToken) pageVerdict {
	if s.stage == scanNonce {
		if t.kind == tokStartTag && t.name == atom.Script && t.nonce {
			s.scriptNonce = true
			return verdictInsert
		}
		return verdictPending
	}
	switch t.kind {
	case tokComment:
		return verdictPending
	case tokDoctype:
		s.document = true
		return verdictPending
	case tokText:
		if t.blank {
			return verdictPending
		}
		return s.headOver(t.start)
	case tokEndTag:
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
func (s *pageScan) note(t *headToken) {
	switch t.name {
	case atom.Script:
		if t.nonce {
			s.scriptNonce = true
		}
		if t.hasSrc && !s.already && s.isOurs(t.src) {
			s.already = true
		}
	case atom.Meta:
		equiv := ""
		if t.hasEquiv {
			equiv = strings.ToLower(strings.TrimSpace(attrValue(t.httpEquiv)))
		}
		if t.content0 >= 0 && (equiv == "content-security-policy" || equiv == "content-type") {
			s.dropSpan(t.content0) // the value the scan reads is not opaque
		}
		switch {
		case equiv == "content-security-policy":
			if s.metaNonce == "" {
				s.metaNonce = cspNonce([]string{attrValue(t.content)})
			}
		case t.charset || (equiv == "content-type" && strings.Contains(strings.ToLower(attrValue(t.content)), "charset")):
			if s.charsetAt[0] < 0 {
				s.charsetAt = [2]int{t.start, t.end}
			}
		}
	}
}

// isOurs reports a script src that is our script. Most are not, and are
// told apart without a copy: the path must appear in the value.
func (s *pageScan) isOurs(raw []byte) bool {
	if bytes.IndexByte(raw, '&') < 0 && !bytes.Contains(raw, []byte(s.src)) {
		return false
	}
	return scriptPath(attrValue(raw)) == s.src
}

// attrValue is an attribute value as the tokenizer gives it: entities
// decoded, CR LF and CR as LF.
func attrValue(raw []byte) string {
	v := string(raw)
	if strings.IndexByte(v, '\r') >= 0 {
		v = strings.ReplaceAll(strings.ReplaceAll(v, "\r\n", "\n"), "\r", "\n")
	}
	if strings.IndexByte(v, '&') >= 0 {
		v = html.UnescapeString(v)
	}
	return v
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

// readHeadToken reads the token at p into t. lookahead is how far the
// decision that the token is whole looked (a text ends where the next token
// starts, two bytes in).
func readHeadToken(data []byte, p int, atEOF bool, t *headToken) (st tokenState, lookahead int) {
	n := len(data)
	if p >= n {
		if atEOF {
			return tokenEnd, n
		}
		return tokenMore, n
	}
	*t = headToken{start: p, spans: t.spans, content0: -1}
	if data[p] == '<' {
		if p+1 >= n {
			if !atEOF {
				return tokenMore, n
			}
			return textToken(data, p, n, n, t)
		}
		switch c := data[p+1]; {
		case isASCIILetter(c):
			end, ok := readTag(data, p+1, t, true)
			if !ok {
				return eofOrMore(atEOF)
			}
			t.kind, t.end = tokStartTag, end
			// Self-closing matters only to a script start tag (scanNonce
			// takes <script nonce> and not <script nonce/>).
			if t.name == atom.Script && data[end-2] == '/' && selfClosing(data, p+1, end) {
				t.kind = tokSelfClosing
			}
			return tokenWhole, end
		case c == '/':
			return endTagOrComment(data, p, atEOF, t)
		case c == '!':
			return markupDeclaration(data, p, atEOF, t)
		case c == '?':
			return untilCloseAngle(data, p, p+1, atEOF, tokComment, t)
		}
	}
	// Text, up to the first '<' that starts a token.
	for i := p; ; {
		j := bytes.IndexByte(data[i:], '<')
		if j < 0 {
			if !atEOF {
				return tokenMore, n
			}
			return textToken(data, p, n, n, t)
		}
		q := i + j
		if q+1 >= n {
			if !atEOF {
				return tokenMore, n
			}
			return textToken(data, p, n, n, t)
		}
		if c := data[q+1]; q > p && (isASCIILetter(c) || c == '/' || c == '!' || c == '?') {
			return textToken(data, p, q, q+2, t)
		}
		i = q + 1
	}
}

func eofOrMore(atEOF bool) (tokenState, int) {
	if atEOF {
		return tokenEnd, 0 // a tag cut off by the end: the tokenizer stops there
	}
	return tokenMore, 0
}

func textToken(data []byte, p, end, lookahead int, t *headToken) (tokenState, int) {
	t.kind, t.end, t.blank = tokText, end, blankText(data[p:end])
	return tokenWhole, lookahead
}

// endTagOrComment reads the token at p, which starts with "</".
func endTagOrComment(data []byte, p int, atEOF bool, t *headToken) (tokenState, int) {
	n := len(data)
	if p+2 >= n {
		if !atEOF {
			return tokenMore, n
		}
		return textToken(data, p, n, n, t) // "</" at the very end is text
	}
	switch c := data[p+2]; {
	case c == '>':
		t.kind, t.end = tokComment, p+3 // "</>": nothing, as an empty comment
		return tokenWhole, p + 3
	case isASCIILetter(c):
		end, ok := readTag(data, p+2, t, false)
		if !ok {
			return eofOrMore(atEOF)
		}
		t.kind, t.end = tokEndTag, end
		return tokenWhole, end
	}
	return untilCloseAngle(data, p, p+2, atEOF, tokComment, t) // a bogus comment
}

// untilCloseAngle reads a token from p that ends at the first '>' from
// from on, or at the end of the body.
func untilCloseAngle(data []byte, p, from int, atEOF bool, kind tokenKind, t *headToken) (tokenState, int) {
	n := len(data)
	if j := bytes.IndexByte(data[from:], '>'); j >= 0 {
		t.kind, t.end = kind, from+j+1
		return tokenWhole, t.end
	}
	if !atEOF {
		return tokenMore, n
	}
	t.kind, t.end = kind, n
	return tokenWhole, n
}

// markupDeclaration reads the token at p, which starts with "<!": a
// comment, a doctype, or a bogus comment.
func markupDeclaration(data []byte, p int, atEOF bool, t *headToken) (tokenState, int) {
	n := len(data)
	if p+4 > n {
		if !atEOF {
			return tokenMore, n
		}
		// Fewer than two bytes after "<!": a bogus comment to the end.
		if p+3 <= n && data[p+2] == '-' || p+3 > n {
			t.kind, t.end = tokComment, n
			return tokenWhole, n
		}
		return untilCloseAngle(data, p, p+2, atEOF, tokComment, t)
	}
	if data[p+2] == '-' && data[p+3] == '-' {
		return commentToken(data, p, atEOF, t)
	}
	const doctype = "DOCTYPE"
	for i := 0; i < len(doctype); i++ {
		k := p + 2 + i
		if k >= n {
			if !atEOF {
				return tokenMore, n
			}
			break // a cut-off "<!DOC": a bogus comment to the end
		}
		if c := data[k]; c != doctype[i] && c != doctype[i]+('a'-'A') {
			break
		}
		if i == len(doctype)-1 {
			return untilCloseAngle(data, p, k+1, atEOF, tokDoctype, t)
		}
	}
	return untilCloseAngle(data, p, p+2, atEOF, tokComment, t)
}

// commentToken reads "<!--...", x/net's readComment: it ends at "-->",
// "--!>", or a '>' right after "<!--" and any dashes.
func commentToken(data []byte, p int, atEOF bool, t *headToken) (tokenState, int) {
	n := len(data)
	body := p + 4
	for i := body; ; {
		j := bytes.IndexByte(data[i:], '>')
		if j < 0 {
			if !atEOF {
				return tokenMore, n
			}
			t.kind, t.end = tokComment, n
			return tokenWhole, n
		}
		g := i + j
		if commentEndsAt(data, body, g) {
			t.kind, t.end = tokComment, g+1
			return tokenWhole, g + 1
		}
		i = g + 1
	}
}

// commentEndsAt reports whether the '>' at g ends the comment whose text
// starts at body.
func commentEndsAt(data []byte, body, g int) bool {
	allDashes := true
	for _, c := range data[body:g] {
		if c != '-' {
			allDashes = false
			break
		}
	}
	switch {
	case allDashes:
		return true
	case g-body >= 2 && data[g-1] == '-' && data[g-2] == '-':
		return true
	case g-body >= 3 && data[g-1] == '!' && data[g-2] == '-' && data[g-3] == '-':
		return true
	}
	return false
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// Byte classes inside a tag, one table lookup per byte.
const (
	classSpace = 1 << iota // ' ', \n, \r, \t, \f
	classSlash
	classGT
	classEq
)

var tagClass = func() (t [256]uint8) {
	for _, c := range []byte(" \n\r\t\f") {
		t[c] = classSpace
	}
	t['/'], t['>'], t['='] = classSlash, classGT, classEq
	return t
}()

func isHTMLSpace(c byte) bool { return tagClass[c] == classSpace }

// skipSpace returns the first index from i that is not whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && isHTMLSpace(data[i]) {
		i++
	}
	return i
}

// readTag reads a tag whose name starts at ns (after "<" or "</"), as
// x/net's readTag: the name, then attributes, to the '>' that is not in a
// quoted value. It returns the index after that '>', or false when the data
// ends first. With attrs, a script's or meta's attributes of interest are
// kept in t (the first of each name, as the tokenizer keeps).
func readTag(data []byte, ns int, t *headToken, attrs bool) (int, bool) {
	n := len(data)
	i := ns + 1
	for i < n && tagClass[data[i]]&(classSpace|classSlash|classGT) == 0 {
		i++
	}
	if i >= n {
		return 0, false
	}
	t.name = lookupName(data[ns:i])
	keep := attrs && (t.name == atom.Script || t.name == atom.Meta)
	if i = skipSpace(data, i); i >= n {
		return 0, false
	}
	for {
		if data[i] == '>' {
			return i + 1, true
		}
		// The attribute's name: an '=' as its first character belongs to it.
		ks := i
		i++
		if tagClass[data[ks]]&(classSpace|classSlash|classGT) != 0 {
			i = ks
		} else {
			for i < n && tagClass[data[i]] == 0 {
				i++
			}
		}
		if i >= n {
			return 0, false
		}
		ke := i
		// Its value.
		vs, ve := i, i
		if i = skipSpace(data, i); i >= n {
			return 0, false
		}
		switch data[i] {
		case '/':
			i++ // the self-closing solidus, or a stray one: consumed
		case '=':
			if i = skipSpace(data, i+1); i >= n {
				return 0, false
			}
			switch q := data[i]; q {
			case '>':
				vs, ve = ke, ke
			case '"', '\'':
				j := bytes.IndexByte(data[i+1:], q)
				if j < 0 {
					return 0, false
				}
				vs, ve = i+1, i+1+j
				i = ve + 1
				if t.spans != nil && j > 0 {
					t.noteValue(data[ks:ke], vs, ve, q, keep)
				}
			default:
				vs = i
				for i < n && tagClass[data[i]]&(classSpace|classGT) == 0 {
					i++
				}
				if i >= n {
					return 0, false
				}
				ve = i
				if isHTMLSpace(data[i]) {
					i++
				}
			}
		}
		if keep {
			t.keepAttr(data[ks:ke], data[vs:ve])
		}
		if i = skipSpace(data, i); i >= n {
			return 0, false
		}
	}
}

// keepAttr notes a script or meta attribute the scan uses, the first of
// each name.
func (t *headToken) keepAttr(key, val []byte) {
	switch {
	case asciiEqualFold(key, "nonce"):
		t.nonce = true
	case asciiEqualFold(key, "charset"):
		t.charset = true
	case asciiEqualFold(key, "src"):
		if !t.hasSrc {
			t.src, t.hasSrc = val, true
		}
	case asciiEqualFold(key, "http-equiv"):
		if !t.hasEquiv {
			t.httpEquiv, t.hasEquiv = val, true
		}
	case asciiEqualFold(key, "content"):
		if !t.hasContent {
			t.content, t.hasContent = val, true
		}
	}
}

// selfClosing reports a start tag that the tokenizer calls self-closing:
// its last byte before '>' is a '/' that is not the last byte of the last
// attribute value it kept (<p a=/> is not self-closing). The tag (name at
// ns, ending at end) is read again, rarely: only tags ending in "/>".
func selfClosing(data []byte, ns, end int) bool {
	var arr [16][2]int
	keys := arr[:0] // the attribute names kept (first of each, non-empty)
	lastEnd := -1
	seen := func(k []byte) bool {
		for _, s := range keys {
			if bytes.EqualFold(data[s[0]:s[1]], k) {
				return true
			}
		}
		return false
	}
	i := ns + 1
	for !isHTMLSpace(data[i]) && data[i] != '/' && data[i] != '>' {
		i++
	}
	i = skipSpace(data, i)
	for data[i] != '>' {
		ks := i
		i++
		if data[ks] != '=' && (isHTMLSpace(data[ks]) || data[ks] == '/' || data[ks] == '>') {
			i = ks
		} else {
			for data[i] != '=' && !isHTMLSpace(data[i]) && data[i] != '/' && data[i] != '>' {
				i++
			}
		}
		ke := i
		ve := i
		i = skipSpace(data, i)
		switch data[i] {
		case '/':
			i++
		case '=':
			i = skipSpace(data, i+1)
			switch q := data[i]; q {
			case '>':
				ve = ke // the value is empty, where it started
			case '"', '\'':
				ve = i + 1 + bytes.IndexByte(data[i+1:], q)
				i = ve + 1
			default:
				for !isHTMLSpace(data[i]) && data[i] != '>' {
					i++
				}
				ve = i
				if isHTMLSpace(data[i]) {
					i++
				}
			}
		}
		if ke > ks && !seen(data[ks:ke]) {
			keys = append(keys, [2]int{ks, ke})
			lastEnd = ve
		}
		i = skipSpace(data, i)
	}
	return len(keys) == 0 || end-2 != lastEnd-1
}

// lookupName is the atom of a tag name, matched in any case without
// allocating; names longer than any the scan knows are atom 0.
func lookupName(name []byte) atom.Atom {
	var buf [16]byte
	if len(name) > len(buf) {
		return 0
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return atom.Lookup(buf[:len(name)])
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// rawTextEnd looks for the end of the raw text the scan is in: the offset
// of the end tag that closes it, or false if it has not arrived (s.rawAt
// and s.rawEsc then say where to go on).
func (s *pageScan) rawTextEnd(data []byte, atEOF bool) (int, bool) {
	switch s.raw {
	case atom.Plaintext:
		return 0, false // never ends
	case atom.Script:
		end, ok := scriptEnd(data, s.rawAt, &s.rawEsc, atEOF)
		if !ok {
			s.rawAt = end
		}
		return end, ok
	}
	name := s.raw.String()
	for i := s.rawAt; ; {
		j := bytes.Index(data[i:], endTagOpen)
		if j < 0 {
			s.rawAt = max(s.rawAt, len(data)-1) // a '<' at the end may start it
			return 0, false
		}
		p := i + j
		switch endTagAt(data, p, name) {
		case endTagYes:
			return p, true
		case endTagCut:
			s.rawAt = p
			return 0, false
		}
		i = p + 2
	}
}

var endTagOpen = []byte("</")

type endTagMatch uint8

const (
	endTagNo  endTagMatch = iota
	endTagYes             // "</name" and a delimiter
	endTagCut             // the data ends before it can be told
)

// endTagAt reports whether data[p:] starts with "</" + name (letters, in any
// case) and then whitespace, '/' or '>', as x/net's readRawEndTag.
func endTagAt(data []byte, p int, name string) endTagMatch {
	k := p + 2
	for i := 0; i < len(name); i++ {
		if k+i >= len(data) {
			return endTagCut
		}
		if c := data[k+i]; c != name[i] && c != name[i]-('a'-'A') {
			return endTagNo
		}
	}
	k += len(name)
	if k >= len(data) {
		return endTagCut
	}
	switch data[k] {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		return endTagYes
	}
	return endTagNo
}

// scriptState is where x/net's readScript is, between bytes.
type scriptState uint8

const (
	scriptData scriptState = iota
	scriptEscaped
	scriptEscapedDash
	scriptEscapedDashDash
	scriptDoubleEscaped
	scriptDoubleEscapedDash
	scriptDoubleEscapedDashDash
)

// scriptEnd finds the end of a script's text from i in state *st, following
// the tokenizer's rules for "<!--" and "<script" inside it (WHATWG script
// data escaped states, as x/net's readScript). It returns the offset of the
// "</script" that ends it, or false and where to go on (with *st) when the
// data ran out first. At the end of the body it returns false: the text
// runs to the end.
func scriptEnd(data []byte, i int, st *scriptState, atEOF bool) (int, bool) {
	n := len(data)
	const name = "script"
	for {
		if *st == scriptData {
			// Most scripts have no "<!--": jump from '<' to '<'.
			j := bytes.IndexByte(data[i:], '<')
			if j < 0 {
				return max(i, n-1), false
			}
			p := i + j
			if p+1 >= n {
				return p, false
			}
			switch data[p+1] {
			case '/':
				switch endTagAt(data, p, name) {
				case endTagYes:
					return p, true
				case endTagCut:
					return p, false
				}
				i = p + 2
			case '!':
				if p+3 >= n {
					if atEOF {
						return n, false
					}
					return p, false
				}
				if data[p+2] == '-' && data[p+3] == '-' {
					*st, i = scriptEscapedDashDash, p+4
				} else {
					i = p + 2
				}
			default:
				i = p + 1
			}
			continue
		}
		if i >= n {
			return i, false
		}
		c := data[i]
		switch *st {
		case scriptEscaped, scriptEscapedDash, scriptEscapedDashDash:
			switch {
			case c == '-':
				*st = min(*st+1, scriptEscapedDashDash)
				i++
			case c == '>' && *st == scriptEscapedDashDash:
				*st = scriptData
				i++
			case c == '<':
				if i+1 >= n {
					return i, false
				}
				switch d := data[i+1]; {
				case d == '/':
					switch endTagAt(data, i, name) {
					case endTagYes:
						return i, true
					case endTagCut:
						return i, false
					}
					*st, i = scriptEscaped, i+2
				case isASCIILetter(d):
					// "<script" + a delimiter starts the double-escaped state.
					switch m := letterTagAt(data, i+1, name); m {
					case endTagYes:
						*st, i = scriptDoubleEscaped, i+1+len(name)+1
					case endTagCut:
						return i, false
					default:
						*st, i = scriptEscaped, i+1
					}
				default:
					*st, i = scriptData, i+1
				}
			default:
				*st = scriptEscaped
				i++
			}
		default: // double escaped
			switch {
			case c == '-':
				*st = min(*st+1, scriptDoubleEscapedDashDash)
				i++
			case c == '>' && *st == scriptDoubleEscapedDashDash:
				*st = scriptData
				i++
			case c == '<':
				if i+1 >= n {
					return i, false
				}
				if data[i+1] != '/' {
					*st, i = scriptDoubleEscaped, i+1
					break
				}
				switch endTagAt(data, i, name) {
				case endTagYes:
					*st, i = scriptEscaped, i+2+len(name)+1
				case endTagCut:
					return i, false
				default:
					*st, i = scriptDoubleEscaped, i+2
				}
			default:
				*st = scriptDoubleEscaped
				i++
			}
		}
	}
}

// letterTagAt reports whether data[k:] is name (in any case) and then a
// delimiter, as readScript's double-escape start reads it.
func letterTagAt(data []byte, k int, name string) endTagMatch {
	if k < 2 {
		return endTagNo
	}
	return endTagAt(data, k-2, name) // the same test, two bytes on
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
