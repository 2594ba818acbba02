package email_test

import (
	"os"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/email"
	"github.com/leadproxy/leadproxy/crm/email/emailtest"
)

// TestConformance runs the suite every destination type passes, against a
// real SMTP server with STARTTLS.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(email.Email) },
		Fake: func() (string, *crmtest.Faults, func()) {
			d, err := os.MkdirTemp(dir, "smtp")
			if err != nil {
				t.Fatal(err)
			}
			s, err := emailtest.Start(d, false)
			if err != nil {
				t.Fatal(err)
			}
			return s.Caddyfile(), s.Faults, s.Close
		},
		Rate: 1, Per: time.Second,
		// SMTP has no "2xx with an unreadable body".
		NoFaults: []crmtest.Fault{crmtest.Garbage},
		// Another login is another account; other recipients are not.
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "username", "other@example.com") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "to", "other@example.com") },
	})
}
