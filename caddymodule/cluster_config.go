package caddymodule

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/leadproxy/leadproxy/crm"
)

// ClusterOptions is the `cluster` block of the global leadproxy options
// (docs/cluster.md). The DSN is a secret: its password comes through a
// placeholder ({env.X}), resolved at provision.
type ClusterOptions struct {
	// DSN is the PostgreSQL connection string (postgres://user:{env.PGPASSWORD}@host:5432/db?sslmode=verify-full).
	DSN string `json:"dsn"`
	// Node names this node in the fleet. Default: the hostname.
	Node string `json:"node,omitempty"`
	// Schema holds every table of the engine. Default "leadproxy".
	Schema string `json:"schema,omitempty"`
	// FallbackAfter: once the engine has been unreachable this long, the
	// node delivers its own unforwarded leads itself, at each account's
	// rate divided by the nodes last seen alive. Zero: deliveries wait for
	// the engine.
	FallbackAfter caddy.Duration `json:"fallback_after,omitempty"`
}

// resolvedCluster is ClusterOptions with its placeholders resolved.
type resolvedCluster struct {
	DSN, Node, Schema string
	FallbackAfter     time.Duration
}

// key identifies what the open cluster connection was made with: a reload
// may change fallback_after, not these.
// A nil one (no cluster) has the empty key.
func (r *resolvedCluster) key() string {
	if r == nil {
		return ""
	}
	return r.DSN + "\x00" + r.Node + "\x00" + r.Schema
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`) // as the cluster package allows

// parseCluster reads `cluster <dsn> { node <name>; schema <name>; fallback_after <duration> }`.
func parseCluster(d *caddyfile.Dispenser) (*ClusterOptions, error) {
	c := new(ClusterOptions)
	if !d.NextArg() {
		return nil, d.Err("cluster: want cluster <dsn> (postgres://user:{env.PGPASSWORD}@host:5432/db), then an optional block")
	}
	c.DSN = d.Val()
	if d.NextArg() {
		return nil, d.Errf("cluster: one dsn expected, got also %q (options go in the block)", d.Val())
	}
	if err := checkDSN(c.DSN); err != nil {
		return nil, d.Errf("cluster: %v", err)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "node":
			if err := crm.SingleArg(d, &c.Node); err != nil {
				return nil, err
			}
			if err := checkNodeName(c.Node); err != nil {
				return nil, d.Errf("cluster: %v", err)
			}
		case "schema":
			if err := crm.SingleArg(d, &c.Schema); err != nil {
				return nil, err
			}
			if !strings.Contains(c.Schema, "{") && !schemaName.MatchString(c.Schema) {
				return nil, d.Errf("cluster: schema %q: want a lower-case SQL name (letters, digits, _, at most 48; like leadproxy)", c.Schema)
			}
		case "fallback_after":
			var s string
			if err := crm.SingleArg(d, &s); err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur <= 0 {
				return nil, d.Errf("cluster: fallback_after: %q is not a positive duration (like 5m)", s)
			}
			c.FallbackAfter = caddy.Duration(dur)
		default:
			return nil, d.Errf("cluster: unknown option %q (want node, schema, fallback_after)", opt)
		}
	}
	return c, nil
}

func checkNodeName(n string) error {
	if strings.Contains(n, "{") {
		return nil // a placeholder, checked once resolved
	}
	if n == "" || len(n) > 100 || strings.ContainsFunc(n, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("node %q: want a name of 1 to 100 printable characters", n)
	}
	return nil
}

// checkDSN rejects what cannot be a PostgreSQL connection string, and a
// password written into it: the DSN is a secret, so its password comes
// through a placeholder. A DSN with placeholders is parsed in full once
// they are resolved (provision).
func checkDSN(dsn string) error {
	masked := envPlaceholderRe.ReplaceAllString(dsn, "")
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(masked)
		if err != nil {
			return fmt.Errorf("the dsn is not a URL (postgres://user@host:5432/db): %v", redact(err))
		}
		if pw, ok := u.User.Password(); ok && pw != "" || u.Query().Get("password") != "" {
			return fmt.Errorf("the dsn carries a password: it is a secret, give it through a placeholder (postgres://user:{env.PGPASSWORD}@host/db) or a PGPASSFILE")
		}
	} else {
		if !strings.Contains(dsn, "=") {
			return fmt.Errorf("the dsn is neither a URL (postgres://user@host:5432/db) nor key=value pairs (host=... dbname=...)")
		}
		for f := range strings.FieldsSeq(masked) {
			if k, v, _ := strings.Cut(f, "="); strings.TrimSpace(k) == "password" && strings.Trim(v, `'`) != "" {
				return fmt.Errorf("the dsn carries a password: it is a secret, give it through a placeholder (password={env.PGPASSWORD}) or a PGPASSFILE")
			}
		}
	}
	if strings.Contains(dsn, "{") {
		return nil
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return fmt.Errorf("the dsn does not parse: %v", redact(err))
	}
	return nil
}

// redact keeps an error about a DSN from quoting it: its text may hold a
// resolved secret.
func redact(err error) string {
	var pe *pgconn.ParseConfigError
	if e, ok := err.(*pgconn.ParseConfigError); ok {
		pe = e
	}
	if pe != nil && pe.Unwrap() != nil {
		return pe.Unwrap().Error()
	}
	if ue, ok := err.(*url.Error); ok {
		return ue.Err.Error()
	}
	return "malformed"
}

var envPlaceholderRe = regexp.MustCompile(`\{env\.[^{}]+\}`)

// resolve replaces the placeholders of the options. An {env.X} naming an
// unset or empty variable is an error naming it, never a DSN with a hole.
func (c *ClusterOptions) resolve() (*resolvedCluster, error) {
	one := func(what, s string) (string, error) {
		for _, m := range envPlaceholderRe.FindAllString(s, -1) {
			name := m[len("{env.") : len(m)-1]
			if v, ok := os.LookupEnv(name); !ok || v == "" {
				return "", fmt.Errorf("cluster: %s: environment variable %s is not set (from %s)", what, name, m)
			}
		}
		return caddy.NewReplacer().ReplaceAll(s, ""), nil
	}
	if c.DSN == "" {
		return nil, fmt.Errorf("cluster: dsn is required (postgres://user:{env.PGPASSWORD}@host:5432/db)")
	}
	r := &resolvedCluster{FallbackAfter: time.Duration(c.FallbackAfter)}
	var err error
	if r.DSN, err = one("dsn", c.DSN); err != nil {
		return nil, err
	}
	if _, err := pgconn.ParseConfig(r.DSN); err != nil {
		return nil, fmt.Errorf("cluster: the dsn does not parse: %v", redact(err))
	}
	if r.Node, err = one("node", c.Node); err != nil {
		return nil, err
	}
	if r.Node == "" {
		if r.Node, err = os.Hostname(); err != nil || r.Node == "" {
			return nil, fmt.Errorf("cluster: node: no hostname (%v); name the node (cluster <dsn> { node <name> })", err)
		}
	}
	if err := checkNodeName(r.Node); err != nil {
		return nil, fmt.Errorf("cluster: %v", err)
	}
	if r.Schema, err = one("schema", c.Schema); err != nil {
		return nil, err
	}
	if r.Schema == "" {
		r.Schema = "leadproxy"
	}
	if !schemaName.MatchString(r.Schema) {
		return nil, fmt.Errorf("cluster: schema %q: want a lower-case SQL name (letters, digits, _, at most 48; like leadproxy)", r.Schema)
	}
	if r.FallbackAfter < 0 {
		return nil, fmt.Errorf("cluster: fallback_after: want a positive duration")
	}
	return r, nil
}
