package webhook_test

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/webhook"
	"github.com/leadproxy/leadproxy/crm/webhook/webhooktest"
)

// TestConformance runs the suite every destination type passes.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(webhook.Webhook) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := webhooktest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		Rate: 20, Per: time.Second, PerLead: 1,
		// A receiver's 2xx is delivered whatever its body.
		NoFaults: []crmtest.Fault{crmtest.Garbage},
	})
}
