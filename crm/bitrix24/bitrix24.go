// Package bitrix24 is the destination for Bitrix24, cloud or self-hosted
// ("box"), through an inbound webhook (https://<portal>/rest/<user>/<code>/).
// `entity lead` creates a lead (crm.lead.add); `entity deal` creates a
// contact (crm.contact.add) and a deal linked to it (crm.deal.add).
//
// Mapping: TITLE is the lead's title; NAME/LAST_NAME, PHONE and EMAIL
// (VALUE_TYPE WORK, E.164 phone) go on the lead or the contact; COMMENTS
// holds the summary (comment, extra fields, attribution); UTM_* come from
// the visit; SOURCE_ID defaults to WEB and SOURCE_DESCRIPTION to the form;
// ORIGINATOR_ID "leadproxy" with ORIGIN_ID = lead id mark the record as
// ours. The form's `crm` keys are Bitrix24 field names (UF_CRM_*,
// OPPORTUNITY, ASSIGNED_BY_ID, SOURCE_ID, SOURCE_DESCRIPTION, ...), upper-cased
// and set on the lead or deal as given; ASSIGNED_BY_CONTACT_MANAGER=Y looks
// the visitor up among contacts (crm.duplicate.findbycomm by phone, then
// email) and, when found, links the lead or deal to that contact and
// assigns it to the contact's manager (crm.contact.get). A key that is not
// a field name goes into COMMENTS.
//
// Failures: the answer {"error","error_description"} is read whatever the
// HTTP status (the error code may be empty); QUERY_LIMIT_EXCEEDED,
// OPERATION_TIME_LIMIT, OVERLOAD_LIMIT and internal errors are retried,
// PORTAL_DELETED, auth and scope errors and a 2xx carrying an error are
// permanent. Bitrix24 has no idempotency key: a deal whose contact was
// created but whose deal call failed reuses that contact on the retry.
//
// Unconfirmed details, handled defensively: crm.contact.get and the
// ORIGINATOR_ID/ORIGIN_ID fields on contacts and deals are known from
// integrations, not the reference [L]; findbycomm may answer an empty
// list instead of an object when nothing matches; plain http:// webhook
// URLs are allowed for boxes [U]. Error messages never carry the webhook
// URL, whose path is the secret.
package bitrix24

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(Bitrix24{})
}

// Entities a destination creates.
const (
	EntityLead = "lead"
	EntityDeal = "deal"
)

// RequestsPerSecond is the cloud's leaky-bucket drain rate (non-Enterprise
// plans): above a burst of 50, each further request waits for it.
const RequestsPerSecond = 2

// managerKey is Roistat's pseudo-field: not a Bitrix24 field, an instruction.
const managerKey = "ASSIGNED_BY_CONTACT_MANAGER"

// Bitrix24 creates leads, or contacts and deals, through an inbound webhook.
type Bitrix24 struct {
	crm.Common
	// WebhookURL is the inbound webhook, https://<portal>/rest/<user>/<code>/,
	// created with the "crm" scope. Required; its path is a secret, so use a
	// placeholder ({env.BITRIX24_WEBHOOK}). With base_url set, only its
	// path is used (the address comes from base_url).
	WebhookURL string `json:"webhook_url,omitempty"`
	// Entity is "lead" (crm.lead.add) or "deal" (crm.contact.add, then
	// crm.deal.add). Required: portals with leads turned off take deals only.
	Entity string `json:"entity,omitempty"`
	// Fields are set on every lead or deal (for example CATEGORY_ID,
	// STAGE_ID, ASSIGNED_BY_ID); a form's `crm` keys override them.
	Fields map[string]string `json:"fields,omitempty"`

	webhook  string // WebhookURL resolved
	endpoint string // ends with "/"
	logger   *zap.Logger
	pending  *pendingContacts
}

// pendingContacts maps a lead id to the contact an attempt created before
// its deal call failed, so the retry links the deal to it.
type pendingContacts struct {
	mu sync.Mutex
	m  map[string]string
}

// CaddyModule returns the Caddy module information.
func (Bitrix24) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".bitrix24",
		New: func() caddy.Module { return new(Bitrix24) },
	}
}

var (
	webhookPath = regexp.MustCompile(`^(.*/rest/[0-9]+/)([^/]+)/?$`)
	fieldName   = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
)

// Provision resolves the webhook URL and checks the options.
func (b *Bitrix24) Provision(ctx caddy.Context) error {
	b.logger = ctx.Logger()
	if err := b.Spec().Resolve(); err != nil {
		return err
	}
	if err := b.Common.Provision(""); err != nil {
		return fmt.Errorf("bitrix24: %w", err)
	}
	raw := strings.TrimSpace(b.webhook)
	u, err := url.Parse(raw)
	var m []string
	if err == nil {
		m = webhookPath.FindStringSubmatch(u.Path)
	}
	if m == nil {
		return fmt.Errorf("bitrix24: webhook_url %q: want https://<portal>/rest/<user>/<code>/", redact(raw))
	}
	switch {
	case b.BaseURL != "":
		b.endpoint = b.BaseURL + m[0]
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		b.endpoint = u.Scheme + "://" + u.Host + m[0]
	default:
		return fmt.Errorf("bitrix24: webhook_url %q: want an absolute https:// URL (or set base_url)", redact(raw))
	}
	if !strings.HasSuffix(b.endpoint, "/") {
		b.endpoint += "/"
	}
	entity, err := checkEntity(b.Entity)
	if err != nil {
		return fmt.Errorf("bitrix24: entity %w", err)
	}
	b.Entity = entity
	for k := range b.Fields {
		if _, err := checkField(k); err != nil {
			return fmt.Errorf("bitrix24: field %q: not a Bitrix24 field name (like UF_CRM_1425989455 or CATEGORY_ID)", k)
		}
	}
	b.pending = &pendingContacts{m: map[string]string{}}
	return nil
}

// redact hides the webhook code, the secret part of the URL; a URL of
// another shape keeps only its address, as any segment may be the code.
func redact(raw string) string {
	if m := webhookPath.FindStringSubmatchIndex(raw); m != nil {
		return raw[:m[4]] + "***" + raw[m[5]:]
	}
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host + "/…"
	}
	return "…"
}

// Account is the Bitrix24 portal (the webhook's host): the leaky bucket
// counts per portal.
func (b *Bitrix24) Account() string { return crm.AccountKey("bitrix24", crm.HostOf(b.endpoint)) }

// DefaultRate is the cloud's 2 requests per second (or the configured
// rate, which also counts requests), spread over the requests one lead
// takes: one for a lead, two for a contact and deal.
func (b *Bitrix24) DefaultRate() (int, time.Duration) {
	perLead := 1
	if b.Entity == EntityDeal {
		perLead = 2
	}
	return b.RateOr(RequestsPerSecond, time.Second, perLead)
}

// Send creates the lead, or the contact and the deal, and returns the
// lead's or deal's id.
func (b *Bitrix24) Send(ctx context.Context, l *lead.Lead) (string, error) {
	fields, byManager := b.fields(l)
	var found, manager string
	if byManager {
		var err error
		if found, manager, err = b.findContact(ctx, l); err != nil {
			return "", fmt.Errorf("bitrix24: find contact: %w", err)
		}
		if manager != "" {
			fields["ASSIGNED_BY_ID"] = manager
		}
	}
	person := personFields(l)
	if b.Entity == EntityLead {
		for k, v := range person {
			fields[k] = v
		}
		if found != "" {
			fields["CONTACT_ID"] = json.Number(found)
		}
		return b.add(ctx, "crm.lead.add", fields)
	}

	contactID := found
	if contactID == "" {
		contactID = b.pending.get(l.ID)
	}
	if contactID == "" && len(person) > 0 {
		for _, k := range []string{"SOURCE_ID", "ASSIGNED_BY_ID", "ORIGINATOR_ID", "ORIGIN_ID", "UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM"} {
			if v, ok := fields[k]; ok {
				person[k] = v
			}
		}
		id, err := b.add(ctx, "crm.contact.add", person)
		if err != nil {
			return "", err
		}
		contactID = id
		if !crm.Recording(ctx) { // a preview created nothing
			b.pending.set(l.ID, id)
		}
	}
	if contactID != "" {
		fields["CONTACT_IDS"] = []json.Number{json.Number(contactID)}
	}
	id, err := b.add(ctx, "crm.deal.add", fields)
	if err == nil || lead.IsPermanent(err) {
		b.pending.set(l.ID, "")
	}
	return id, err
}

// fields are the lead's or deal's own fields, and whether the form asked
// for the found contact's manager.
func (b *Bitrix24) fields(l *lead.Lead) (map[string]any, bool) {
	f := map[string]any{
		"TITLE":         crm.FirstNonEmpty(l.Title, l.Form, "Заявка с сайта"),
		"SOURCE_ID":     "WEB",
		"ORIGINATOR_ID": "leadproxy",
		"ORIGIN_ID":     l.ID,
	}
	if l.Form != "" {
		f["SOURCE_DESCRIPTION"] = l.Form
	}
	if v := l.Visit; v != nil {
		for _, k := range []string{"source", "medium", "campaign", "content", "term"} {
			if s := v.UTM[k]; s != "" {
				f["UTM_"+strings.ToUpper(k)] = s
			}
		}
	}
	for k, v := range b.Fields {
		f[strings.ToUpper(k)] = crm.Secret(v)
	}
	byManager := false
	var unplaced []string
	for _, k := range lead.SortedKeys(l.CRM) {
		key, v := strings.ToUpper(strings.TrimSpace(k)), strings.TrimSpace(l.CRM[k])
		switch {
		case key == managerKey:
			byManager = strings.EqualFold(v, "Y")
		case v == "":
		case fieldName.MatchString(key):
			f[key] = v
		default:
			unplaced = append(unplaced, k+": "+v)
		}
	}
	if _, set := f["COMMENTS"]; !set {
		c := strings.TrimLeft(l.Summary()+"\n"+strings.Join(unplaced, "\n"), "\n")
		if c = strings.TrimRight(c, "\n"); c != "" {
			f["COMMENTS"] = c
		}
	}
	return f, byManager
}

// multi is a Bitrix24 multi-field value (PHONE, EMAIL).
type multi struct {
	Value     string `json:"VALUE"`
	ValueType string `json:"VALUE_TYPE"`
}

// personFields are the name, phone and email, empty when there are none.
func personFields(l *lead.Lead) map[string]any {
	f := map[string]any{}
	first, last := lead.SplitName(l.Name)
	if first != "" {
		f["NAME"] = first
	}
	if last != "" {
		f["LAST_NAME"] = last
	}
	if p := lead.NormalizePhone(l.Phone, ""); p != "" {
		f["PHONE"] = []multi{{p, "WORK"}}
	}
	if e := strings.TrimSpace(l.Email); e != "" {
		f["EMAIL"] = []multi{{e, "WORK"}}
	}
	return f
}

// Preview is what Send would send for l (the dry run): the lookups find
// no contact, and each add answers the documented example id (3465).
func (b *Bitrix24) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	code := ""
	if m := webhookPath.FindStringSubmatch(strings.TrimSuffix(b.endpoint, "/")); m != nil {
		code = m[2]
	}
	return crm.PreviewSend(ctx, b, l, func(req *http.Request, _ []byte) *crm.Response {
		if strings.HasSuffix(req.URL.Path, "/crm.duplicate.findbycomm.json") {
			return crm.JSONAnswer(`{"result":[],"time":{"start":1705764932.99,"finish":1705764933.01}}`)
		}
		return crm.JSONAnswer(`{"result":3465,"time":{"start":1705764932.99,"finish":1705764937.17}}`)
	}, code)
}

// findContact looks the visitor up by phone, then email, and returns the
// first contact found and its manager. A permanent failure (a webhook
// without the scope, a box without the method) only skips the lookup.
func (b *Bitrix24) findContact(ctx context.Context, l *lead.Lead) (id, manager string, err error) {
	comms := []struct{ typ, val string }{
		{"PHONE", lead.NormalizePhone(l.Phone, "")},
		{"EMAIL", strings.TrimSpace(l.Email)},
	}
	for _, c := range comms {
		if c.val == "" {
			continue
		}
		var res json.RawMessage
		err := b.call(ctx, "crm.duplicate.findbycomm", map[string]any{"entity_type": "CONTACT", "type": c.typ, "values": []string{c.val}}, &res)
		if err == nil {
			// Nothing found comes back as [] (an empty PHP array), not {}.
			var found struct {
				Contact []json.Number `json:"CONTACT"`
			}
			if json.Unmarshal(res, &found) == nil && len(found.Contact) > 0 {
				id = found.Contact[0].String()
				break
			}
			continue
		}
		if !lead.IsPermanent(err) {
			return "", "", err
		}
		b.log().Warn("bitrix24: contact lookup skipped", zap.String("lead", l.ID), zap.Error(err))
		return "", "", nil
	}
	if id == "" {
		return "", "", nil
	}
	var contact struct {
		AssignedByID any `json:"ASSIGNED_BY_ID"` // "13128" or 13128
	}
	if err := b.call(ctx, "crm.contact.get", map[string]any{"id": json.Number(id)}, &contact); err != nil {
		if !lead.IsPermanent(err) {
			return "", "", err
		}
		b.log().Warn("bitrix24: manager of the found contact unknown", zap.String("lead", l.ID), zap.Error(err))
	}
	switch v := contact.AssignedByID.(type) {
	case string:
		manager = v
	case json.Number:
		manager = v.String()
	}
	return id, manager, nil
}

// add calls a crm.*.add method and returns the created id.
func (b *Bitrix24) add(ctx context.Context, method string, fields map[string]any) (string, error) {
	var id json.Number
	params := map[string]any{"fields": fields, "params": map[string]string{"REGISTER_SONET_EVENT": "Y"}}
	if err := b.call(ctx, method, params, &id); err != nil {
		return "", fmt.Errorf("bitrix24: %w", err)
	}
	if _, ok := crm.ParseID(id.String()); !ok {
		return "", fmt.Errorf("bitrix24: %s: result %q is not an id", method, id)
	}
	return id.String(), nil
}

// answer is every Bitrix24 REST answer: a result or an error.
type answer struct {
	Result           json.RawMessage `json:"result"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
	Time             struct {
		OperatingResetAt float64 `json:"operating_reset_at"`
	} `json:"time"`
}

// Error codes whose meaning overrides the HTTP status.
var (
	retryCodes = map[string]bool{
		"QUERY_LIMIT_EXCEEDED": true, "OPERATION_TIME_LIMIT": true, "OVERLOAD_LIMIT": true,
		"INTERNAL_SERVER_ERROR": true, "ERROR_UNEXPECTED_ANSWER": true,
	}
	finalCodes = map[string]bool{"PORTAL_DELETED": true}
)

// call posts params as JSON to method and decodes result into out.
func (b *Bitrix24) call(ctx context.Context, method string, params, out any) error {
	resp, err := crm.DoJSON(ctx, b.Client(), http.MethodPost, b.endpoint+method+".json", params, http.Header{"Accept": {crm.ContentJSON}})
	if err != nil {
		var se *lead.SendError
		if errors.As(err, &se) {
			se.Msg = method + ": " + se.Msg
		}
		return err
	}
	var a answer
	parseErr := json.Unmarshal(resp.Body, &a)
	if parseErr == nil && (a.Error != "" || a.ErrorDescription != "") {
		return classify(method, resp, a)
	}
	if resp.Status < 200 || resp.Status > 299 {
		return crm.Classify(resp, method+": "+crm.Excerpt(resp.Body))
	}
	if parseErr == nil && len(a.Result) > 0 && string(a.Result) != "null" {
		dec := json.NewDecoder(bytes.NewReader(a.Result))
		dec.UseNumber()
		if parseErr = dec.Decode(out); parseErr == nil {
			return nil
		}
	}
	return crm.Unparsable(resp, fmt.Errorf("%s: no result: %v", method, parseErr))
}

// classify turns an error answer into a retryable or permanent error.
func classify(method string, r *crm.Response, a answer) error {
	msg := a.ErrorDescription
	if a.Error != "" {
		msg = strings.TrimSuffix(a.Error+": "+msg, ": ")
	}
	msg = method + ": " + msg
	switch {
	case finalCodes[a.Error]:
		return lead.Permanent(r.Status, msg)
	case retryCodes[a.Error]:
		wait := crm.RetryAfter(r.Header, time.Now())
		if reset := time.Unix(int64(a.Time.OperatingResetAt), 0); wait == 0 && a.Time.OperatingResetAt > 0 && reset.After(time.Now()) {
			wait = time.Until(reset)
		}
		return lead.Retryable(r.Status, msg, wait)
	case r.Status >= 200 && r.Status < 300:
		return lead.Permanent(r.Status, msg) // an error with 200: the call did not happen
	}
	return crm.Classify(r, msg)
}

func (p *pendingContacts) get(leadID string) string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[leadID]
}

// set remembers (or, with "", forgets) the contact made for a lead whose
// deal is not created yet. Bounded: at worst a dropped entry costs one
// duplicate contact.
func (p *pendingContacts) set(leadID, contactID string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if contactID == "" {
		delete(p.m, leadID)
		return
	}
	if len(p.m) >= 10000 {
		p.m = map[string]string{}
	}
	p.m[leadID] = contactID
}

func (b *Bitrix24) log() *zap.Logger {
	if b.logger == nil {
		return zap.NewNop()
	}
	return b.logger
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Bitrix24)(nil)
	_ caddyfile.Unmarshaler = (*Bitrix24)(nil)
	_ lead.Sender           = (*Bitrix24)(nil)
	_ lead.Rated            = (*Bitrix24)(nil)
)
