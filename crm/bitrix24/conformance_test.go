package bitrix24

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/bitrix24/bitrix24test"
	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(Bitrix24) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := bitrix24test.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		PreviewIDs: []string{"3465"},
		Rate:       2, Per: time.Second, PerLead: 1,
	})
}
