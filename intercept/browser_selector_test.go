package intercept

import (
	"encoding/json"
	"strings"
	"testing"
)

// CheckSelector's verdicts are the browser's: every selector it accepts
// runs in Chromium's querySelector and closest(), every one it refuses
// throws there, or (a pseudo-element) matches nothing on a page where
// cascadia finds a match.
func TestBrowserSelectorVerdicts(t *testing.T) {
	s := newTestSite(t, ScriptConfig{})
	tab := s.open(t, "classic.html")
	var foreign []string
	for _, c := range foreignSelectors {
		foreign = append(foreign, c.sel)
	}
	list, _ := json.Marshal(map[string][]string{"ok": browserSelectors, "foreign": foreign})
	js := `(function (L) {
		var out = {};
		function run(s) {
			try {
				var n = document.querySelectorAll(s).length;
				document.body.closest(s);
				return n ? "matches" : "runs";
			} catch (e) { return "throws"; }
		}
		L.ok.concat(L.foreign).forEach(function (s) { out[s] = run(s); });
		return JSON.stringify(out);
	})(` + string(list) + `)`
	var got map[string]string
	if err := json.Unmarshal([]byte(tab.Eval(t, js)), &got); err != nil {
		t.Fatal(err)
	}
	for _, sel := range browserSelectors {
		if got[sel] == "throws" {
			t.Errorf("%q: CheckSelector accepts it, Chromium throws", sel)
		}
	}
	for _, sel := range foreign {
		if got[sel] == "matches" || got[sel] == "runs" && !isPseudoElementErr(sel) {
			t.Errorf("%q: CheckSelector refuses it, Chromium %s", sel, got[sel])
		}
	}
	tab.Quiet(t)
}

func isPseudoElementErr(sel string) bool {
	err := CheckSelector(sel)
	return err != nil && strings.HasPrefix(err.Error(), "pseudo-element")
}
