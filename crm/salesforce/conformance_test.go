package salesforce

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/salesforce/salesforcetest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(Salesforce) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := salesforcetest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		Rate: 10, Per: time.Second, PerLead: 1,
		OtherAccount: func(l string) string {
			return crmtest.WithOption(l, "base_url", "https://other.my.salesforce.com")
		},
		SameAccount: func(l string) string { return crmtest.WithOption(l, "client_id", "another-app") },
	})
}
