package telegram

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/leadtext"
)

var channel = regexp.MustCompile(`^@[A-Za-z][A-Za-z0-9_]{4,31}$`)

// checkChat accepts a numeric chat id (negative for groups) or a public
// channel's @username, as sendMessage's chat_id takes them.
func checkChat(v string) (string, error) {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil && v != "0" {
		return v, nil
	}
	if channel.MatchString(v) {
		return v, nil
	}
	return "", fmt.Errorf("%q is not a chat id (a number, negative for a group, or a channel's @username)", v)
}

// Spec declares the options of
//
//	destination <name> telegram {
//		token    {env.TELEGRAM_BOT_TOKEN}
//		chat     <id> [<id>...]
//		template <text>
//		base_url | rate | timeout ...
//	}
func (t *Telegram) Spec() crm.Spec {
	return crm.Spec{Type: "telegram", Common: &t.Common, Options: []crm.Option{
		{Name: "token", Kind: crm.SecretText, Target: &t.Token, Into: &t.token, Required: true,
			Doc: "the bot's token from @BotFather; use a placeholder: token {env.TELEGRAM_BOT_TOKEN}"},
		{Name: "chat", Kind: crm.List, Target: &t.Chats, Required: true, Check: checkChat,
			Doc: "chat ids to alert: a user's or group's numeric id, or a channel's @username"},
		{Name: "template", Target: &t.Template, Default: "the default template",
			Doc:   "the message, in the alert template syntax",
			Check: func(v string) (string, error) { _, err := leadtext.Parse(v); return v, err }},
		{Name: "base_url", Default: DefaultBase, Doc: "the Bot API's address"},
		{Name: "rate", Default: "1/1s, 20/1m when a chat is a group or channel", Doc: "<n>/<duration>"},
	}}
}

// UnmarshalCaddyfile parses the block declared by Spec.
func (t *Telegram) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return t.Spec().Parse(d) }
