package moysklad

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/moysklad/moyskladtest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(MoySklad) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := moyskladtest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		PreviewIDs: []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"},
		Rate:       1, Per: time.Second, PerLead: 1,
		// The limit counts per user: another token is another account.
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "token", "another-token") },
	})
}
