package intercept

import (
	"fmt"
	"slices"
	"strings"

	"github.com/andybalholm/cascadia"
)

// The capture script runs selectors with the browser's closest() and
// querySelector(); the server checks them, and the form audit matches them,
// with cascadia, which also understands jQuery's and its own extensions. A
// selector using one compiles here and throws (or never matches) in the
// browser, so the rule would pass every check and capture nothing. They are
// refused at config time instead.

// nonBrowserPseudo are the pseudo-classes cascadia or jQuery accept that
// no browser's querySelector does, with what to write instead.
var nonBrowserPseudo = map[string]string{
	"contains":    "match by id, class or attribute, or read the text with a selector source",
	"containsown": "match by id, class or attribute",
	"matches":     "match by id, class or attribute (for a list of selectors, use :is())",
	"matchesown":  "match by id, class or attribute",
	"haschild":    "use :has(x)",
	"input":       "use input, select, textarea, button",
	"eq":          "use :nth-child(n) or :nth-of-type(n), counted from 1",
	"first":       "use :first-child or :first-of-type",
	"last":        "use :last-child or :last-of-type",
	"gt":          "use :nth-child(n+2)",
	"lt":          "use :nth-child(-n+2)",
	"even":        "use :nth-child(even)",
	"odd":         "use :nth-child(odd)",
	"visible":     "match by id, class or attribute",
	"hidden":      "match by id, class or attribute",
	"selected":    "use :checked",
	"text":        "use input[type=text]",
	"password":    "use input[type=password]",
	"radio":       "use input[type=radio]",
	"checkbox":    "use input[type=checkbox]",
	"submit":      "use [type=submit]",
	"button":      "use button, input[type=button]",
	"reset":       "use [type=reset]",
	"file":        "use input[type=file]",
	"image":       "use input[type=image]",
	"header":      "use h1, h2, h3, h4, h5, h6",
	"parent":      "use :not(:empty)",
	"animated":    "match by id, class or attribute",
}

// CheckSelector reports why the browser would not run sel as the capture
// script does: a syntax error, a jQuery or cascadia extension (:contains,
// :eq, :first, :visible, [a!=b]...), or a pseudo-element, which no element
// matches. nil means both the browser and the server's audit read it alike.
func CheckSelector(sel string) error {
	if strings.TrimSpace(sel) == "" {
		return fmt.Errorf("empty selector")
	}
	bracket := false
	// open holds the pseudo-class of each open parenthesis ("" for none),
	// to find a :has() inside a :has(), which browsers reject.
	var open []string
	pseudo, pseudoEnd := "", -1
	for i := 0; i < len(sel); i++ {
		switch c := sel[i]; {
		case !bracket && c == '(':
			if i == pseudoEnd {
				open = append(open, pseudo)
			} else {
				open = append(open, "")
			}
		case !bracket && c == ')' && len(open) > 0:
			open = open[:len(open)-1]
		case c == '\\':
			i++ // an escaped character is part of a name
		case c == '"' || c == '\'':
			i = quotedEnd(sel, i) - 1
		case c == '[':
			bracket = true
		case c == ']':
			bracket = false
		case bracket && (c == '!' || c == '#') && i+1 < len(sel) && sel[i+1] == '=':
			return fmt.Errorf("the attribute operator %c= is a jQuery extension, not CSS: the browser rejects it (use :not([a=b]))", c)
		case !bracket && c == ':':
			if i+1 < len(sel) && sel[i+1] == ':' {
				return fmt.Errorf("pseudo-element ::%s matches no element in the browser", pseudoName(sel, i+2))
			}
			name := strings.ToLower(pseudoName(sel, i+1))
			pseudo, pseudoEnd = name, i+1+len(name)
			if name == "has" && slices.Contains(open, "has") {
				return fmt.Errorf(":has() inside :has() is not allowed in CSS: the browser's querySelector rejects it")
			}
			switch name {
			case "before", "after", "first-letter", "first-line", "selection", "placeholder", "marker", "backdrop", "cue", "grammar-error", "spelling-error":
				return fmt.Errorf("pseudo-element :%s matches no element in the browser", name)
			}
			if hint, ok := nonBrowserPseudo[name]; ok {
				return fmt.Errorf(":%s is a jQuery extension, not CSS: the browser's querySelector rejects it, so the rule would never match (%s)", name, hint)
			}
		}
	}
	if _, err := cascadia.ParseGroup(sel); err != nil {
		return fmt.Errorf("does not compile: %v", err)
	}
	return nil
}

// pseudoName is the identifier at s[i:].
func pseudoName(s string, i int) string {
	j := i
	for j < len(s) && (s[j] == '-' || s[j] == '_' || s[j] >= 0x80 || s[j] >= '0' && s[j] <= '9' || s[j]|0x20 >= 'a' && s[j]|0x20 <= 'z') {
		j++
	}
	return s[i:j]
}

// quotedEnd returns the index just after the quoted string starting at i.
func quotedEnd(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case s[i]:
			return j + 1
		}
	}
	return len(s)
}

// compileBrowserSelector compiles a selector CheckSelector accepts, for the
// audit to match pages as the browser would.
func compileBrowserSelector(sel string) (cascadia.Selector, error) {
	if err := CheckSelector(sel); err != nil {
		return nil, err
	}
	return cascadia.Compile(sel)
}
