package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestClusterConfigErrors: the cluster block's mistakes, each with its
// file and line, and never the DSN's secret in the message.
func TestClusterConfigErrors(t *testing.T) {
	wrap := func(global string) string {
		return "{\n\tleadproxy {\n" + global + "\n\t}\n}\nexample.com {\n\trespond ok\n}\n"
	}
	cases := []struct{ name, caddyfile, want string }{
		{"no dsn", wrap("\t\tcluster"), `cluster: want cluster <dsn>`},
		{"two dsns", wrap("\t\tcluster postgres://a@h/db postgres://b@h/db"), `cluster: one dsn expected, got also "postgres://b@h/db" (options go in the block), at Caddyfile:3`},
		{"not a dsn", wrap("\t\tcluster db.internal"), `cluster: the dsn is neither a URL (postgres://user@host:5432/db) nor key=value pairs (host=... dbname=...), at Caddyfile:3`},
		{"bad url", wrap("\t\tcluster postgres://a@h:port/db"), `cluster: the dsn is not a URL (postgres://user@host:5432/db): invalid port ":port" after host, at Caddyfile:3`},
		{"password in the url", wrap("\t\tcluster postgres://lp:hunter2@h/db"), `cluster: the dsn carries a password: it is a secret, give it through a placeholder (postgres://user:{env.PGPASSWORD}@host/db) or a PGPASSFILE, at Caddyfile:3`},
		{"password in the query", wrap("\t\tcluster postgres://lp@h/db?password=hunter2"), `the dsn carries a password`},
		{"password keyword", wrap("\t\tcluster \"host=h dbname=db password=hunter2\""), `give it through a placeholder (password={env.PGPASSWORD})`},
		{"bad sslmode", wrap("\t\tcluster postgres://lp@h/db?sslmode=sometimes"), `cluster: the dsn does not parse: sslmode is invalid, at Caddyfile:3`},
		{"unknown option", wrap("\t\tcluster postgres://lp@h/db {\n\t\t\tnodes a\n\t\t}"), `cluster: unknown option "nodes" (want node, schema, fallback_after), at Caddyfile:4`},
		{"bad schema", wrap("\t\tcluster postgres://lp@h/db {\n\t\t\tschema Lead-Proxy\n\t\t}"), `cluster: schema "Lead-Proxy": want a lower-case SQL name (letters, digits, _, at most 48; like leadproxy), at Caddyfile:4`},
		{"bad fallback_after", wrap("\t\tcluster postgres://lp@h/db {\n\t\t\tfallback_after soon\n\t\t}"), `cluster: fallback_after: "soon" is not a positive duration (like 5m), at Caddyfile:4`},
		{"node without a name", wrap("\t\tcluster postgres://lp@h/db {\n\t\t\tnode\n\t\t}"), `node: missing value, at Caddyfile:4`},
		{"twice", wrap("\t\tcluster postgres://lp@h/db\n\t\tcluster postgres://lp@h/db2"), `cluster given twice; one cluster per node, at Caddyfile:4`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkAdaptError(t, c.caddyfile, c.want)
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}

// TestClusterProvisionErrors: placeholders are resolved at provision; an
// unset variable is named, and validating connects to nothing (the DSN's
// host does not exist).
func TestClusterProvisionErrors(t *testing.T) {
	t.Setenv("LP_TEST_PG_PASSWORD", "s3cret")
	t.Setenv("LP_TEST_EMPTY", "")
	cases := []struct{ name, cluster, want string }{
		{"unset variable", `{"dsn":"postgres://lp:{env.LP_TEST_UNSET_PW}@db.invalid/leads"}`, `cluster: dsn: environment variable LP_TEST_UNSET_PW is not set (from {env.LP_TEST_UNSET_PW})`},
		{"empty variable", `{"dsn":"postgres://lp:{env.LP_TEST_EMPTY}@db.invalid/leads"}`, `environment variable LP_TEST_EMPTY is not set`},
		{"no dsn", `{"node":"a"}`, `cluster: dsn is required`},
		{"resolved dsn does not parse", `{"dsn":"postgres://lp:{env.LP_TEST_PG_PASSWORD}@db.invalid/leads?sslmode=often"}`, `cluster: the dsn does not parse: sslmode is invalid`},
		{"bad schema", `{"dsn":"postgres://lp@db.invalid/leads","schema":"Bad Name"}`, `cluster: schema "Bad Name"`},
		{"unset node variable", `{"dsn":"postgres://lp@db.invalid/leads","node":"{env.LP_TEST_UNSET_NODE}"}`, `cluster: node: environment variable LP_TEST_UNSET_NODE is not set`},
		{"valid", `{"dsn":"postgres://lp:{env.LP_TEST_PG_PASSWORD}@db.invalid:5432/leads?sslmode=require","node":"edge-1","fallback_after":60000000000}`, ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cfg caddy.Config
			raw := `{"apps":{"leadproxy":{"storage":"` + t.TempDir() + `","cluster":` + c.cluster + `}}}`
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatal(err)
			}
			cfg.Admin = &caddy.AdminConfig{Disabled: true}
			err := caddy.Validate(&cfg)
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}
