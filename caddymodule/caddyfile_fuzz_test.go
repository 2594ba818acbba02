package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The Caddyfile fuzzers put the input inside our block of a fixed
// Caddyfile. Seeds: testdata/fuzz/<target>/ and the golden adapt files.

// fuzzHandlerCaddyfile defines, as webhooks, the destinations the golden
// files' handlers send to.
var fuzzHandlerCaddyfile = func() string {
	var b strings.Builder
	b.WriteString("{\n\tleadproxy {\n")
	for _, name := range []string{"hook", "backup", "amo", "b24", "retail", "sklad", "mp", "sf", "fo", "tours", "rs"} {
		fmt.Fprintf(&b, "\t\tdestination %s webhook {\n\t\t\turl http://127.0.0.1:9/%s\n\t\t\tsecret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n\t\t}\n", name, name)
	}
	b.WriteString("\t}\n}\nhttp://example.com {\n\tleadproxy {\n%s\n\t}\n\trespond ok\n}\n")
	return b.String()
}()

const fuzzGlobalCaddyfile = "{\n\tleadproxy {\n%s\n\t}\n}\nhttp://example.com {\n\tleadproxy\n\trespond ok\n}\n"

// adaptApps adapts caddyfile twice (adaptTwice) and returns the JSON with
// its apps; ok is false when the Caddyfile does not adapt.
func adaptApps(t *testing.T, caddyfile string) ([]byte, map[string]json.RawMessage, bool) {
	t.Helper()
	out, ok := adaptTwice(t, caddyfile)
	if !ok {
		return nil, nil, false
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("adapted config is not JSON: %v", err)
	}
	return out, cfg.Apps, true
}

// FuzzCaddyfileHandler: the site directive never panics, adapts the same
// way twice, and what it accepts provisions: selectors, sources, send_to
// and the rest are checked while parsing, where the error has a file and
// line, not first at provision time.
func FuzzCaddyfileHandler(f *testing.F) {
	for _, s := range goldenBlocks(f, "\n\tleadproxy {\n", strings.LastIndex) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, block string) {
		out, apps, ok := adaptApps(t, fmt.Sprintf(fuzzHandlerCaddyfile, block))
		if !ok {
			return
		}
		for _, h := range findHandlers(out, "leadproxy") {
			one := fmt.Sprintf(`{`+quietConfig+`,"apps":{"leadproxy":%s,"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[%s]}]}}}}}`,
				orEmpty(apps["leadproxy"]), h)
			if err := validateJSON(one); err != nil {
				t.Fatalf("adapted without an error, but does not provision: %v\nhandler: %s", err, h)
			}
		}
	})
}

// FuzzCaddyfileGlobal: the global block (storage, durations, every
// destination type's options) never panics and adapts the same way twice;
// what adapts provisions or fails with an error (placeholders such as
// {env.TOKEN} are only resolved at provision time), never a panic.
func FuzzCaddyfileGlobal(f *testing.F) {
	for _, s := range goldenBlocks(f, "{\n\tleadproxy {\n", strings.Index) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, block string) {
		_, apps, ok := adaptApps(t, fmt.Sprintf(fuzzGlobalCaddyfile, block))
		if !ok {
			return
		}
		if app, ok := apps["leadproxy"]; ok {
			validateJSON(fmt.Sprintf(`{`+quietConfig+`,"apps":{"leadproxy":%s}}`, app))
		}
	})
}

// adaptTwice adapts cf and checks the adapter is deterministic.
func adaptTwice(t *testing.T, cf string) ([]byte, bool) {
	out, err := adapt(t, cf)
	again, err2 := adapt(t, cf)
	if (err == nil) != (err2 == nil) || !bytes.Equal(out, again) {
		t.Fatalf("adapting twice differs: %v / %v\n%s\n%s", err, err2, out, again)
	}
	return out, err == nil
}

// quietConfig turns off the admin endpoint and Caddy's logs, which would
// otherwise print a screenful for every input.
const quietConfig = `"admin":{"disabled":true},"logging":{"logs":{"default":{"writer":{"output":"discard"}}}}`

func validateJSON(js string) error {
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

func orEmpty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	return string(raw)
}

// findHandlers returns every JSON object with "handler": name, however
// deep in routes and subroutes.
func findHandlers(js []byte, name string) []string {
	var v any
	if json.Unmarshal(js, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == name {
				b, _ := json.Marshal(x)
				out = append(out, string(b))
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// goldenBlocks returns the body of the block that starts with open (found
// by index) in each golden adapt file, up to its closing brace at the same
// indentation.
func goldenBlocks(f *testing.F, open string, index func(s, substr string) int) []string {
	files, _ := filepath.Glob("testdata/adapt/*.caddyfiletest")
	var out []string
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		cf, _, _ := strings.Cut(string(raw), "\n----------\n")
		i := index(cf, open)
		if i < 0 {
			continue
		}
		indent := open[:len(open)-len(strings.TrimLeft(open, "\t{\n"))]
		indent = indent[strings.LastIndexByte(indent, '\n')+1:]
		body := cf[i+len(open):]
		if j := strings.Index(body, "\n"+indent+"}"); j >= 0 {
			body = body[:j]
		}
		out = append(out, body)
	}
	return out
}
