// Package crm holds what every CRM destination shares: the options each type
// takes (base_url, rate, timeout), one HTTP client setup, and one place where
// an HTTP answer is classified as delivered, retryable or permanent.
//
// Each destination type lives in its own sub-package (crm/amocrm, crm/webhook,
// ...) as a Caddy guest module with the ID leadproxy.destinations.<type>, and
// implements lead.Sender. A third party adds a CRM the same way, as a plugin.
package crm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/lead"
)

// Namespace is the Caddy module namespace of destination types.
const Namespace = "leadproxy.destinations"

// DefaultTimeout bounds one delivery attempt when the config sets none:
// long enough for a slow CRM, short enough that a hung one is retried.
const DefaultTimeout = 30 * time.Second

// MaxResponseBody caps how much of a CRM's answer is read.
const MaxResponseBody = 1 << 20

// Common holds the options every destination type takes. Embed it in the
// type's config struct; its options join the type's in its Spec, and the
// module's Provision calls Provision.
type Common struct {
	// BaseURL overrides the CRM's API address: self-hosted ("box")
	// installs and tests. Each type documents its default.
	BaseURL string `json:"base_url,omitempty"`
	// Rate limits outgoing requests, as "<n>/<duration>" ("7/1s").
	// Default: the CRM's documented limit.
	Rate string `json:"rate,omitempty"`
	// Timeout bounds one delivery attempt. Default 30s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	client *http.Client
}

// Provision resolves placeholders in base_url (falling back to
// defaultBase) and sets up the HTTP client.
func (c *Common) Provision(defaultBase string) error {
	base, err := ResolveValue(c.BaseURL)
	if err != nil {
		return fmt.Errorf("base_url: %w", err)
	}
	c.BaseURL = strings.TrimRight(base, "/")
	if c.BaseURL == "" {
		c.BaseURL = strings.TrimRight(defaultBase, "/")
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("base_url %q: want an absolute http(s) URL", c.BaseURL)
		}
	}
	if c.Rate != "" {
		if _, _, err := ParseRate(c.Rate); err != nil {
			return err
		}
	}
	timeout := time.Duration(c.Timeout)
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c.client = NewClient(timeout)
	return nil
}

// Client returns the destination's HTTP client (after Provision).
func (c *Common) Client() *http.Client {
	if c.client == nil {
		c.client = NewClient(DefaultTimeout)
	}
	return c.client
}

// RateOr is a destination's DefaultRate: the configured rate, else n
// requests per per, spread over the requests one lead takes (a rate counts
// requests).
func (c *Common) RateOr(n int, per time.Duration, requestsPerLead int) (int, time.Duration) {
	if on, oper, ok := c.RateOverride(); ok {
		n, per = on, oper
	}
	if requestsPerLead > 1 {
		per *= time.Duration(requestsPerLead)
	}
	return n, per
}

// RateOverride returns the configured rate, if any.
func (c *Common) RateOverride() (n int, per time.Duration, ok bool) {
	if c.Rate == "" {
		return 0, 0, false
	}
	n, per, err := ParseRate(c.Rate)
	return n, per, err == nil
}

// NewClient is the one HTTP client setup for CRM requests: no redirects
// followed (a 3xx from a create call is a failure, not a success), bounded
// time, and the usual transport.
func NewClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ParseRate parses "<n>/<duration>", for example "7/1s" or "50/2s".
func ParseRate(s string) (int, time.Duration, error) {
	num, dur, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want <n>/<duration>, like 7/1s", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("rate %q: %q is not a positive count", s, num)
	}
	if dur != "" && (dur[0] < '0' || dur[0] > '9') {
		dur = "1" + dur // "10/s" reads as 10/1s
	}
	per, err := caddy.ParseDuration(dur)
	if err != nil || per <= 0 {
		return 0, 0, fmt.Errorf("rate %q: %q is not a positive duration", s, dur)
	}
	return n, per, nil
}

// SingleArg reads exactly one argument for the current option into dst.
func SingleArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: missing value", opt)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s: one value expected, got also %q", opt, d.Val())
	}
	return nil
}

// Secret resolves placeholders such as {env.AMOCRM_TOKEN} in a value read
// at send time (header and field values). Options are resolved by
// Spec.Resolve, which also names an unset variable.
func Secret(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	return caddy.NewReplacer().ReplaceAll(s, "")
}

// Response is a CRM's answer, read in full (up to MaxResponseBody).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends req and reads the answer. A transport failure (refused, reset,
// timeout) comes back as a retryable *lead.SendError; any HTTP answer comes
// back as a Response for the type to classify, usually through Classify.
//
// In a preview (Record) nothing is sent: the request is recorded and the
// CRM's documented answer returned.
func Do(client *http.Client, req *http.Request) (*Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "leadproxy/1")
	}
	if rec, ok := req.Context().Value(recordKey{}).(*recorder); ok {
		return rec.do(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &lead.SendError{Msg: "request failed", Err: networkCause(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	if err != nil {
		return nil, &lead.SendError{Status: resp.StatusCode, Msg: "reading answer", Err: networkCause(err)}
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// networkCause drops the URL from a *url.Error: webhook URLs and some CRM
// endpoints carry secrets in the path, and the error ends up on the lead.
func networkCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timeout: %w", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timeout: %w", err)
	}
	return err
}

// Classify turns a non-2xx answer into an error: 408, 425, 429 and 5xx are
// retryable (honouring Retry-After), every other status is permanent. msg is
// the CRM's own message, extracted by the caller; when empty a short,
// printable excerpt of the body is used. 2xx returns nil.
func Classify(r *Response, msg string) error {
	if r.Status >= 200 && r.Status < 300 {
		return nil
	}
	if msg == "" {
		msg = Excerpt(r.Body)
	}
	switch {
	case r.Status == http.StatusRequestTimeout, r.Status == http.StatusTooEarly,
		r.Status == http.StatusTooManyRequests, r.Status >= 500:
		return lead.Retryable(r.Status, msg, RetryAfter(r.Header, time.Now()))
	default:
		return lead.Permanent(r.Status, msg)
	}
}

// RetryAfter parses a Retry-After header (seconds or HTTP date); 0 if absent.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Excerpt returns a short one-line excerpt of a body for error messages:
// HTML tags dropped, whitespace folded, at most 200 runes.
func Excerpt(body []byte) string {
	var b strings.Builder
	inTag, space := false, false
	n := 0
	for _, r := range string(body) {
		switch {
		case r == '<':
			inTag = true
			continue
		case r == '>' && inTag:
			inTag = false
			space = true
			continue
		case inTag:
			continue
		case r == '\uFFFD' || (r < 0x20 && r != '\n' && r != '\t' && r != '\r'):
			continue
		case r == ' ' || r == '\n' || r == '\t' || r == '\r':
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
		if n++; n >= 200 {
			b.WriteString("…")
			break
		}
	}
	if b.Len() == 0 {
		return "empty answer"
	}
	return b.String()
}

// Unparsable reports a 2xx answer the type could not read (garbage, HTML
// from a proxy). It is retryable: the lead may or may not exist in the CRM,
// and the types send an idempotency key where the CRM has one.
func Unparsable(r *Response, err error) error {
	return &lead.SendError{Status: r.Status, Msg: "unreadable answer: " + Excerpt(r.Body), Err: err}
}

// TokenStore keeps OAuth tokens that a destination refreshes (Salesforce,
// Megaplan), so a restart does not lose a rotated refresh token. The app
// hands its durable store to every destination that implements TokenKeeper.
type TokenStore interface {
	LoadToken(key string) (string, error) // "" with nil error when absent
	SaveToken(key, value string) error
}

// TokenKeeper is implemented by destinations that want a TokenStore. The
// app calls SetTokenStore after Provision, before the first Send; until then
// (and in tests without a store) tokens live in memory.
type TokenKeeper interface {
	SetTokenStore(name string, ts TokenStore)
}
