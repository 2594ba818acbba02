package intercept

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/tdewolff/minify/v2"
	"github.com/tdewolff/minify/v2/js"
)

// rawScript is the capture script with two placeholders: LP_CONFIG (the
// config as JSON) and LP_JS (an array of the rules' js sources as functions).
//
//go:embed assets/c.js
var rawScript string

// scriptTemplate is rawScript minified once, at start, by tdewolff/minify
// (which also shortens local names), so the readable source is what the
// repo keeps and the served script stays within its budget (TestScriptSize).
var scriptTemplate = mustMinify(rawScript)

// mustMinify minifies the embedded script. It cannot fail on our own
// source (TestScriptTemplatePlaceholders parses it); if it ever did, the
// readable source is still a working script.
func mustMinify(src string) string {
	var out bytes.Buffer
	// ES2015: the script runs on browsers that have WeakMap and fetch,
	// and needs no later syntax (optional catch bindings are ES2019).
	m := &js.Minifier{Version: 2015}
	if err := m.Minify(minify.New(), &out, strings.NewReader(src), nil); err != nil {
		return src
	}
	return out.String()
}

const (
	configPlaceholder = "LP_CONFIG"
	jsPlaceholder     = "LP_JS"
)

// ScriptConfig is what the capture script needs to know about a site.
type ScriptConfig struct {
	// Prefix is where the module's endpoints live, e.g. "/_leadproxy": the
	// script posts reports to Prefix+"/collect".
	Prefix string
	// Rules are the site's form rules; only submit and click rules reach the
	// script, post rules are server-side only.
	Rules []*Rule
	// Auto captures every submitted form that has an email or tel input,
	// under the rule id "auto".
	Auto bool
	// Token gives each rule's marker token (MarkerSigner.Token for the
	// site the script is served to), which the script copies into its
	// markers; nil gives none, and then no marker captures.
	Token func(rule string) string
}

// scriptRule is a rule as the script reads it; short keys keep it small.
type scriptRule struct {
	ID       string  `json:"i"`
	Mech     string  `json:"m"` // "s" submit, "c" click
	Selector string  `json:"q"`
	Sources  [][]any `json:"s"` // [role, "selector", css] or [role, "js", index into LP_JS]
	// ByType lists the roles (email, phone) with no source, which the
	// script fills from type=email / type=tel inputs.
	ByType []string `json:"d"`
	Token  string   `json:"t,omitempty"` // the marker token (signed.go)
}

type scriptJSON struct {
	Prefix string       `json:"p"`
	Rules  []scriptRule `json:"r"`
}

// autoRule is the pseudo-rule of `auto on`, last so that configured rules
// win: every form with an email or phone field, by input type or by a name
// the server's auto-detection reads as email or phone (phone, mail,
// телефон, tel, also as the innermost key: order[phone]). Browsers without
// :has() (before 2022–2023) reject the selector and skip only this rule.
var autoRule = scriptRule{
	ID:       "auto",
	Mech:     "s",
	Selector: AutoSelector,
	Sources:  [][]any{},
	ByType:   []string{RoleEmail, RolePhone},
}

// AutoSelector is the forms `auto on` captures.
const AutoSelector = `form:has(input[type=email],input[type=tel],input[name*=mail i],input[name*=phone i],input[name*=телефон i],input[name=tel i],input[name$="[tel]" i])`

// BuildScript returns the capture script with cfg baked in and a strong ETag
// derived from its bytes. Call it once per config and serve the bytes.
func BuildScript(cfg ScriptConfig) (body []byte, etag string, err error) {
	if !strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") {
		return nil, "", fmt.Errorf("script: prefix %q: want a path like /_leadproxy", cfg.Prefix)
	}
	conf := scriptJSON{Prefix: cfg.Prefix, Rules: []scriptRule{}}
	var funcs []string
	for _, r := range cfg.Rules {
		if r == nil || r.Submit == "" && r.Click == "" {
			continue // post rules are the server's alone
		}
		sr := scriptRule{ID: r.ID(), Sources: [][]any{}, ByType: []string{}, Token: cfg.token(r.ID())}
		srcs := r.Sources()
		// Sorted, so the same config gives the same bytes and ETag.
		for _, role := range slices.Sorted(maps.Keys(srcs)) {
			switch s := srcs[role]; s.Kind {
			case SourceSelector:
				sr.Sources = append(sr.Sources, []any{role, s.Kind, s.Value})
			case SourceJS:
				sr.Sources = append(sr.Sources, []any{role, s.Kind, len(funcs)})
				funcs = append(funcs, jsFunction(s.Value))
			}
		}
		for _, role := range []string{RoleEmail, RolePhone} {
			if _, ok := srcs[role]; !ok {
				sr.ByType = append(sr.ByType, role)
			}
		}
		// A rule may watch both a form's submit and a button's click.
		for _, m := range [][2]string{{"s", r.Submit}, {"c", r.Click}} {
			if m[1] != "" {
				sr.Mech, sr.Selector = m[0], m[1]
				conf.Rules = append(conf.Rules, sr)
			}
		}
	}
	if cfg.Auto {
		auto := autoRule
		auto.Token = cfg.token(auto.ID)
		conf.Rules = append(conf.Rules, auto)
	}
	// json.Marshal escapes <, > and & as \u003c..., so no config string can
	// close a <script> element should the script ever be inlined.
	cj, err := json.Marshal(conf)
	if err != nil {
		return nil, "", fmt.Errorf("script: config: %w", err)
	}
	// One pass, so a placeholder name inside a config string or js source
	// is left alone.
	r := strings.NewReplacer(configPlaceholder, string(cj), jsPlaceholder, "["+strings.Join(funcs, ",")+"]")
	body = []byte(r.Replace(scriptTemplate))
	sum := sha256.Sum256(body)
	return body, `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`, nil
}

func (cfg ScriptConfig) token(rule string) string {
	if cfg.Token == nil {
		return ""
	}
	return cfg.Token(rule)
}

var scriptClose = regexp.MustCompile(`(?i)</(script)`)

// jsFunction wraps a js source's body as a function. The newlines keep a
// trailing // comment in the code from swallowing the closing brace; "</script"
// is written "<\/script", which means the same in JS strings, regexps and
// comments.
func jsFunction(code string) string {
	return "function(){\n" + scriptClose.ReplaceAllString(code, `<\/$1`) + "\n}"
}
