package crm

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// testDest is a destination of every option kind.
type testDest struct {
	Common
	Token   string
	token   string
	Inline  string
	ID      int64
	Small   int
	Tags    []string
	Headers map[string]string
	On      *bool
	Wait    caddy.Duration
}

func (t *testDest) Spec() Spec {
	return Spec{Type: "test", Common: &t.Common, IDName: "a test id", Options: []Option{
		{Name: "url", Target: &t.Inline, Inline: true},
		{Name: "token", Kind: SecretText, Target: &t.Token, Into: &t.token, Required: true, Doc: "the API token"},
		{Name: "id", Kind: ID, Target: &t.ID},
		{Name: "small", Kind: ID, Target: &t.Small},
		{Name: "tags", Kind: List, Target: &t.Tags},
		{Name: "header", Kind: Pairs, Target: &t.Headers, Shape: "<name> <value>",
			Check: func(k string) (string, error) { return strings.ToLower(k), nil }},
		{Name: "on", Kind: Switch, Target: &t.On},
		{Name: "wait", Kind: Duration, Target: &t.Wait},
	}}
}

func parseTest(in string) (*testDest, error) {
	t := new(testDest)
	return t, t.Spec().Parse(caddyfile.NewTestDispenser(in))
}

func TestSpecParse(t *testing.T) {
	d, err := parseTest(`test https://x {
		token {env.T}
		id 42
		small 7
		tags a "b, c"
		tags d
		header X-A 1
		header X-B 2
		on off
		wait 5s
		rate 3/1s
		timeout 9s
		base_url https://api
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if d.Inline != "https://x" || d.Token != "{env.T}" || d.ID != 42 || d.Small != 7 ||
		strings.Join(d.Tags, "|") != "a|b|c|d" || d.Headers["x-a"] != "1" || d.Headers["x-b"] != "2" ||
		d.On == nil || *d.On || time.Duration(d.Wait) != 5*time.Second ||
		d.Rate != "3/1s" || time.Duration(d.Timeout) != 9*time.Second || d.BaseURL != "https://api" {
		t.Fatalf("parsed %+v", d)
	}
}

// Every refusal names the file and line; a missing option, the line of
// the block's type.
func TestSpecParseRefusals(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"test https://x stray {\n token t\n}", `test: unexpected argument "stray"; options go in the block, at Testfile:1`},
		{"test {\n colour red\n}", `test: unknown option "colour" (want url, token, id, small, tags, header, on, wait, base_url, rate, timeout), at Testfile:2`},
		{"test {\n token a\n token b\n}", "token: given twice (first on line 2), at Testfile:3"},
		{"test {\n token\n}", "token: missing value, at Testfile:2"},
		{"test {\n token a b\n}", `token: one value expected, got also "b"`},
		{"test {\n token t\n id -1\n}", `id: "-1" is not a test id (a positive number), at Testfile:3`},
		{"test {\n token t\n small 99999999999999999999\n}", `small: "99999999999999999999" is not a test id`},
		{"test {\n token t\n tags\n}", "tags: missing value"},
		{"test {\n token t\n header X\n}", "header: want <name> <value>"},
		{"test {\n token t\n header X 1\n header x 2\n}", "header: x given twice, at Testfile:4"},
		{"test {\n token t\n on maybe\n}", `on: want on or off, got "maybe"`},
		{"test {\n token t\n wait soon\n}", "wait: "},
		{"test {\n token t\n rate fast\n}", `rate "fast": want <n>/<duration>`},
		{"test {\n token t\n timeout x\n}", "timeout: "},
		{"\n\ntest {\n id 1\n}", "test: token is required (the API token), at Testfile:3"},
		{"test {\n token t {\n  colour red\n }\n}", "token: takes no block; its value goes on its line, at Testfile:2"},
	} {
		_, err := parseTest(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.in, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v names no file and line", c.in, err)
		}
	}
}

func TestSpecResolve(t *testing.T) {
	t.Setenv("LP_TEST_SPEC_TOKEN", "s3cret")
	d := &testDest{Token: "{env.LP_TEST_SPEC_TOKEN}"}
	if err := d.Spec().Resolve(); err != nil {
		t.Fatal(err)
	}
	if d.token != "s3cret" || d.Token != "{env.LP_TEST_SPEC_TOKEN}" {
		t.Fatalf("resolved into %q, config %q: the config keeps the placeholder", d.token, d.Token)
	}
	for tok, want := range map[string]string{
		"":                          "test: token is required (the API token)",
		"  ":                        "test: token is required",
		"{env.LP_TEST_SPEC_UNSET}":  "test: token: environment variable LP_TEST_SPEC_UNSET is not set (from {env.LP_TEST_SPEC_UNSET})",
		"{env.LP_TEST_SPEC_UNSET} ": "environment variable LP_TEST_SPEC_UNSET is not set",
	} {
		err := (&testDest{Token: tok}).Spec().Resolve()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token %q: err = %v, want %q", tok, err, want)
		}
	}
	// A value that still has text keeps it: only an empty result is an error.
	if v, err := ResolveValue("pre-{env.LP_TEST_SPEC_UNSET}"); err != nil || v != "pre-" {
		t.Errorf("ResolveValue = %q, %v", v, err)
	}
	c := &Common{BaseURL: "{env.LP_TEST_SPEC_UNSET}"}
	if err := c.Provision("https://default"); err == nil || !strings.Contains(err.Error(), "base_url: environment variable LP_TEST_SPEC_UNSET") {
		t.Errorf("base_url from an unset variable: %v", err)
	}
}

func TestRateOr(t *testing.T) {
	var c Common
	if n, per := c.RateOr(7, time.Second, 2); n != 7 || per != 2*time.Second {
		t.Errorf("default: %d/%v", n, per)
	}
	c.Rate = "5/1s"
	if n, per := c.RateOr(7, time.Second, 1); n != 5 || per != time.Second {
		t.Errorf("override: %d/%v", n, per)
	}
}

// FuzzSpecParse: any block is read or refused with the file and line,
// never a panic, and what is read holds only what was written.
func FuzzSpecParse(f *testing.F) {
	for _, s := range []string{
		"test {\n token t\n}",
		"test https://x {\n token {env.T}\n id 42\n tags a \"b, c\"\n header X 1\n on off\n wait 5s\n}",
		"test a b {\n}", "test {\n token a\n token b\n}", "test {\n header X\n}", "test {\n id -1\n}",
		"test {\n token t\n small 99999999999999999999\n}", "test {\n rate 10/s\n timeout 1m\n}", "test {",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !caddyfile.NewTestDispenser(in).Next() {
			return // no tokens: no line to name (Caddy never hands a module that)
		}
		d := new(testDest)
		err := d.Spec().Parse(caddyfile.NewTestDispenser(in))
		if err != nil {
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Fatalf("%q: %v names no file and line", in, err)
			}
			return
		}
		if d.ID < 0 || d.Small < 0 {
			t.Fatalf("%q: a negative id was read", in)
		}
	})
}

// FuzzParseAmount: a number read is finite and not negative.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"10 000", "1 500,50", "1'000", "-5", "Inf", "1e308", "0x1p3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, ok := ParseAmount(s); ok && (v < 0 || v != v || v > 1e19) {
			t.Fatalf("ParseAmount(%q) = %v", s, v)
		}
	})
}
