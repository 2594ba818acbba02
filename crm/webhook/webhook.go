// Package webhook is the destination that POSTs the lead as JSON to any URL,
// signed per Standard Webhooks (webhook-id, webhook-timestamp,
// webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>").
//
// The body is the lead record (lead.Lead, as the admin API lists it), wrapped in the Standard
// Webhooks envelope {"type":"lead.created","timestamp":...,"data":<lead>}.
// webhook-id is "msg_<lead id>": stable across retries, so a receiver can
// drop a repeat. 2xx is delivered; 4xx other than 408/429 is permanent;
// 3xx (not followed), 408, 429, 5xx and network errors are retried. A
// receiver may answer {"id":"..."} to have that id recorded as crm_id.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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
	caddy.RegisterModule(Webhook{})
}

// Webhook posts leads to a URL.
type Webhook struct {
	crm.Common
	// URL receives the POST. Placeholders are resolved ({env.LEADPROXY_WEBHOOK_URL}).
	URL string `json:"url,omitempty"`
	// Secret signs each request: "whsec_" followed by base64 key bytes, as
	// Standard Webhooks shows it. Use a placeholder; never commit it.
	Secret string `json:"secret,omitempty"`
	// Headers are added to every request (for receivers that want a token).
	Headers map[string]string `json:"headers,omitempty"`

	url    string
	secret string // Secret resolved
	key    []byte
	now    func() time.Time
}

// CaddyModule returns the Caddy module information.
func (Webhook) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".webhook",
		New: func() caddy.Module { return new(Webhook) },
	}
}

// Provision resolves placeholders and decodes the secret.
func (w *Webhook) Provision(caddy.Context) error {
	if err := w.Spec().Resolve(); err != nil {
		return err
	}
	if err := w.Common.Provision(""); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if w.url == "" {
		w.url = w.BaseURL
	}
	if !strings.HasPrefix(w.url, "http://") && !strings.HasPrefix(w.url, "https://") {
		return fmt.Errorf("webhook: url %q: want an http(s) URL", w.URL)
	}
	key, err := DecodeSecret(w.secret)
	if err != nil {
		return fmt.Errorf("webhook: secret: %w", err)
	}
	w.key = key
	if w.now == nil {
		w.now = time.Now
	}
	return nil
}

// Account is the receiving host: whatever limit the receiver has, it counts
// per server, not per URL path.
func (w *Webhook) Account() string { return crm.AccountKey("webhook", crm.HostOf(w.url)) }

// DefaultRate: a webhook has no documented limit; 20/s keeps a receiver
// from being flooded when a backlog drains.
func (w *Webhook) DefaultRate() (int, time.Duration) { return w.RateOr(20, time.Second, 1) }

// Envelope is the Standard Webhooks payload.
type Envelope struct {
	Type      string     `json:"type"`
	Timestamp time.Time  `json:"timestamp"`
	Data      *lead.Lead `json:"data"`
}

// Send posts the lead and returns the receiver's id, if it answered one.
func (w *Webhook) Send(ctx context.Context, l *lead.Lead) (string, error) {
	data := *l
	data.Deliveries = nil // delivery state is ours, not the receiver's
	data.Traceparent = ""
	body, err := crm.JSONBody(Envelope{Type: "lead.created", Timestamp: l.CreatedAt.UTC(), Data: &data})
	if err != nil {
		return "", err
	}
	req, err := crm.NewRequest(ctx, http.MethodPost, w.url, crm.ContentJSON, body, nil)
	if err != nil {
		return "", err
	}
	for k, v := range w.Headers {
		req.Header.Set(k, crm.Secret(v))
	}
	msgID := "msg_" + l.ID
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("webhook-id", msgID)
	req.Header.Set("webhook-timestamp", ts)
	if w.key != nil {
		req.Header.Set("webhook-signature", Sign(w.key, msgID, ts, body))
	}
	resp, err := crm.Do(w.Client(), req)
	if err != nil {
		return "", err
	}
	if resp.Status >= 300 && resp.Status < 400 {
		return "", lead.Retryable(resp.Status, "redirect to "+resp.Header.Get("Location")+" not followed", 0)
	}
	if err := crm.Classify(resp, ""); err != nil {
		return "", err
	}
	var ack struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(resp.Body, &ack) == nil && ack.ID != nil {
		return fmt.Sprint(ack.ID), nil
	}
	return "", nil
}

// Preview is what Send would post for l (the dry run), answered as a
// receiver that takes it answers: 200 with an empty body. The URL's path
// is masked with the secret and the headers' values.
func (w *Webhook) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	secrets := []string{w.secret}
	if u, err := url.Parse(w.url); err == nil && len(u.Path) > 1 {
		// A hook URL's path is often its credential (SECURITY.md, "Secrets").
		secrets = append(secrets, strings.TrimPrefix(u.EscapedPath(), "/"))
	}
	for _, v := range w.Headers {
		secrets = append(secrets, crm.Secret(v))
	}
	return crm.PreviewSend(ctx, w, l, func(*http.Request, []byte) *crm.Response {
		return &crm.Response{Status: http.StatusOK}
	}, secrets...)
}

// DecodeSecret turns "whsec_<base64>" into key bytes.
func DecodeSecret(s string) ([]byte, error) {
	raw, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New(`want "whsec_" followed by base64`)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("key is %d bytes; use at least 24", len(key))
	}
	return key, nil
}

// Sign computes the Standard Webhooks v1 signature header value.
func Sign(key []byte, msgID, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID + "." + timestamp + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a request the way a Standard Webhooks receiver does: a v1
// signature among the space-separated ones, and a timestamp within
// tolerance of now.
func Verify(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id == "" || ts == "" {
		return errors.New("missing webhook-id or webhook-timestamp")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad webhook-timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook-timestamp outside tolerance")
	}
	want := Sign(key, id, ts, body)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Webhook)(nil)
	_ caddyfile.Unmarshaler = (*Webhook)(nil)
	_ lead.Sender           = (*Webhook)(nil)
	_ lead.Rated            = (*Webhook)(nil)
)
