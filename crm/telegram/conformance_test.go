package telegram_test

import (
	"slices"
	"strings"
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
		// The limit counts per chat: other chats are another account; a
		// new token of the same bot, the same chats in another order, not.
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "chat", "424242") },
		SameAccount: func(l string) string {
			chats := strings.Fields(crmtest.OptionValue(l, "chat"))
			slices.Reverse(chats)
			id, _, _ := strings.Cut(crmtest.OptionValue(l, "token"), ":")
			l = crmtest.WithOption(l, "token", id+":AAAnotherSecretOfTheSameBot0000000")
			return crmtest.WithOption(l, "chat", strings.Join(chats, " "))
		},
	})
}
