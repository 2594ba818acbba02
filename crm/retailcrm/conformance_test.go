package retailcrm

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/retailcrm/retailcrmtest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(RetailCRM) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := retailcrmtest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		Rate: 10, Per: time.Second, PerLead: 1,
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "base_url", "https://other.retailcrm.ru") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "api_key", "second-key") },
	})
}
