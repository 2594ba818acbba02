package telegram_test

import (
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/telegram"
	"github.com/leadproxy/leadproxy/crm/telegram/telegramtest"
)

// TestConformance runs the suite every destination type passes. The fake's
// lines alert a user and a group, so the default rate is a group's 20/min.
func TestConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New: func() crmtest.Destination { return new(telegram.Telegram) },
		Fake: func() (string, *crmtest.Faults, func()) {
			f := telegramtest.New()
			return f.Caddyfile(), f.Faults, f.Close
		},
		Rate: 20, Per: time.Minute,
	})
}
