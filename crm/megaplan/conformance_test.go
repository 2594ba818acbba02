package megaplan

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/megaplan/megaplantest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(Megaplan) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := megaplantest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		PreviewIDs: []string{"1000001", "1000002"},
		Rate:       3, Per: time.Second, PerLead: 1,
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "base_url", "https://other.megaplan.ru") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "login", "someone-else") },
	})
}
