package uon

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/uon/uontest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(UON) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := uontest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		Rate: 3, Per: time.Second, PerLead: 1,
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "key", "another-key") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "source", "Landing") },
	})
}
