package intercept

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// scriptRules is a config that uses every kind of source and mechanism.
func scriptRules() []*Rule {
	return []*Rule{
		{
			Title:  "Заявка с сайта",
			Submit: "#contact-form-1",
			Name:   &Source{Kind: SourceSelector, Value: "#name"},
			Phone:  &Source{Kind: SourceField, Value: "Phone"},
			Extra: []Labeled{
				{Label: "Город", Source: Source{Kind: SourceJS, Value: `return document.querySelector("#city").value // city`}},
				{Label: "Источник", Source: Source{Kind: SourceStatic, Value: "Лендинг"}},
			},
			CRM: []Labeled{{Label: "status_id", Source: Source{Kind: SourceJS, Value: "return 142"}}},
		},
		{Title: "Обратный звонок", Click: ".btn-callback", Email: &Source{Kind: SourceSelector, Value: "input.mail"}},
		{Title: "Только сервер", Post: "/api/lead", Require: []string{"phone"}},
	}
}

// nodeCheck runs `node --check` on the script, skipping when node is absent.
func nodeCheck(t *testing.T, body []byte) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if _, err := os.Stat("/usr/bin/node"); err != nil {
			t.Skip("node not found")
		}
		node = "/usr/bin/node"
	}
	path := filepath.Join(t.TempDir(), "c.js")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", path).CombinedOutput(); err != nil {
		t.Fatalf("node --check: %v\n%s\n--- script:\n%s", err, out, body)
	}
}

func TestBuildScriptIsValidJS(t *testing.T) {
	for name, cfg := range map[string]ScriptConfig{
		"empty": {Prefix: "/_leadproxy"},
		"rules": {Prefix: "/_leadproxy", Rules: scriptRules()},
		"auto":  {Prefix: "/lp", Rules: scriptRules(), Auto: true},
		"nasty strings": {Prefix: "/_leadproxy", Rules: []*Rule{{
			Title:  "Кавычки \" ' \\ \u2028 `",
			Submit: `form[data-x="a\"b"]`,
			Name:   &Source{Kind: SourceSelector, Value: `input[placeholder='Имя \'и\' фамилия']`},
			Phone:  &Source{Kind: SourceJS, Value: "var s = '\u2028'; return s + `x` + \"}\" // }"},
		}}},
		"placeholder names": {Prefix: "/_leadproxy", Rules: []*Rule{{
			Title:  "LP_JS",
			Submit: ".LP_JS",
			Name:   &Source{Kind: SourceJS, Value: `return "LP_CONFIG LP_JS"`},
		}}},
	} {
		t.Run(name, func(t *testing.T) {
			body, _, err := BuildScript(cfg)
			if err != nil {
				t.Fatal(err)
			}
			nodeCheck(t, body)
		})
	}
}

func TestBuildScriptETag(t *testing.T) {
	base := ScriptConfig{Prefix: "/_leadproxy", Rules: scriptRules()}
	b1, e1, err := BuildScript(base)
	if err != nil {
		t.Fatal(err)
	}
	// Sources come from maps: the bytes must not depend on their order.
	for i := 0; i < 20; i++ {
		b2, e2, _ := BuildScript(ScriptConfig{Prefix: "/_leadproxy", Rules: scriptRules()})
		if e2 != e1 || !bytes.Equal(b1, b2) {
			t.Fatalf("same config, different script: %s vs %s", e1, e2)
		}
	}
	if !regexp.MustCompile(`^"[A-Za-z0-9_-]{16,}"$`).MatchString(e1) {
		t.Errorf("ETag %s: want a strong, quoted tag", e1)
	}
	changes := map[string]func(c *ScriptConfig){
		"prefix": func(c *ScriptConfig) { c.Prefix = "/lp" },
		"auto":   func(c *ScriptConfig) { c.Auto = true },
		"title":  func(c *ScriptConfig) { c.Rules[0].Title = "Другая" },
		"submit": func(c *ScriptConfig) { c.Rules[0].Submit = "#contact-form-2" },
		"js":     func(c *ScriptConfig) { c.Rules[0].CRM[0].Source.Value = "return 143" },
		"select": func(c *ScriptConfig) { c.Rules[1].Email.Value = "input.email" },
		"source": func(c *ScriptConfig) { c.Rules[1].Email = nil },
	}
	seen := map[string]string{e1: "base"}
	for name, change := range changes {
		c := ScriptConfig{Prefix: "/_leadproxy", Rules: scriptRules()}
		change(&c)
		_, e, err := BuildScript(c)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[e]; ok {
			t.Errorf("change %q gives the ETag of %q", name, prev)
		}
		seen[e] = name
	}
}

func TestBuildScriptEmbedsJSAsFunctions(t *testing.T) {
	body, _, err := BuildScript(ScriptConfig{Prefix: "/_leadproxy", Rules: scriptRules()})
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	// Roles sorted: crm:status_id is function 0, extra:Город function 1; the
	// trailing // comment stays on its own line, away from the closing brace.
	for _, want := range []string{
		",[function(){\nreturn 142\n},function(){\n" + `return document.querySelector("#city").value // city` + "\n}])",
		`["crm:status_id","js",0]`,
		`["extra:Город","js",1]`,
		`["name","selector","#name"]`,
		`"i":"` + RuleID("Заявка с сайта") + `","m":"s","q":"#contact-form-1"`,
		`"m":"c","q":".btn-callback","s":[["email","selector","input.mail"]],"d":["phone"]`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %s", want)
		}
	}
	// Static and field sources are the server's business; post rules too.
	for _, absent := range []string{"Лендинг", `"Phone"`, RuleID("Только сервер"), "/api/lead"} {
		if strings.Contains(s, absent) {
			t.Errorf("script carries %s", absent)
		}
	}
}

// Each script rule carries its rule's marker token (a rule with both a
// submit and a click twice, the auto rule its own), and a token cannot
// break out of its JSON string.
func TestBuildScriptBakesMarkerTokens(t *testing.T) {
	both := &Rule{Title: "Обе", Submit: "#f", Click: ".b"}
	cfg := ScriptConfig{Prefix: "/_leadproxy", Rules: append(scriptRules(), both), Auto: true,
		Token: func(rule string) string { return "tok-" + rule + `"</script>` }}
	body, etag, err := BuildScript(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodeCheck(t, body)
	s := string(body)
	for rule, n := range map[string]int{RuleID("Заявка с сайта"): 1, RuleID("Обратный звонок"): 1, RuleID("Обе"): 2, "auto": 1} {
		if got := strings.Count(s, `"t":"tok-`+rule+`\"\u003c/script\u003e"`); got != n {
			t.Errorf("rule %s: its token %d times, want %d", rule, got, n)
		}
	}
	if strings.Contains(s, RuleID("Только сервер")) {
		t.Error("a post rule's token reached the script")
	}
	cfg.Token = func(rule string) string { return "other-" + rule }
	if _, etag2, _ := BuildScript(cfg); etag2 == etag {
		t.Error("other tokens, same ETag")
	}
	cfg.Token = nil
	if body, _, _ := BuildScript(cfg); strings.Contains(string(body), `"t":`) {
		t.Error("no signer, yet the script carries tokens")
	}
}

func TestBuildScriptRuleWithBothMechanisms(t *testing.T) {
	r := &Rule{Title: "Обе", Submit: "#f", Click: ".b", Comment: &Source{Kind: SourceJS, Value: "return 1"}}
	body, _, err := BuildScript(ScriptConfig{Prefix: "/_leadproxy", Rules: []*Rule{r}})
	if err != nil {
		t.Fatal(err)
	}
	src := `"s":[["comment","js",0]],"d":["email","phone"]`
	for _, want := range []string{`{"i":"` + r.ID() + `","m":"s","q":"#f",` + src, `{"i":"` + r.ID() + `","m":"c","q":".b",` + src, ",[function(){\nreturn 1\n}])"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("script lacks %s", want)
		}
	}
}

func TestBuildScriptCannotCloseScriptElement(t *testing.T) {
	evil := `</script><script>alert(1)</script><!--`
	body, _, err := BuildScript(ScriptConfig{Prefix: "/_leadproxy", Rules: []*Rule{{
		Title:  evil,
		Submit: `a[title="` + evil + `"]`,
		Name:   &Source{Kind: SourceSelector, Value: `[data-x="` + evil + `"]`},
		Phone:  &Source{Kind: SourceJS, Value: `return "</SCRIPT>"`},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(bytes.ToLower(body), []byte("</script")); i >= 0 {
		t.Fatalf("script holds </script at %d: %s", i, body[max(0, i-40):])
	}
	if bytes.Contains(body, []byte("<!--")) {
		t.Error("script holds <!--")
	}
	if !bytes.Contains(body, []byte(`\u003c/script\u003e`)) || !bytes.Contains(body, []byte(`return "<\/SCRIPT>"`)) {
		t.Errorf("config strings not escaped as expected:\n%s", body)
	}
	nodeCheck(t, body)
}

func TestBuildScriptRejectsBadPrefix(t *testing.T) {
	for _, p := range []string{"", "_leadproxy", "/_leadproxy/"} {
		if _, _, err := BuildScript(ScriptConfig{Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// The size budget of the served script, config aside: Plausible's tracker is
// under 1 KB; ours stays at or under 2.5 KB gzipped.
func TestScriptSize(t *testing.T) {
	body, _, err := BuildScript(ScriptConfig{Prefix: "/_leadproxy"})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[int]int{}
	for _, level := range []int{gzip.DefaultCompression, gzip.BestCompression} {
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, level)
		w.Write(body)
		w.Close()
		sizes[level] = b.Len()
	}
	t.Logf("c.js with an empty config: %d bytes, %d gzipped (default level), %d (best); source %d bytes",
		len(body), sizes[gzip.DefaultCompression], sizes[gzip.BestCompression], len(rawScript))
	// What a site adds to it: its rules, each with its marker token (31
	// random-looking bytes that do not compress), not held to the budget.
	one, _, _ := BuildScript(ScriptConfig{Prefix: "/_leadproxy", Rules: scriptRules()[1:2],
		Token: func(string) string { return "sb8nkw.0123456789abcdefABCDEF" }})
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(one)
	w.Close()
	t.Logf("with one click rule and its token: %d bytes gzipped", b.Len())
	if sizes[gzip.BestCompression] > 2560 {
		t.Errorf("c.js is %d bytes gzipped, over the 2.5 KB budget", sizes[gzip.BestCompression])
	}
}

func TestScriptTemplatePlaceholders(t *testing.T) {
	for _, p := range []string{configPlaceholder, jsPlaceholder} {
		if n := strings.Count(scriptTemplate, p); n != 1 {
			t.Errorf("compacted c.js holds %s %d times, want once", p, n)
		}
	}
	// The minifier ran (mustMinify falls back to the source on an error).
	if len(scriptTemplate) >= len(rawScript)*2/3 {
		t.Errorf("served template is %d bytes for a %d-byte source: not minified", len(scriptTemplate), len(rawScript))
	}
	// The template is valid JS by itself: the placeholders are identifiers.
	nodeCheck(t, []byte(scriptTemplate))
}
