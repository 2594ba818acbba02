package freshoffice

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/freshoffice/freshofficetest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(FreshOffice) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := freshofficetest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		PreviewIDs: []string{"1000001", "1000002"},
		Rate:       3, Per: time.Second, PerLead: 1,
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "token", "another-token") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "manager", "77") },
	})
}
