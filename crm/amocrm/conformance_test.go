package amocrm

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/amocrm/amocrmtest"
	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(AmoCRM) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := amocrmtest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		Rate: 7, Per: 2 * time.Second, PerLead: 2,
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "base_url", "https://other.amocrm.ru") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "token", "second-token") },
	})
}
