// Package uon is the destination for U-ON.Travel: one "обращение" per lead
// through POST https://api.u-on.ru/{key}/lead/create.json, form-encoded.
//
// The API key is part of the URL path, so it is scrubbed from every error
// this package returns (a proxy or U-ON itself may echo the URL back).
//
// Official documentation was not available to the reference; what is known
// comes from a client library and live integrations ([L]), and the adapter
// is defensive about the rest ([U]):
//   - success is HTTP 200 {"result":200,"id":34144}; the id may be a number
//     or a string, and a "result" other than 200 inside an HTTP 200 is an
//     error classified by that code (429 and 5xx retried, the rest
//     permanent);
//   - error bodies are undocumented: the message is read from message,
//     error, comment or description when the body is JSON;
//   - 429 is the only rate-limit signal known; without Retry-After the retry
//     waits 10 s, as the client library does; the numeric limit is unknown,
//     so the default rate of 3/s is a guess;
//   - a lead needs a phone or an e-mail; one with neither fails at once.
//
// crm keys are sent as form fields of the same name (bedroom_count, price,
// status_id, source, ...), except an all-digit key, which names an additional
// field and is sent as extended_fields[<id>]. The create call is not
// idempotent and U-ON has no external id, so a retry after an unreadable
// success may duplicate the lead.
package uon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(UON{})
}

// DefaultBaseURL is U-ON's API host.
const DefaultBaseURL = "https://api.u-on.ru"

// RateLimitWait is how long a 429 without Retry-After is waited out: the
// interval U-ON's PHP client uses.
const RateLimitWait = 10 * time.Second

// moscow is the default zone of r_dat: U-ON reads local time, and Russia has
// kept +03:00 without DST since 2014.
var moscow = time.FixedZone("MSK", 3*60*60)

// UON creates U-ON.Travel leads.
type UON struct {
	crm.Common
	// Key is the U-ON API key (Настройки → API). It goes into the URL path;
	// use a placeholder: {env.UON_KEY}.
	Key string `json:"key,omitempty"`
	// Source is sent as the lead's source ("Сайт"). Default: none, and U-ON
	// applies its own.
	Source string `json:"source,omitempty"`
	// Timezone gives r_dat, the capture time U-ON shows, so a lead
	// delivered late still carries the moment it was made. An IANA name;
	// default Europe/Moscow.
	Timezone string `json:"timezone,omitempty"`

	key      string
	endpoint string
	loc      *time.Location
}

// CaddyModule returns the Caddy module information.
func (UON) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".uon",
		New: func() caddy.Module { return new(UON) },
	}
}

// Provision resolves placeholders and checks the required options.
func (u *UON) Provision(caddy.Context) error {
	if err := u.Spec().Resolve(); err != nil {
		return err
	}
	if err := u.Common.Provision(DefaultBaseURL); err != nil {
		return fmt.Errorf("uon: %w", err)
	}
	u.key = strings.TrimSpace(u.key)
	u.endpoint = u.BaseURL + "/" + url.PathEscape(u.key) + "/lead/create.json"
	u.loc = moscow
	if u.Timezone != "" {
		loc, err := time.LoadLocation(u.Timezone)
		if err != nil {
			return fmt.Errorf("uon: timezone: %w", err)
		}
		u.loc = loc
	}
	return nil
}

// Account is the U-ON account the API key belongs to (one API host serves
// every account).
func (u *UON) Account() string { return crm.AccountKey("uon", crm.HostOf(u.BaseURL), u.key) }

// DefaultRate: U-ON answers 429 past an undocumented limit; 3/s is a guess.
func (u *UON) DefaultRate() (int, time.Duration) { return u.RateOr(3, time.Second, 1) }

// Send creates the lead and returns its U-ON id.
func (u *UON) Send(ctx context.Context, l *lead.Lead) (string, error) {
	form := u.form(l)
	if form.Get("u_phone") == "" && form.Get("u_email") == "" {
		return "", lead.Permanent(0, "U-ON needs a phone or an e-mail; the lead has neither")
	}
	req, err := crm.NewRequest(ctx, http.MethodPost, u.endpoint, "application/x-www-form-urlencoded; charset=UTF-8",
		[]byte(form.Encode()), http.Header{"Accept": {crm.ContentJSON}})
	if err != nil {
		return "", crm.Redact(err, u.key) // the key is in the URL
	}
	resp, err := crm.Do(u.Client(), req)
	if err != nil {
		return "", crm.Redact(err, u.key)
	}
	id, err := readAnswer(resp)
	return id, crm.Redact(err, u.key)
}

// Preview is what Send would send for l (the dry run), answered with the
// documented {"result":200,"id":34144}.
func (u *UON) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, u, l, func(*http.Request, []byte) *crm.Response {
		return crm.JSONAnswer(`{"result":200,"id":34144}`)
	}, u.key)
}

// form maps the lead to lead/create's fields.
func (u *UON) form(l *lead.Lead) url.Values {
	form := url.Values{}
	set := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			form.Set(k, v)
		}
	}
	first, last := lead.SplitName(l.Name)
	set("u_name", first)
	set("u_surname", last)
	set("u_phone", lead.NormalizePhone(l.Phone, ""))
	set("u_email", l.Email)
	set("note", l.Summary())
	set("source", u.Source)
	if !l.CreatedAt.IsZero() {
		set("r_dat", l.CreatedAt.In(u.loc).Format(time.DateTime))
	}
	for k, v := range l.CRM {
		set(Param(k), v)
	}
	return form
}

// Param is the form field a crm key is sent as: an all-digit key is the id
// of an additional field.
func Param(key string) string {
	if key != "" && strings.Trim(key, "0123456789") == "" {
		return "extended_fields[" + key + "]"
	}
	return key
}

// readAnswer classifies U-ON's answer and returns the lead id.
func readAnswer(resp *crm.Response) (string, error) {
	var a map[string]json.RawMessage
	jsonErr := json.Unmarshal(resp.Body, &a)
	if resp.Status < 200 || resp.Status >= 300 {
		return "", rateWait(crm.Classify(resp, message(a)))
	}
	if jsonErr != nil {
		return "", crm.Unparsable(resp, jsonErr)
	}
	id := crm.JSONText(a["id"])
	result, err := strconv.Atoi(crm.JSONText(a["result"]))
	switch {
	case err != nil && id == "":
		return "", crm.Unparsable(resp, errors.New("no result and no id"))
	case err != nil, result == 200, result >= 200 && result < 300 && id != "":
		return id, nil
	}
	// An error carried in an HTTP 200: classify by U-ON's own code, but
	// report the real HTTP status.
	msg := "result " + strconv.Itoa(result)
	if m := message(a); m != "" {
		msg += ": " + m
	}
	var se *lead.SendError
	if !errors.As(crm.Classify(&crm.Response{Status: result, Header: resp.Header, Body: resp.Body}, msg), &se) {
		return "", lead.Permanent(resp.Status, msg) // a 2xx result with no id
	}
	se.Status = resp.Status
	return "", rateWait(se)
}

// rateWait gives a 429 without Retry-After the wait U-ON's client uses.
func rateWait(err error) error {
	var se *lead.SendError
	if errors.As(err, &se) && !se.Permanent && se.RetryAfter == 0 &&
		(se.Status == http.StatusTooManyRequests || strings.HasPrefix(se.Msg, "result 429")) {
		se.RetryAfter = RateLimitWait
	}
	return err
}

// message finds U-ON's error text in the members integrations have seen.
func message(a map[string]json.RawMessage) string {
	for _, k := range []string{"message", "error", "comment", "description", "errors"} {
		if m := crm.JSONText(a[k]); m != "" {
			return m
		}
	}
	return ""
}

// Interface guards
var (
	_ caddy.Provisioner     = (*UON)(nil)
	_ caddyfile.Unmarshaler = (*UON)(nil)
	_ lead.Sender           = (*UON)(nil)
	_ lead.Rated            = (*UON)(nil)
)
