package webhook_test

import (
	"strings"
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
		// Another host is another receiver; another path of one host is not.
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "url", "https://other.example.com/hook") },
		SameAccount: func(l string) string {
			return crmtest.WithOption(l, "url", strings.TrimRight(crmtest.OptionValue(l, "url"), "/")+"/another/path")
		},
	})
}
