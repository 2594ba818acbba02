package crm

import (
	"encoding/json"
	"fmt"
	"math"
	"net/mail"
	"strconv"
	"strings"
)

// The value parsers every destination uses for what a visitor or a form's
// `crm` keys give: one reading of "10 000", one of an id, one of a list.

// ParseNumber reads a number as people type it: group separators (space,
// no-break space, narrow no-break space U+202F, apostrophe) dropped, a
// decimal comma read as a point ("10 000", "1 500,50", "1'000"). Infinity,
// NaN and hex forms are not numbers here.
func ParseNumber(s string) (float64, bool) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\u00a0', '\u202f', '\'', '\t':
			return -1
		case ',':
			return '.'
		}
		return r
	}, s)
	if s == "" || strings.ContainsAny(s, "xXpPiInN_") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// ParseAmount reads a price or budget (see ParseNumber): not negative, and
// small enough that any CRM's whole-number field takes it once rounded.
func ParseAmount(s string) (float64, bool) {
	f, ok := ParseNumber(s)
	if !ok || f < 0 || f > math.MaxInt64/2 {
		return 0, false
	}
	return f, true
}

// ParseID reads a positive integer id (pipeline, manager, field id...).
func ParseID(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// SplitList reads a comma-separated list ("a, b,,a" → a, b): items
// trimmed, empty and repeated ones dropped, order kept.
func SplitList(values ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item != "" && !seen[item] {
				seen[item] = true
				out = append(out, item)
			}
		}
	}
	return out
}

// FirstNonEmpty returns the first value that is not blank.
func FirstNonEmpty(values ...string) string {
	for _, v := range values {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

// UTMKeys are the utm parameters the capture script records on a visit.
var UTMKeys = []string{"source", "medium", "campaign", "term", "content"}

// CheckUTMKey accepts the utm keys the capture script records.
func CheckUTMKey(key string) error {
	for _, k := range UTMKeys {
		if k == key {
			return nil
		}
	}
	return fmt.Errorf("%q is not a utm key (want %s)", key, strings.Join(UTMKeys, ", "))
}

// PlausibleEmail accepts a bare address with a dotted domain: what CRMs'
// validators take. Destinations put anything else into the comment, so a
// typo in the visitor's email does not make the whole lead fail.
func PlausibleEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return false
	}
	_, domain, _ := strings.Cut(s, "@")
	return strings.Contains(strings.Trim(domain, "."), ".")
}

// JSONText reads a JSON string or number as text; other JSON as a short
// excerpt. CRMs put error messages in either.
func JSONText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return Excerpt(raw)
}
