// Package roistat is the destination that forwards leads into Roistat's
// proxy-lead API (GET https://cloud.roistat.com/api/proxy/1.0/leads/add),
// which stores them in the Roistat project and passes them on to the CRM
// connected there, retrying while that CRM is down.
//
// The request is a GET with a query string, as every known integration sends
// it: key, roistat (the visit id; "nocookie" when there is none, as
// Roistat's samples do), title, name, phone, email, comment (the lead's
// summary: comment, extra fields, attribution), is_need_callback and
// callback_phone when the visitor asked for a call, and fields[<key>] for
// each crm key, named as the target CRM names them. The key rides in the URL,
// so it is scrubbed from every error this package returns. The comment is
// shortened, marked with "…", to keep the request line under common 8 KB
// limits.
//
// Roistat's answer is undocumented ([U]: every sample ignores it), so the
// adapter is lenient: any 2xx with an empty body or a JSON object whose
// status is "success" is a delivery, and the id is taken from data.id, id,
// lead_id, proxy_lead_id or order_id when one is there. A JSON status other
// than "success" is a permanent error with Roistat's error and description;
// a 2xx body that is not JSON (an HTML page from a proxy) is unreadable and
// retried. Non-2xx answers follow crm.Classify. No rate limit is documented;
// the default of 3/s is a guess. Roistat has no idempotency key; its own
// duplicate check is is_need_check_order_in_processing, which "param" sets.
package roistat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(Roistat{})
}

// DefaultBaseURL is Roistat's cloud.
const DefaultBaseURL = "https://cloud.roistat.com"

// Path is the proxy-lead method.
const Path = "/api/proxy/1.0/leads/add"

// MaxURL bounds the request URL; nginx and most proxies refuse a request
// line over 8 KB, and GET is the only method Roistat is known to take.
const MaxURL = 7000

// NoCookie is sent as the visit id when the lead has none.
const NoCookie = "nocookie"

// reserved are the parameters Send fills from the lead.
var reserved = map[string]bool{"key": true, "roistat": true, "title": true, "name": true, "phone": true,
	"email": true, "comment": true, "is_need_callback": true, "callback_phone": true}

// Roistat forwards leads to a Roistat project.
type Roistat struct {
	crm.Common
	// Key is the project's "key for CRM integration" (Настройки →
	// Интеграция с CRM), not the API key of Roistat's /api/v1. Use a
	// placeholder: {env.ROISTAT_KEY}.
	Key string `json:"key,omitempty"`
	// Params are extra parameters sent with every lead, for example
	// is_need_check_order_in_processing 1 (Roistat's duplicate check),
	// is_skip_sending 1, sync 1 or order_creation_method. Parameters taken
	// from the lead and fields[...] (set with a form's crm) are refused.
	Params map[string]string `json:"params,omitempty"`

	key string
}

// CaddyModule returns the Caddy module information.
func (Roistat) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".roistat",
		New: func() caddy.Module { return new(Roistat) },
	}
}

func checkParam(name string) error {
	switch {
	case reserved[name]:
		return fmt.Errorf("%q is filled from the lead", name)
	case strings.HasPrefix(name, "fields["):
		return fmt.Errorf("%q: set deal fields with a form's crm <key> <source>", name)
	case name == "":
		return errors.New("empty name")
	}
	return nil
}

// Provision resolves placeholders and checks the required options.
func (r *Roistat) Provision(caddy.Context) error {
	if err := r.Spec().Resolve(); err != nil {
		return err
	}
	if err := r.Common.Provision(DefaultBaseURL); err != nil {
		return fmt.Errorf("roistat: %w", err)
	}
	r.key = strings.TrimSpace(r.key)
	for name := range r.Params {
		if err := checkParam(name); err != nil {
			return fmt.Errorf("roistat: param %v", err)
		}
	}
	return nil
}

// Account is the Roistat project the key belongs to (one API host serves
// every project).
func (r *Roistat) Account() string { return crm.AccountKey("roistat", crm.HostOf(r.BaseURL), r.key) }

// DefaultRate: Roistat documents no limit for proxy leads; 3/s is a guess.
func (r *Roistat) DefaultRate() (int, time.Duration) { return r.RateOr(3, time.Second, 1) }

// Send forwards the lead and returns the id Roistat answered, if any.
func (r *Roistat) Send(ctx context.Context, l *lead.Lead) (string, error) {
	req, err := crm.NewRequest(ctx, http.MethodGet, r.URL(l), "", nil, http.Header{"Accept": {crm.ContentJSON}})
	if err != nil {
		return "", crm.Redact(err, r.key) // the key is in the URL
	}
	resp, err := crm.Do(r.Client(), req)
	if err != nil {
		return "", crm.Redact(err, r.key)
	}
	id, err := readAnswer(resp)
	return id, crm.Redact(err, r.key)
}

// Preview is what Send would send for l (the dry run), answered with a
// documented success ({"status":"success","data":{"id":...}}).
func (r *Roistat) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, r, l, func(*http.Request, []byte) *crm.Response {
		return crm.JSONAnswer(`{"status":"success","data":{"id":"1"}}`)
	}, r.key)
}

// URL is the request for l, key included: never log it.
func (r *Roistat) URL(l *lead.Lead) string {
	q := url.Values{}
	for k, v := range r.Params {
		q.Set(k, v)
	}
	set := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			q.Set(k, v)
		}
	}
	q.Set("key", r.key)
	q.Set("roistat", NoCookie)
	if l.Visit != nil {
		set("roistat", l.Visit.ID)
	}
	set("title", l.Title)
	if q.Get("title") == "" {
		set("title", l.Form)
	}
	set("name", l.Name)
	set("phone", lead.NormalizePhone(l.Phone, ""))
	set("email", l.Email)
	if l.Callback != nil {
		q.Set("is_need_callback", "1")
		set("callback_phone", lead.NormalizePhone(l.Callback.Phone, ""))
		if q.Get("callback_phone") == "" {
			set("callback_phone", q.Get("phone"))
		}
	}
	for k, v := range l.CRM {
		q.Set("fields["+k+"]", v)
	}
	u := r.BaseURL + Path + "?" + q.Encode()
	if c := fit(l.Summary(), MaxURL-len(u)-len("&comment=")); c != "" {
		u += "&comment=" + url.QueryEscape(c)
	}
	return u
}

// fit shortens s so that its query encoding takes at most budget bytes.
func fit(s string, budget int) string {
	s = strings.TrimSpace(s)
	if len(url.QueryEscape(s)) <= budget {
		return s
	}
	const more = "…"
	budget -= len(url.QueryEscape(more))
	var b strings.Builder
	for _, r := range s {
		n := len(url.QueryEscape(string(r)))
		if n > budget {
			break
		}
		budget -= n
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return ""
	}
	return strings.TrimSpace(b.String()) + more
}

// readAnswer classifies Roistat's answer and returns the id it carries.
func readAnswer(resp *crm.Response) (string, error) {
	var a map[string]json.RawMessage
	jsonErr := json.Unmarshal(resp.Body, &a)
	if resp.Status < 200 || resp.Status >= 300 {
		return "", crm.Classify(resp, message(a))
	}
	if len(bytes.TrimSpace(resp.Body)) == 0 {
		return "", nil // the samples never read the answer; an empty 2xx is taken as accepted
	}
	if jsonErr != nil {
		return "", crm.Unparsable(resp, jsonErr)
	}
	status := crm.JSONText(a["status"])
	failed := status != "" && !strings.EqualFold(status, "success")
	if failed || (status == "" && crm.JSONText(a["error"]) != "") {
		msg := message(a)
		if msg == "" {
			msg = "status " + status
		}
		return "", lead.Permanent(resp.Status, msg)
	}
	id := answerID(a)
	if status == "" && id == "" {
		return "", crm.Unparsable(resp, errors.New("no status and no id"))
	}
	return id, nil
}

// answerID looks for the lead id where Roistat's other methods put ids.
func answerID(a map[string]json.RawMessage) string {
	var data map[string]json.RawMessage
	if json.Unmarshal(a["data"], &data) == nil {
		if id := crm.JSONText(data["id"]); id != "" {
			return id
		}
	}
	for _, k := range []string{"id", "lead_id", "proxy_lead_id", "order_id"} {
		if id := crm.JSONText(a[k]); id != "" {
			return id
		}
	}
	return ""
}

// message is Roistat's error code and description, as its /api/v1 answers
// them ({"status":"error","error":"...","description":"..."}).
func message(a map[string]json.RawMessage) string {
	var parts []string
	for _, k := range []string{"error", "description", "message"} {
		if m := crm.JSONText(a[k]); m != "" {
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, ": ")
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Roistat)(nil)
	_ caddyfile.Unmarshaler = (*Roistat)(nil)
	_ lead.Sender           = (*Roistat)(nil)
	_ lead.Rated            = (*Roistat)(nil)
)
