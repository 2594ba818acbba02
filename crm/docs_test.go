package crm_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadproxy/leadproxy/crm"
	_ "github.com/leadproxy/leadproxy/crm/amocrm"
	_ "github.com/leadproxy/leadproxy/crm/bitrix24"
	_ "github.com/leadproxy/leadproxy/crm/email"
	_ "github.com/leadproxy/leadproxy/crm/freshoffice"
	_ "github.com/leadproxy/leadproxy/crm/megaplan"
	_ "github.com/leadproxy/leadproxy/crm/moysklad"
	_ "github.com/leadproxy/leadproxy/crm/retailcrm"
	_ "github.com/leadproxy/leadproxy/crm/roistat"
	_ "github.com/leadproxy/leadproxy/crm/salesforce"
	_ "github.com/leadproxy/leadproxy/crm/telegram"
	_ "github.com/leadproxy/leadproxy/crm/uon"
	_ "github.com/leadproxy/leadproxy/crm/webhook"
)

// docRow is one row of a type's options table in docs/destinations.md.
type docRow struct{ required, def string }

// docTables reads every "## <type>" section's options table.
func docTables(t *testing.T) map[string]map[string]docRow {
	raw, err := os.ReadFile("../docs/destinations.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]docRow{}
	section, inTable := "", false
	name := regexp.MustCompile("`([a-z_]+)`")
	for _, l := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			section, inTable = strings.TrimSpace(l[3:]), false
		case strings.HasPrefix(l, "| option | value | required | default |"):
			inTable = true
			out[section] = map[string]docRow{}
		case inTable && strings.HasPrefix(l, "|---"):
		case inTable && strings.HasPrefix(l, "|"):
			cells := strings.Split(strings.ReplaceAll(l, `\|`, "¦"), "|")
			if len(cells) != 6 {
				t.Fatalf("%s: row %q has %d cells", section, l, len(cells)-2)
			}
			for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
				out[section][m[1]] = docRow{strings.TrimSpace(cells[3]), strings.TrimSpace(cells[4])}
			}
		default:
			inTable = false
		}
	}
	return out
}

// TestDocsMatchSpecs: each type's options table in docs/destinations.md
// lists the options its Spec declares, no more, with the same required
// ones and defaults.
func TestDocsMatchSpecs(t *testing.T) {
	tables := docTables(t)
	mods := caddy.GetModules(crm.Namespace)
	if len(mods) < 10 {
		t.Fatalf("%d destination types registered", len(mods))
	}
	for _, m := range mods {
		typ := m.ID.Name()
		t.Run(typ, func(t *testing.T) {
			d, ok := m.New().(interface{ Spec() crm.Spec })
			if !ok {
				t.Fatalf("%s declares no Spec", typ)
			}
			rows, ok := tables[typ]
			if !ok {
				t.Fatalf("docs/destinations.md has no options table under \"## %s\"", typ)
			}
			spec := d.Spec()
			declared := map[string]bool{}
			for _, o := range spec.Options {
				declared[o.Name] = true
				row, ok := rows[o.Name]
				if !ok {
					t.Errorf("option %s is not in the docs' table", o.Name)
					continue
				}
				if (row.required == "yes") != o.Required {
					t.Errorf("%s: the docs say required %q, the Spec %v", o.Name, row.required, o.Required)
				}
				def := strings.ReplaceAll(row.def, "`", "")
				if (def == "") != (o.Default == "") || !strings.Contains(def, o.Default) {
					t.Errorf("%s: the docs' default %q, the Spec's %q", o.Name, row.def, o.Default)
				}
			}
			for name := range rows {
				if !declared[name] && name != "rate" && name != "timeout" {
					t.Errorf("the docs list %s, which the Spec does not declare", name)
				}
			}
			if _, ok := rows["rate"]; !ok {
				t.Errorf("the docs' table lacks the rate, timeout row")
			}
		})
	}
}
