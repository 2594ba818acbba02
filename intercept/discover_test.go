package intercept

import (
	"os"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/andybalholm/cascadia"
)

func TestDiscover(t *testing.T) {
	raw, err := os.ReadFile("testdata/discover/page.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	found := Discover(doc, "/")
	type want struct{ kind, selector, title, rule string }
	wants := []want{
		{"form", "#callback", "Обратный звонок", "form \"Обратный звонок\" {\n\tsubmit \"#callback\"\n\tname field \"name\"\n\tphone field \"phone\"\n}"},
		{"form", `form[action="/contact"]`, "Напишите нам", "form \"Напишите нам\" {\n\tsubmit `form[action=\"/contact\"]`\n\temail field \"your-email\"\n\tcomment field \"message\"\n}"},
		{"form", `form[action="/search"]`, "Форма / form[action=\"/search\"]", "form `Форма / form[action=\"/search\"]` {\n\tsubmit `form[action=\"/search\"]`\n\tallow_no_contact\n}"},
		{"form", `#orderModal > div:nth-of-type(1) > form:nth-of-type(1)`, "Заказать", "form \"Заказать\" {\n\tsubmit \"#orderModal > div:nth-of-type(1) > form:nth-of-type(1)\"\n\tphone field \"data[Lead][phone]\"\n\temail field \"data[Lead][email]\"\n}"},
		{"form", `body > form:nth-of-type(3)`, "", ""},
		{"widget", "button.quiz-send", "Рассчитать стоимость", "form \"Рассчитать стоимость\" {\n\tclick \"button.quiz-send\"\n\tphone selector \"#quiz-phone\"\n\tname selector \"#quiz-name\"\n}"},
	}
	if len(found) != len(wants) {
		for _, f := range found {
			t.Logf("%+v", f)
		}
		t.Fatalf("found %d, want %d", len(found), len(wants))
	}
	for i, w := range wants {
		f := found[i]
		if f.Kind != w.kind || f.Selector != w.selector || (w.title != "" && f.Title != w.title) || (w.rule != "" && f.Rule != w.rule) {
			t.Errorf("%d: %s %q %q\n%s\nwant %s %q %q\n%s", i, f.Kind, f.Selector, f.Title, f.Rule, w.kind, w.selector, w.title, w.rule)
		}
		if err := CheckSelector(f.Selector); err != nil {
			t.Errorf("%s: the browser would refuse it: %v", f.Selector, err)
		}
		if n := len(cascadia.QueryAll(doc.Get(0), cascadia.MustCompile(f.Selector))); n != 1 {
			t.Errorf("%s matches %d elements", f.Selector, n)
		}
	}
	if !found[3].InModal || found[0].InModal || found[5].InModal {
		t.Errorf("in_modal: %v %v %v", found[3].InModal, found[0].InModal, found[5].InModal)
	}
	if found[2].Lead || !found[0].Lead || !found[5].Lead {
		t.Error("lead flags")
	}
}

// FuzzDiscover: any page gives selectors the browser accepts, each
// matching its one element, and no panic.
func FuzzDiscover(f *testing.F) {
	raw, _ := os.ReadFile("testdata/discover/page.html")
	f.Add(string(raw))
	f.Add(`<div><input type=tel id="a b"><button>x</button></div><form id="1x"><input type=email></form>`)
	f.Fuzz(func(t *testing.T, page string) {
		doc, err := goquery.NewDocumentFromReader(strings.NewReader(page))
		if err != nil {
			return
		}
		for _, fd := range Discover(doc, "/") {
			if err := CheckSelector(fd.Selector); err != nil {
				t.Fatalf("%q: %v", fd.Selector, err)
			}
		}
	})
}

// The audit lists what it discovered on sampled pages, covered by a rule
// or not.
func TestAuditDiscovered(t *testing.T) {
	raw, err := os.ReadFile("testdata/discover/page.html")
	if err != nil {
		t.Fatal(err)
	}
	rules := []*Rule{{Title: "Звонок", Submit: "#callback"}, {Title: "Квиз", Click: ".quiz-send"}, {Title: "Модалка", Click: "#orderModal button"}}
	a := NewAuditor(rules, AuditConfig{})
	defer a.Close()
	sampleAndWait(t, a, "/landing", string(raw))
	got := map[string][]string{}
	for _, f := range a.Discovered() {
		if f.Path != "/landing" || f.LastSeen.IsZero() || f.Rule == "" {
			t.Errorf("found %+v", f)
		}
		got[f.Selector] = f.CoveredBy
	}
	want := map[string]string{
		"#callback": "Звонок", "button.quiz-send": "Квиз", `form[action="/contact"]`: "",
		"#orderModal > div:nth-of-type(1) > form:nth-of-type(1)": "Модалка", `form[action="/search"]`: "",
	}
	for sel, w := range want {
		c, ok := got[sel]
		if !ok || strings.Join(c, ",") != w {
			t.Errorf("%s: covered by %v (listed %v), want %q", sel, c, ok, w)
		}
	}
}
