package caddymodule

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// exampleEnv is a value for each variable the examples use that passes
// Provision: the webhook secret and Bitrix24 webhook have a shape.
func exampleEnv(t *testing.T, text string) []string {
	values := map[string]string{
		"LEADPROXY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"HOOK_SECRET":              "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"BITRIX24_WEBHOOK":         "https://portal.bitrix24.ru/rest/1/x7k2m9q4w8e1r5t3/",
		"TELEGRAM_BOT_TOKEN":       "123456789:AAE-example_token",
		"LEADPROXY_MARKER_KEY":     "example-marker-key-of-32-bytes-or-more",
	}
	var names []string
	for _, m := range regexp.MustCompile(`\{env\.([A-Z0-9_]+)\}`).FindAllStringSubmatch(text, -1) {
		v, ok := values[m[1]]
		if !ok {
			v = "test-" + strings.ToLower(m[1])
		}
		t.Setenv(m[1], v)
		names = append(names, m[1])
	}
	return names
}

// validates adapts a Caddyfile and provisions what it becomes.
func validates(t *testing.T, caddyfile string) {
	t.Helper()
	out, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, caddyfile)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Admin = &caddy.AdminConfig{Disabled: true}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validate: %v\n%s", err, caddyfile)
	}
}

// Every commented destination block (and dry_run line, and the cluster
// block) in Caddyfile.example validates once uncommented, with its variables
// named as docs/destinations.md (docs/cluster.md) names them (the app's
// marker_key, uncommented too, as README.md names it).
func TestCaddyfileExampleDestinations(t *testing.T) {
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile("../docs/destinations.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	clusterDoc, err := os.ReadFile("../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, clusterDoc...)
	var lines []string
	inBlock, blocks, dry, clusters := false, 0, 0, 0
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "# marker_key ") {
			l = strings.Replace(l, "# ", "", 1)
		}
		if strings.HasPrefix(strings.TrimSpace(l), "# dry_run") {
			l = strings.Replace(l, "# ", "", 1)
			dry++
		}
		if strings.HasPrefix(strings.TrimSpace(l), "# destination ") {
			inBlock = true
			blocks++
		}
		if strings.HasPrefix(strings.TrimSpace(l), "# cluster ") {
			inBlock = true
			clusters++
		}
		if inBlock {
			l = strings.Replace(l, "# ", "", 1)
			if strings.TrimSpace(l) == "}" {
				inBlock = false
			}
		}
		lines = append(lines, l)
	}
	if blocks < 10 || dry != 2 {
		t.Fatalf("%d commented destination blocks, want one per type; %d dry_run lines, want the site's and a form's", blocks, dry)
	}
	if clusters != 1 {
		t.Fatalf("%d commented cluster blocks, want 1", clusters)
	}
	uncommented := strings.Join(lines, "\n")
	for _, name := range exampleEnv(t, uncommented) {
		if !strings.Contains(string(docs), "{env."+name+"}") && !strings.Contains(string(readme), "marker_key {env."+name+"}") {
			t.Errorf("Caddyfile.example reads {env.%s}, a name docs/destinations.md, docs/cluster.md (or README.md's marker_key) do not use", name)
		}
	}
	validates(t, uncommented)
}

// Every destination block shown in docs/destinations.md validates too.
func TestDestinationsDocExamples(t *testing.T) {
	raw, err := os.ReadFile("../docs/destinations.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```\n(destination [^`]*?)```").FindAllStringSubmatch(string(raw), -1)
	if len(blocks) < 10 {
		t.Fatalf("%d destination examples in docs/destinations.md", len(blocks))
	}
	for _, b := range blocks {
		exampleEnv(t, b[1])
		validates(t, "{\n\tleadproxy {\n"+b[1]+"\t}\n}\n:0 {\n\trespond ok\n}\n")
	}
}
