package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the golden adapt files")

func adapt(t *testing.T, body string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	return out, err
}

// TestAdaptGolden: each testdata/adapt/*.caddyfiletest holds a Caddyfile,
// a line of dashes, and the JSON it adapts to (go test -update rewrites).
func TestAdaptGolden(t *testing.T) {
	// Placeholders stay in the JSON; provisioning resolves them.
	for _, v := range []string{"AMOCRM_TOKEN", "RETAILCRM_KEY", "MOYSKLAD_TOKEN", "MEGAPLAN_PASSWORD",
		"SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_REFRESH_TOKEN", "FRESHOFFICE_TOKEN", "UON_KEY",
		"ROISTAT_KEY", "HOOK_TOKEN", "LEADPROXY_API_KEY", "SMTP_PASSWORD", "LEADPROXY_PG_PASSWORD"} {
		t.Setenv(v, "test-"+strings.ToLower(v))
	}
	t.Setenv("HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("TELEGRAM_BOT_TOKEN", "123456789:AAE-example_token")
	t.Setenv("LEADPROXY_MARKER_KEY", "test-marker-key-of-32-bytes-or-more")
	files, _ := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cf, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			out, err := adapt(t, cf)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var pretty bytes.Buffer
			json.Indent(&pretty, out, "", "\t")
			got := pretty.String() + "\n"
			if *update {
				os.WriteFile(f, []byte(cf+"\n----------\n"+got), 0o644)
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Errorf("adapted JSON differs from the golden file (go test -run TestAdaptGolden -update):\n%s", got)
			}
			// The JSON must also provision: every module and option known.
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg.Admin = &caddy.AdminConfig{Disabled: true}
			if err := caddy.Validate(&cfg); err != nil {
				t.Errorf("adapted config does not validate: %v", err)
			}
		})
	}
}

// TestConfigErrors: what users see for bad config, with file and line.
func TestConfigErrors(t *testing.T) {
	wrap := func(global, site string) string {
		return "{\n\tleadproxy {\n" + global + "\n\t}\n}\nexample.com {\n\tleadproxy {\n" + site + "\n\t}\n\trespond ok\n}\n"
	}
	// Caddy's dispenser appends ", at <file>:<line>" to a message; lines
	// count from the "{" of the global block (site options start at line 8).
	cases := []struct {
		name, caddyfile, want string
	}{
		{"unknown handler option", wrap("", "\t\tinjekt on"), `leadproxy: unknown option "injekt" (want prefix, send_to, inject, visits, api_key, auto, max_body, max_upload, phone_region, charset, audit, dry_run, form), at Caddyfile:8`},
		{"unknown phone region", wrap("", "\t\tphone_region RUS"), `phone_region "RUS" is not a known country code (two capital letters like RU, KZ, BY, US), at Caddyfile:8`},
		{"unknown charset", wrap("", "\t\tcharset windows-1215"), `charset "windows-1215" is not a known charset label (like windows-1251 or koi8-r), at Caddyfile:8`},
		{"bad audit option", wrap("", "\t\taudit {\n\t\t\tflag_afterr 1h\n\t\t}"), `audit: unknown option "flag_afterr" (want every, flag_after, max_page), at Caddyfile:9`},
		{"bad audit duration", wrap("", "\t\taudit {\n\t\t\tevery often\n\t\t}"), `audit: every: "often" is not a positive duration, at Caddyfile:9`},
		{"unknown global option", wrap("\t\tstorrage /x", ""), `leadproxy: unknown global option "storrage" (want storage, retry_for, retention, dedup_window, timezone, visits, max_store, leads_per_client, leads_per_site, marker_key, destination, cluster), at Caddyfile:3`},
		{"literal marker_key", wrap("\t\tmarker_key s3cr3t-key-in-the-config-0123456789", ""), `marker_key: give the key through a placeholder, like {env.LEADPROXY_MARKER_KEY}, so the config never holds it, at Caddyfile:3`},
		{"bad max_store", wrap("\t\tmax_store huge", ""), `max_store: "huge" is not a size (like 1GB) or off, at Caddyfile:3`},
		{"bad leads_per_client", wrap("\t\tleads_per_client 0", ""), `leads_per_client: "0" is not a positive number of leads a minute, or off, at Caddyfile:3`},
		{"bad submit selector", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit \"#a[\"\n\t\t}"), `form "A": submit selector "#a[" does not compile: expected identifier, found EOF instead, at Caddyfile:9`},
		{"selector the browser rejects", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit \"form:contains(Отправить)\"\n\t\t}"), `form "A": submit selector "form:contains(Отправить)" :contains is a jQuery extension, not CSS: the browser's querySelector rejects it, so the rule would never match (match by id, class or attribute, or read the text with a selector source), at Caddyfile:9`},
		{"selector source the browser rejects", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t\tphone selector \"input:visible\"\n\t\t}"), `form "A": phone: selector "input:visible" :visible is a jQuery extension, not CSS: the browser's querySelector rejects it, so the rule would never match (match by id, class or attribute), at Caddyfile:10`},
		{"unquoted # selector", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit #a\n\t\t}"), `form "A": submit needs a value; quote a selector that starts with # (submit "#contact-form"), a bare # starts a Caddyfile comment, at Caddyfile:9`},
		{"bad selector source", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t\tphone selector \"input[\"\n\t\t}"), `form "A": phone: selector "input[" does not compile`},
		{"unknown source keyword", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t\tphone feild Phone\n\t\t}"), `form "A": phone: unknown source "feild": want static, field, selector or js, at Caddyfile:10`},
		{"form without mechanism", wrap("", "\t\tform \"A\" {\n\t\t\tphone field Phone\n\t\t}"), `form "A": needs submit, click or post, at Caddyfile:8`},
		{"unknown destination in send_to", wrap("\t\tdestination hook webhook {\n\t\t\turl http://127.0.0.1:9/x\n\t\t\tsecret {env.HOOK_SECRET}\n\t\t}", "\t\tsend_to hook crm"), `send_to: unknown destination "crm" (defined: hook), at Caddyfile:11`},
		{"unknown destination in form", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t\tsend_to amo\n\t\t}"), `send_to: unknown destination "amo": the global leadproxy block defines none, at Caddyfile:10`},
		{"unknown destination type", wrap("\t\tdestination x zoho {\n\t\t}", ""), `destination x: unknown type "zoho" (one of amocrm, bitrix24, email, freshoffice, megaplan, moysklad, retailcrm, roistat, salesforce, telegram, uon, webhook), at Caddyfile:3`},
		{"bad duration", wrap("\t\tretry_for soon", ""), `retry_for: "soon" is not a positive duration (like 72h or 30d), at Caddyfile:3`},
		{"duplicate form title", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t}\n\t\tform \"A\" {\n\t\t\tclick .b\n\t\t}"), `form "A" defined twice`},
		{"require without post", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t\trequire phone\n\t\t}"), `form "A": require goes with post, at Caddyfile:8`},
		{"bad inject value", wrap("", "\t\tinject yes"), `inject: want on or off, got "yes", at Caddyfile:8`},
		{"webhook unknown option", wrap("\t\tdestination h webhook {\n\t\t\tsecrett x\n\t\t}", ""), `webhook: unknown option "secrett" (want url, secret, header, base_url, rate, timeout), at Caddyfile:4`},
		{"bad rate", wrap("\t\tdestination h webhook {\n\t\t\turl http://x/\n\t\t\trate fast\n\t\t}", ""), `rate "fast": want <n>/<duration>, like 7/1s, at Caddyfile:5`},
		{"bad max_body", wrap("", "\t\tmax_body lots"), `max_body`},
		{"destination in the site's leadproxy", wrap("", "\t\tdestination amo amocrm {\n\t\t}"), `destination belongs in the global options block: { leadproxy { destination <name> <type> { ... } } }; a site picks destinations with send_to, at Caddyfile:8`},
		{"destination as a site directive", "example.com {\n\tdestination amo amocrm {\n\t\ttoken t\n\t}\n\trespond ok\n}\n", `destination belongs in the global options block`},
		{"missing required destination option", wrap("\t\tdestination amo amocrm {\n\t\t\tbase_url https://x.amocrm.ru\n\t\t}", ""), `amocrm: token is required (a long-lived token of a private integration), at Caddyfile:3`},
		{"stray destination argument", wrap("\t\tdestination amo amocrm stray {\n\t\t\ttoken abc\n\t\t}", ""), `amocrm: unexpected argument "stray"; options go in the block, at Caddyfile:3`},
		{"bad timezone", wrap("\t\ttimezone Europe/Moskva", ""), `timezone "Europe/Moskva": not a time zone name (like Europe/Moscow)`},
		{"bad visits option", wrap("\t\tvisits {\n\t\t\tkeep 1d\n\t\t}", ""), `visits: unknown option "keep" (want retention, max), at Caddyfile:4`},
		{"bad visits retention", wrap("\t\tvisits {\n\t\t\tretention forever\n\t\t}", ""), `visits: retention "forever" is not a positive duration (like 90d), at Caddyfile:4`},
		{"bad visits max", wrap("\t\tvisits {\n\t\t\tmax -5\n\t\t}", ""), `visits: max "-5" is not a positive number, at Caddyfile:4`},
		{"bad visits value", wrap("", "\t\tvisits maybe"), `visits: want on or off, got "maybe", at Caddyfile:8`},
		{"bad dry_run value", wrap("", "\t\tdry_run yes"), `dry_run: want dry_run, dry_run on or dry_run off, at Caddyfile:8`},
		{"bad form dry_run value", wrap("", "\t\tform \"A\" {\n\t\t\tsubmit .a\n\t\t\tdry_run please\n\t\t}"), `form "A": dry_run: want dry_run, dry_run on or dry_run off, at Caddyfile:10`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkAdaptError(t, c.caddyfile, c.want) })
	}
}

// checkAdaptError adapts a Caddyfile that must fail with an error
// containing want, and returns that error.
func checkAdaptError(t *testing.T, caddyfile, want string) error {
	t.Helper()
	_, err := adapt(t, caddyfile)
	if err == nil {
		t.Fatalf("no error for:\n%s", caddyfile)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error:\n  %v\nwant it to contain:\n  %s", err, want)
	}
	return err
}

// TestProvisionErrors: JSON configs (no Caddyfile lines) are checked at
// provision, with the field named.
func TestProvisionErrors(t *testing.T) {
	cases := []struct{ name, json, want string }{
		{"send_to unknown", `{"apps":{"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[{"handler":"leadproxy","send_to":["nope"]}]}]}}}}}`, `send_to: unknown destination "nope"`},
		{"bad selector", `{"apps":{"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[{"handler":"leadproxy","forms":[{"title":"A","submit":"#a["}]}]}]}}}}}`, `submit selector "#a[" does not compile`},
		{"selector the browser rejects", `{"apps":{"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[{"handler":"leadproxy","forms":[{"title":"A","submit":"form:eq(0)"}]}]}]}}}}}`, `submit selector "form:eq(0)" :eq is a jQuery extension`},
		{"webhook without url", `{"apps":{"leadproxy":{"destinations":{"h":{"type":"webhook"}}}}}`, `webhook: url is required`},
		{"webhook without secret", `{"apps":{"leadproxy":{"destinations":{"h":{"type":"webhook","url":"http://x/"}}}}}`, `webhook: secret is required`},
		{"bad timezone", `{"apps":{"leadproxy":{"timezone":"Mars/Olympus"}}}`, `timezone "Mars/Olympus": not a time zone name`},
		{"webhook bad secret", `{"apps":{"leadproxy":{"destinations":{"h":{"type":"webhook","url":"http://x/","secret":"abc"}}}}}`, `webhook: secret: want "whsec_"`},
		{"literal marker_key", `{"apps":{"leadproxy":{"marker_key":"0123456789abcdef0123456789abcdef"}}}`, `marker_key: give the key through a placeholder`},
		{"marker_key unset", `{"apps":{"leadproxy":{"marker_key":"{env.LEADPROXY_TEST_NO_SUCH_KEY}"}}}`, `marker_key: environment variable LEADPROXY_TEST_NO_SUCH_KEY is not set`},
		{"short marker_key", `{"apps":{"leadproxy":{"marker_key":"{env.LEADPROXY_TEST_SHORT_KEY}"}}}`, `marker_key: {env.LEADPROXY_TEST_SHORT_KEY} gives 5 bytes, want at least 32`},
	}
	t.Setenv("LEADPROXY_TEST_SHORT_KEY", "short")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cfg caddy.Config
			if err := json.Unmarshal([]byte(c.json), &cfg); err != nil {
				t.Fatal(err)
			}
			cfg.Admin = &caddy.AdminConfig{Disabled: true}
			err := caddy.Validate(&cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
