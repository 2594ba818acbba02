package bitrix24

import (
	"net/url"
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
		// Another portal is another account; another webhook (user, code)
		// of one portal is not.
		OtherAccount: func(l string) string {
			return crmtest.WithOption(l, "webhook_url", "https://other.bitrix24.ru/rest/1/abcdef123456/")
		},
		SameAccount: func(l string) string {
			u, _ := url.Parse(crmtest.OptionValue(l, "webhook_url"))
			return crmtest.WithOption(l, "webhook_url", u.Scheme+"://"+u.Host+"/rest/7/zyxw98765/")
		},
	})
}
