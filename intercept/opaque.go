package intercept

import (
	"bytes"
	"sort"
)

// Opaque spans: where a page served again may differ from the remembered
// one and still get its verdict (verdicts.go).
//
// Many heads differ on every response in a few bytes only: a CSP nonce on
// every <script>, a CSRF token in a <meta content>, a REST nonce in an
// inline script. The scan's verdict never depends on those bytes' values,
// only on their kind, so while the scan reads it notes where they are:
//
//   - a quoted attribute value the scan does not read (all of them but a
//     script's src, a meta's http-equiv and charset, and a meta's content
//     when its http-equiv is Content-Security-Policy or Content-Type). It
//     may change in any byte but its own quote: the tag then ends where it
//     did, with the same attributes, and the scan reads the same;
//   - the raw text of a <style>, <script>, <title>... up to its end tag. A
//     byte there may change to another that the tokenizer does not look at
//     there (letters, digits and + / = _ . :), when the old byte was one
//     too, and no '<' comes in the 16 bytes before it: no end tag, no
//     "<!--" or "-->" (a script's escape states), and no letter of a tag
//     name after a '<' can appear or go.
//
// A page of the same length that differs from the remembered one only that
// way is tokenized into the same tokens at the same offsets, so it gets the
// same verdict and insertion point; its CSP header nonce, if it has one,
// is its own (entry). TestOpaqueSpans and the cache's fuzz and mutation
// tests compare every such page with its scan without the cache.

// opaqueSpan is the page's bytes [start, end): a quoted attribute value
// (quote is its quote) or raw text (quote 0).
type opaqueSpan struct {
	start, end int32
	quote      byte
}

// opaqueLookback is how far before a changed raw-text byte a '<' makes the
// change matter: more than "</textarea" and the byte after it.
const opaqueLookback = 16

// maxOpaqueSpans bounds the spans one remembered head keeps.
const maxOpaqueSpans = 4096

func (s *pageScan) markSpans() int {
	if s.spans == nil {
		return 0
	}
	return len(*s.spans)
}

func (s *pageScan) cutSpans(mark int) {
	if s.spans != nil {
		*s.spans = (*s.spans)[:mark]
	}
}

func (s *pageScan) dropSpan(k int) {
	if sp := *s.spans; k < len(sp) {
		*s.spans = append(sp[:k], sp[k+1:]...)
	}
}

// noteRaw notes the raw text that ended at end.
func (s *pageScan) noteRaw(end int) {
	if s.spans != nil && end > s.rawStart {
		*s.spans = append(*s.spans, opaqueSpan{start: int32(s.rawStart), end: int32(end)})
	}
}

// noteValue notes the quoted value [vs, ve) of attribute key, unless the
// scan reads it (keep: the tag is a script or meta).
func (t *headToken) noteValue(key []byte, vs, ve int, quote byte, keep bool) {
	if keep {
		switch {
		case asciiEqualFold(key, "src"), asciiEqualFold(key, "http-equiv"), asciiEqualFold(key, "charset"):
			return
		case asciiEqualFold(key, "content"):
			if t.hasContent {
				return
			}
			t.content0 = len(*t.spans)
		}
	}
	*t.spans = append(*t.spans, opaqueSpan{start: int32(vs), end: int32(ve), quote: quote})
}

// rawSafe: the bytes a raw text may change from and to.
var rawSafe = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '+' || c == '/' || c == '=' || c == '_' || c == '.' || c == ':'
	}
	return
}()

// sameScan reports whether b, the page's bytes from offset off, reads as
// the remembered bytes exact at the same offsets do (exact holds at least
// off+len(b)): equal, or different only within spans as above.
func sameScan(b []byte, off int, exact []byte, spans []opaqueSpan) bool {
	old := exact[off : off+len(b)]
	for i := 0; ; {
		d := firstDiff(b[i:], old[i:])
		if d < 0 {
			return true
		}
		p := i + d // b's first differing byte
		abs := int32(off + p)
		k := sort.Search(len(spans), func(k int) bool { return spans[k].end > abs })
		if k == len(spans) || spans[k].start > abs {
			return false
		}
		sp := spans[k]
		lim := min(len(b), int(sp.end)-off)
		if sp.quote != 0 {
			if bytes.IndexByte(b[p:lim], sp.quote) >= 0 {
				return false
			}
			i = lim
			continue
		}
		for j := p; j < lim; j++ {
			if b[j] == old[j] {
				d := firstDiff(b[j:lim], old[j:lim])
				if d < 0 {
					break
				}
				j += d
			}
			if !rawSafe[b[j]] || !rawSafe[old[j]] {
				return false
			}
			if j == p || b[j-1] == old[j-1] { // a run of changed bytes starts at j
				at := off + j
				if bytes.IndexByte(exact[max(0, at-opaqueLookback):at], '<') >= 0 {
					return false
				}
			}
		}
		i = lim
	}
}

// firstDiff is the index of the first byte where a and b (as long as a)
// differ, or -1.
func firstDiff(a, b []byte) int {
	i := 0
	for _, step := range [...]int{4096, 256} {
		for ; len(a)-i >= step; i += step {
			if !bytes.Equal(a[i:i+step], b[i:i+step]) {
				break
			}
		}
	}
	for ; len(a)-i >= 32; i += 32 {
		if !bytes.Equal(a[i:i+32], b[i:i+32]) {
			break
		}
	}
	for ; i < len(a); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
