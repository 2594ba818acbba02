// Package telegramtest is a fake Telegram Bot API for tests: sendMessage
// as https://core.telegram.org/bots/api documents it — the {"ok":...}
// envelope, 401 for a wrong token, 400 "chat not found" for a chat the bot
// is not in, 400 "can't parse entities" for text that is not valid in
// parse_mode HTML, 400 "message is too long" over 4096 characters, 429 with
// parameters.retry_after, 403 for a bot blocked by the user — and renders
// crmtest faults as Telegram's front (nginx) does.
package telegramtest

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/telegram"
)

// Token is the bot token the fake accepts.
const Token = "123456789:AAE-test_Token"

// Chats the bot is in: a user, a group.
const (
	User  = "111222333"
	Group = "-1001234567890"
)

// Sent is one message the fake accepted.
type Sent struct {
	telegram.Message
	MessageID int64
	Plain     string // the text as the chat shows it (tags and entities parsed)
}

// Fake is the Bot API.
type Fake struct {
	URL    string
	Faults *crmtest.Faults
	Sent   crmtest.Log[Sent]

	mu      sync.Mutex
	chats   map[string]bool
	blocked map[string]bool
	flood   map[string]int // chat → retry_after for its next message
	next    int64
	srv     *httptest.Server
}

// New starts the fake with the bot in User and Group.
func New() *Fake {
	f := &Fake{Faults: &crmtest.Faults{}, chats: map[string]bool{User: true, Group: true},
		blocked: map[string]bool{}, flood: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the fake.
func (f *Fake) Close() { f.srv.Close() }

// Caddyfile is the destination block's lines for this fake.
func (f *Fake) Caddyfile() string {
	return "base_url " + f.URL + "\ntoken " + Token + "\nchat " + User + " " + Group
}

// Flood makes the next message to chat answer 429 with retry_after secs.
func (f *Fake) Flood(chat string, secs int) { f.mu.Lock(); f.flood[chat] = secs; f.mu.Unlock() }

// Block makes chat answer 403 "bot was blocked by the user".
func (f *Fake) Block(chat string) { f.mu.Lock(); f.blocked[chat] = true; f.mu.Unlock() }

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, desc string, params map[string]any) {
	body := map[string]any{"ok": false, "error_code": code, "description": desc}
	if params != nil {
		body["parameters"] = params
	}
	reply(w, code, body)
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	switch f.Faults.Next() {
	case crmtest.Unauthorized:
		fail(w, 401, "Unauthorized", nil)
		return
	case crmtest.Validation:
		fail(w, 400, "Bad Request: chat not found", nil)
		return
	case crmtest.RateJSON:
		fail(w, 429, "Too Many Requests: retry after 7", map[string]any{"retry_after": 7})
		return
	case crmtest.RateHTML:
		crmtest.HTML(w, 429, "429 Too Many Requests")
		return
	case crmtest.ServerError:
		fail(w, 500, "Internal Server Error", nil)
		return
	case crmtest.Unavailable, crmtest.QueryLimit:
		crmtest.HTML(w, 502, "502 Bad Gateway")
		return
	case crmtest.Slow:
		f.Faults.Wait(r)
	case crmtest.Garbage:
		crmtest.HTML(w, 200, "<html>ok</html>")
		return
	case crmtest.Reset:
		crmtest.ResetConn(w)
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/bot"+Token+"/")
	if !ok {
		if strings.HasPrefix(r.URL.Path, "/bot") {
			fail(w, 401, "Unauthorized", nil)
		} else {
			fail(w, 404, "Not Found", nil)
		}
		return
	}
	if method != "sendMessage" || r.Method != http.MethodPost {
		fail(w, 404, "Not Found: method not found", nil)
		return
	}
	var m telegram.Message
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || json.Unmarshal(body, &m) != nil {
		fail(w, 400, "Bad Request: message text is empty", nil)
		return
	}
	f.mu.Lock()
	known, blocked, flood := f.chats[m.ChatID], f.blocked[m.ChatID], f.flood[m.ChatID]
	delete(f.flood, m.ChatID)
	f.mu.Unlock()
	switch {
	case !known:
		fail(w, 400, "Bad Request: chat not found", nil)
		return
	case blocked:
		fail(w, 403, "Forbidden: bot was blocked by the user", nil)
		return
	case flood > 0:
		fail(w, 429, fmt.Sprintf("Too Many Requests: retry after %d", flood), map[string]any{"retry_after": flood})
		return
	case m.Text == "":
		fail(w, 400, "Bad Request: message text is empty", nil)
		return
	}
	plain := m.Text
	if m.ParseMode == "HTML" {
		var err error
		if plain, err = ParseHTML(m.Text); err != nil {
			fail(w, 400, "Bad Request: can't parse entities: "+err.Error(), nil)
			return
		}
	}
	if utf8.RuneCountInString(plain) > 4096 {
		fail(w, 400, "Bad Request: message is too long", nil)
		return
	}
	f.mu.Lock()
	f.next++
	id := f.next
	f.mu.Unlock()
	f.Sent.Add(Sent{Message: m, MessageID: id, Plain: plain})
	reply(w, 200, map[string]any{"ok": true, "result": map[string]any{
		"message_id": id, "date": 1764750000, "text": plain,
		"chat": map[string]any{"id": m.ChatID, "type": "private"}}})
}

var (
	tagRE    = regexp.MustCompile(`^<(/?)([a-z-]+)(\s[^<>]*)?>`)
	entityRE = regexp.MustCompile(`^&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);`)
	// the tags the Bot API's HTML style takes
	tags = map[string]bool{"b": true, "strong": true, "i": true, "em": true, "u": true, "ins": true,
		"s": true, "strike": true, "del": true, "span": true, "tg-spoiler": true, "a": true,
		"code": true, "pre": true, "blockquote": true, "tg-emoji": true}
)

// ParseHTML checks text as the Bot API's parse_mode HTML does (only its
// tags, properly nested; only &lt; &gt; &amp; &quot; and numeric entities;
// no bare '<' or '&') and returns the text the chat shows.
func ParseHTML(s string) (string, error) {
	var out strings.Builder
	var open []string
	for i := 0; i < len(s); {
		switch s[i] {
		case '<':
			m := tagRE.FindStringSubmatch(s[i:])
			if m == nil || !tags[m[2]] {
				return "", fmt.Errorf("unsupported start tag at byte offset %d", i)
			}
			if m[1] == "/" {
				if len(open) == 0 || open[len(open)-1] != m[2] {
					return "", fmt.Errorf("unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", i, last(open), m[2])
				}
				open = open[:len(open)-1]
			} else {
				open = append(open, m[2])
			}
			i += len(m[0])
		case '&':
			m := entityRE.FindString(s[i:])
			if m == "" {
				return "", fmt.Errorf("unsupported entity at byte offset %d", i)
			}
			out.WriteString(html.UnescapeString(m))
			i += len(m)
		case '>':
			return "", fmt.Errorf("unexpected '>' at byte offset %d", i) // Telegram tolerates it; we want it escaped
		default:
			out.WriteByte(s[i])
			i++
		}
	}
	if len(open) > 0 {
		return "", fmt.Errorf("can't find end tag corresponding to start tag \"%s\"", last(open))
	}
	return out.String(), nil
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
