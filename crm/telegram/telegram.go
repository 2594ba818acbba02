// Package telegram is the destination that alerts Telegram chats of a new
// lead through the Bot API's sendMessage, in parse_mode HTML with every lead
// value escaped.
//
// Answers, as the Bot API documents them: {"ok":true,"result":{message}}
// is delivered; {"ok":false,"error_code":429,"parameters":{"retry_after":n}}
// is retried after n seconds; 5xx and network errors are retried; 400
// (chat not found, a malformed message), 401 (bad token) and 403 (the bot
// was blocked or removed) are permanent.
//
// A lead is one message to each chat. When one chat fails after others
// took it, the retry sends only to the chats still missing it (this process
// remembers the chats it delivered to; after a restart a retry may alert a
// chat twice, never none).
package telegram

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/leadtext"
	"github.com/leadproxy/leadproxy/lead"
)

// DefaultBase is the Bot API's address.
const DefaultBase = "https://api.telegram.org"

func init() { caddy.RegisterModule(Telegram{}) }

// Telegram sends lead alerts to Telegram chats.
type Telegram struct {
	crm.Common
	// Token is the bot's token ("123456:ABC..."). Required; use a placeholder.
	Token string `json:"token,omitempty"`
	// Chats are the chat ids alerted: numeric (negative for groups) or a
	// channel's @username. Required.
	Chats []string `json:"chats,omitempty"`
	// Template is the message (docs/destinations.md, "Alert template").
	// Default leadtext.Default.
	Template string `json:"template,omitempty"`

	token string
	tpl   *leadtext.Template

	mem *memory
}

// memory is what Send remembers between attempts: lead id + "\x00" + chat
// → message id, for a partial delivery's retry.
type memory struct {
	mu   sync.Mutex
	sent map[string]string
}

// CaddyModule returns the Caddy module information.
func (Telegram) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: crm.Namespace + ".telegram", New: func() caddy.Module { return new(Telegram) }}
}

var tokenShape = regexp.MustCompile(`^[0-9]+:[A-Za-z0-9_-]+$`)

// Provision resolves the token and parses the template.
func (t *Telegram) Provision(caddy.Context) error {
	if err := t.Spec().Resolve(); err != nil {
		return err
	}
	if err := t.Common.Provision(DefaultBase); err != nil {
		return fmt.Errorf("telegram: %w", err)
	}
	if !tokenShape.MatchString(t.token) {
		return fmt.Errorf("telegram: token: not a bot token (want <bot id>:<secret>, as @BotFather gives it)")
	}
	for _, c := range t.Chats {
		if _, err := checkChat(c); err != nil {
			return fmt.Errorf("telegram: chat: %w", err)
		}
	}
	tpl, err := leadtext.Parse(t.Template)
	if err != nil {
		return fmt.Errorf("telegram: %w", err)
	}
	t.tpl = tpl
	t.mem = &memory{sent: map[string]string{}}
	return nil
}

// Account is the bot and the chats it alerts: Telegram's limit (DefaultRate)
// counts per chat, so two destinations share it when the same bot alerts
// the same chats.
func (t *Telegram) Account() string {
	chats := append([]string(nil), t.Chats...)
	sort.Strings(chats)
	return crm.AccountKey("telegram", crm.HostOf(t.BaseURL), append([]string{t.botID()}, chats...)...)
}

// botID is the bot token's public part, before the colon.
func (t *Telegram) botID() string {
	id, _, _ := strings.Cut(t.token, ":")
	return id
}

// DefaultRate is Telegram's per-chat limit: about one message a second in
// a chat, and 20 a minute in a group. Each lead is one message per chat,
// so the chats do not add up.
func (t *Telegram) DefaultRate() (int, time.Duration) {
	for _, c := range t.Chats {
		if strings.HasPrefix(c, "-") || strings.HasPrefix(c, "@") {
			return t.RateOr(20, time.Minute, 1)
		}
	}
	return t.RateOr(1, time.Second, 1)
}

// answer is the Bot API's reply envelope.
type answer struct {
	OK          bool   `json:"ok"`
	ErrorCode   int    `json:"error_code"`
	Description string `json:"description"`
	Result      *struct {
		MessageID int64 `json:"message_id"`
	} `json:"result"`
	Parameters *struct {
		RetryAfter      int   `json:"retry_after"`
		MigrateToChatID int64 `json:"migrate_to_chat_id"`
	} `json:"parameters"`
}

// Message is the sendMessage request body.
type Message struct {
	ChatID             string          `json:"chat_id"`
	Text               string          `json:"text"`
	ParseMode          string          `json:"parse_mode"`
	LinkPreviewOptions map[string]bool `json:"link_preview_options,omitempty"`
}

// Build is the sendMessage body for one chat: what Send posts.
func (t *Telegram) Build(l *lead.Lead, chat string) Message {
	return Message{ChatID: chat, Text: t.tpl.HTML(l), ParseMode: "HTML",
		LinkPreviewOptions: map[string]bool{"is_disabled": true}}
}

// Send posts the alert to each chat that does not have it yet and returns
// the message ids, "chat:id" comma-separated.
func (t *Telegram) Send(ctx context.Context, l *lead.Lead) (string, error) {
	var ids []string
	for _, chat := range t.Chats {
		key := l.ID + "\x00" + chat
		t.mem.mu.Lock()
		id, done := t.mem.sent[key]
		t.mem.mu.Unlock()
		if !done {
			var err error
			if id, err = t.send(ctx, t.Build(l, chat)); err != nil {
				return "", fmt.Errorf("telegram: chat %s: %w", chat, crm.Redact(err, t.token))
			}
			if !crm.Recording(ctx) { // a preview sent nothing
				t.remember(key, id)
			}
		}
		ids = append(ids, chat+":"+id)
	}
	t.mem.mu.Lock()
	for _, chat := range t.Chats {
		delete(t.mem.sent, l.ID+"\x00"+chat)
	}
	t.mem.mu.Unlock()
	return strings.Join(ids, ","), nil
}

// Preview is what Send would post for l (the dry run): one sendMessage
// per chat, answered as the Bot API documents a sent message.
func (t *Telegram) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, t, l, func(*http.Request, []byte) *crm.Response {
		return crm.JSONAnswer(`{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"},"text":""}}`)
	}, t.token)
}

// maxRemembered bounds the partial-delivery memory (leads whose retry is
// pending); the oldest half is dropped beyond it.
const maxRemembered = 10000

func (t *Telegram) remember(key, id string) {
	t.mem.mu.Lock()
	defer t.mem.mu.Unlock()
	if len(t.mem.sent) >= maxRemembered {
		n := 0
		for k := range t.mem.sent {
			delete(t.mem.sent, k)
			if n++; n >= maxRemembered/2 {
				break
			}
		}
	}
	t.mem.sent[key] = id
}

func (t *Telegram) send(ctx context.Context, m Message) (string, error) {
	resp, err := crm.DoJSON(ctx, t.Client(), http.MethodPost, t.BaseURL+"/bot"+t.token+"/sendMessage", m, nil)
	if err != nil {
		return "", err
	}
	var a answer
	jerr := json.Unmarshal(resp.Body, &a)
	if resp.Status == http.StatusTooManyRequests && jerr == nil && a.Parameters != nil && a.Parameters.RetryAfter > 0 {
		return "", lead.Retryable(resp.Status, a.Description, time.Duration(a.Parameters.RetryAfter)*time.Second)
	}
	if resp.Status == http.StatusBadRequest && jerr == nil && a.Parameters != nil && a.Parameters.MigrateToChatID != 0 {
		return "", lead.Permanent(resp.Status, fmt.Sprintf("%s: the group is now chat %d; put that id in the chat option",
			a.Description, a.Parameters.MigrateToChatID))
	}
	if err := crm.Classify(resp, a.Description); err != nil {
		return "", err
	}
	if jerr != nil || !a.OK || a.Result == nil || a.Result.MessageID == 0 {
		return "", crm.Unparsable(resp, jerr)
	}
	return strconv.FormatInt(a.Result.MessageID, 10), nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Telegram)(nil)
	_ caddyfile.Unmarshaler = (*Telegram)(nil)
	_ lead.Sender           = (*Telegram)(nil)
	_ lead.Rated            = (*Telegram)(nil)
)
