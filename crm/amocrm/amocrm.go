// Package amocrm is the destination for amoCRM / Kommo, API v4: one
// POST /api/v4/leads/complex creates the lead with its embedded contact,
// then POST /api/v4/leads/{id}/notes adds the lead's summary (comment,
// extra fields, attribution) as a "common" note, since a lead has no
// comment field.
//
// Mapping: the lead title is the lead's name; first/last name, PHONE and
// EMAIL (enum_code WORK, E.164 phone) go to the contact; visit UTMs go to
// the tracking fields UTM_SOURCE/UTM_MEDIUM/UTM_CAMPAIGN/UTM_CONTENT/UTM_TERM;
// request_id is the lead id. The form's `crm` keys are mapped as Roistat's
// page lists them for amoCRM: price, status_id, pipeline_id,
// responsible_user_id, tags (comma list → _embedded.tags) and numeric keys
// (custom field id → custom_fields_values). A value amoCRM cannot take (a
// price that is not a number, a key it has no place for) is written into
// the note instead, so the lead is never held back by what a visitor typed.
//
// Failures: 401, 402 and validation errors are permanent, with amoCRM's
// problem+json title and detail on the lead. 429 is retried, honouring
// Retry-After or the body's retry_after; 403 means amoCRM blocked the
// account or IP after repeated 429s and is retried after a long pause
// (BlockedPause), not given up. A 2xx body that is not the documented
// array is retried as unreadable: amoCRM has no idempotency key, so such a
// retry may create a second lead, which amoCRM's duplicate control (if
// enabled for the integration) merges.
//
// Unconfirmed details, handled defensively: the notes endpoint is known
// from integrations, not the vendor's page [L], so a failed note is logged
// and does not fail a delivery whose lead exists (retrying would duplicate
// the lead); the UTM field codes are [L], so when amoCRM rejects only them
// the lead is sent once more without them (they are in the note anyway);
// the 429 body may be problem+json or gateway HTML [C/L].
package amocrm

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(AmoCRM{})
}

// Documented limits.
const (
	// RequestsPerSecond is amoCRM's limit: "not more than 7 requests per
	// second" (per IP on Kommo's page).
	RequestsPerSecond = 7
	// MaxCustomFields is the most custom-field values amoCRM takes per entity.
	MaxCustomFields = 40
	// BlockedPause is how long to wait after a 403: the block lasts until
	// amoCRM lifts it, so hammering it only prolongs it.
	BlockedPause = 10 * time.Minute
	// requestsPerLead: the lead and its note.
	requestsPerLead = 2
)

// AmoCRM creates leads in an amoCRM / Kommo account.
type AmoCRM struct {
	crm.Common
	// Token is a long-lived token of a private integration (Keys and scopes
	// → "Generate long-lived token"), sent as a Bearer token. Required; use
	// a placeholder such as {env.AMOCRM_TOKEN}. base_url is required too:
	// the account's own address, https://<subdomain>.amocrm.ru or
	// https://<subdomain>.kommo.com.
	Token string `json:"token,omitempty"`
	// PipelineID places new leads in this pipeline. Default: the main one.
	PipelineID int64 `json:"pipeline_id,omitempty"`
	// StatusID places new leads at this stage. Default: the pipeline's first.
	StatusID int64 `json:"status_id,omitempty"`
	// ResponsibleUserID assigns new leads. Default: the token's user.
	ResponsibleUserID int64 `json:"responsible_user_id,omitempty"`
	// Tags are added to every lead, before the form's own `crm tags`.
	Tags []string `json:"tags,omitempty"`

	token  string
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AmoCRM) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".amocrm",
		New: func() caddy.Module { return new(AmoCRM) },
	}
}

// Provision resolves placeholders and checks the required options.
func (a *AmoCRM) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := a.Spec().Resolve(); err != nil {
		return err
	}
	if err := a.Common.Provision(""); err != nil {
		return fmt.Errorf("amocrm: %w", err)
	}
	if u, _ := url.Parse(a.BaseURL); strings.HasPrefix(u.Hostname(), "www.") {
		return fmt.Errorf("amocrm: base_url %q: use the account's own address (https://<subdomain>.amocrm.ru), not www", a.BaseURL)
	}
	// A token pasted with its scheme still works.
	a.token = strings.TrimSpace(strings.TrimPrefix(a.token, "Bearer "))
	return nil
}

// Account is the amoCRM account (its subdomain, the base_url's host): the
// limit of 7 requests a second counts per account.
func (a *AmoCRM) Account() string { return crm.AccountKey("amocrm", crm.HostOf(a.BaseURL)) }

// DefaultRate is amoCRM's 7 requests per second (or the configured rate,
// which also counts requests), spread over the two requests a lead takes.
func (a *AmoCRM) DefaultRate() (int, time.Duration) {
	return a.RateOr(RequestsPerSecond, time.Second, requestsPerLead)
}

// Send creates the lead with its contact, then adds the note.
func (a *AmoCRM) Send(ctx context.Context, l *lead.Lead) (string, error) {
	cl, note := a.complexLead(l)
	resp, err := a.post(ctx, "/api/v4/leads/complex", []complexLead{cl})
	if err == nil && onlyUTMRejected(resp, cl) {
		cl.CustomFieldsValues = withoutUTM(cl.CustomFieldsValues)
		resp, err = a.post(ctx, "/api/v4/leads/complex", []complexLead{cl})
	}
	if err == nil {
		err = classify(resp)
	}
	if err != nil {
		return "", fmt.Errorf("amocrm: create lead: %w", err)
	}
	var created []struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(resp.Body, &created); err != nil || len(created) == 0 || created[0].ID <= 0 {
		return "", fmt.Errorf("amocrm: create lead: %w", crm.Unparsable(resp, err))
	}
	id := strconv.FormatInt(created[0].ID, 10)
	if note != "" {
		if err := a.addNote(ctx, id, note); err != nil {
			a.log().Warn("amocrm: lead created but its note was not added",
				zap.String("lead", l.ID), zap.String("crm_id", id), zap.Error(err))
		}
	}
	return id, nil
}

// Preview is what Send would send for l (the dry run): the complex add
// and the note, answered with amoCRM's documented examples (so the note's
// URL carries the example's lead id, 9774766).
func (a *AmoCRM) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, a, l, previewAnswer, a.token)
}

func previewAnswer(req *http.Request, _ []byte) *crm.Response {
	switch {
	case strings.HasSuffix(req.URL.Path, "/api/v4/leads/complex"):
		return crm.JSONAnswer(`[{"id":9774766,"contact_id":12117258,"company_id":12117260,"request_id":["1"],"merged":false}]`)
	case strings.HasSuffix(req.URL.Path, "/notes"):
		return crm.JSONAnswer(`{"_total_items":1,"_embedded":{"notes":[{"id":42709325,"entity_id":9774766,"request_id":"0"}]}}`)
	}
	return nil
}

func (a *AmoCRM) addNote(ctx context.Context, leadID, text string) error {
	resp, err := a.post(ctx, "/api/v4/leads/"+leadID+"/notes", []noteReq{{NoteType: "common", Params: noteParams{Text: text}}})
	if err != nil {
		return err
	}
	return classify(resp)
}

func (a *AmoCRM) log() *zap.Logger {
	if a.logger == nil {
		return zap.NewNop()
	}
	return a.logger
}

// post sends one JSON request to the account.
func (a *AmoCRM) post(ctx context.Context, path string, v any) (*crm.Response, error) {
	return crm.DoJSON(ctx, a.Client(), http.MethodPost, a.BaseURL+path, v, crm.Bearer(a.token))
}

// Request bodies, as the reference shows them.
type (
	complexLead struct {
		Name               string       `json:"name"`
		Price              *int64       `json:"price,omitempty"`
		PipelineID         int64        `json:"pipeline_id,omitempty"`
		StatusID           int64        `json:"status_id,omitempty"`
		ResponsibleUserID  int64        `json:"responsible_user_id,omitempty"`
		CustomFieldsValues []fieldValue `json:"custom_fields_values,omitempty"`
		Embedded           *embedded    `json:"_embedded,omitempty"`
		RequestID          string       `json:"request_id,omitempty"`
	}
	fieldValue struct {
		FieldID   int64   `json:"field_id,omitempty"`
		FieldCode string  `json:"field_code,omitempty"`
		Values    []value `json:"values"`
	}
	value struct {
		Value    string `json:"value"`
		EnumCode string `json:"enum_code,omitempty"`
	}
	embedded struct {
		Tags     []tag     `json:"tags,omitempty"`
		Contacts []contact `json:"contacts,omitempty"`
	}
	tag struct {
		Name string `json:"name"`
	}
	contact struct {
		FirstName          string       `json:"first_name,omitempty"`
		LastName           string       `json:"last_name,omitempty"`
		CustomFieldsValues []fieldValue `json:"custom_fields_values,omitempty"`
	}
	noteReq struct {
		NoteType string     `json:"note_type"`
		Params   noteParams `json:"params"`
	}
	noteParams struct {
		Text string `json:"text"`
	}
)

// utmCodes maps the visit's utm keys to amoCRM's tracking field codes.
var utmCodes = []struct{ key, code string }{
	{"source", "UTM_SOURCE"}, {"medium", "UTM_MEDIUM"}, {"campaign", "UTM_CAMPAIGN"},
	{"content", "UTM_CONTENT"}, {"term", "UTM_TERM"},
}

// complexLead builds the create request and the note text.
func (a *AmoCRM) complexLead(l *lead.Lead) (complexLead, string) {
	cl := complexLead{
		Name:              crm.FirstNonEmpty(l.Title, l.Form, "Заявка с сайта"),
		PipelineID:        a.PipelineID,
		StatusID:          a.StatusID,
		ResponsibleUserID: a.ResponsibleUserID,
		RequestID:         l.ID,
	}
	tags := append([]string(nil), a.Tags...)
	var unplaced []string // crm values amoCRM has no place for: they go to the note
	for _, k := range lead.SortedKeys(l.CRM) {
		v := strings.TrimSpace(l.CRM[k])
		if v == "" {
			continue
		}
		ok := true
		switch strings.ToLower(k) {
		case "price":
			var f float64
			if f, ok = crm.ParseAmount(v); ok {
				p := int64(math.Round(f)) // amoCRM's price is a whole number
				cl.Price = &p
			}
		case "status_id":
			ok = parseID(v, &cl.StatusID)
		case "pipeline_id":
			ok = parseID(v, &cl.PipelineID)
		case "responsible_user_id":
			ok = parseID(v, &cl.ResponsibleUserID)
		case "tags":
			tags = append(tags, v)
		default:
			var id int64
			if ok = parseID(k, &id) && len(cl.CustomFieldsValues) < MaxCustomFields; ok {
				cl.CustomFieldsValues = append(cl.CustomFieldsValues, fieldValue{FieldID: id, Values: []value{{Value: v}}})
			}
		}
		if !ok {
			unplaced = append(unplaced, k+": "+v)
		}
	}
	if l.Visit != nil {
		for _, u := range utmCodes {
			if v := l.Visit.UTM[u.key]; v != "" && len(cl.CustomFieldsValues) < MaxCustomFields {
				cl.CustomFieldsValues = append(cl.CustomFieldsValues, fieldValue{FieldCode: u.code, Values: []value{{Value: v}}})
			}
		}
	}
	emb := &embedded{Tags: tagList(tags)}
	if c, ok := contactOf(l); ok {
		emb.Contacts = []contact{c}
	}
	if len(emb.Tags) > 0 || len(emb.Contacts) > 0 {
		cl.Embedded = emb
	}
	note := l.Summary()
	if len(unplaced) > 0 {
		note = strings.TrimLeft(note+"\n"+strings.Join(unplaced, "\n"), "\n")
	}
	return cl, note
}

// contactOf is the lead's contact, if it has anything to put in one.
func contactOf(l *lead.Lead) (contact, bool) {
	var c contact
	c.FirstName, c.LastName = lead.SplitName(l.Name)
	if p := lead.NormalizePhone(l.Phone, ""); p != "" {
		c.CustomFieldsValues = append(c.CustomFieldsValues, fieldValue{FieldCode: "PHONE", Values: []value{{Value: p, EnumCode: "WORK"}}})
	}
	if e := strings.TrimSpace(l.Email); e != "" {
		c.CustomFieldsValues = append(c.CustomFieldsValues, fieldValue{FieldCode: "EMAIL", Values: []value{{Value: e, EnumCode: "WORK"}}})
	}
	return c, c.FirstName != "" || len(c.CustomFieldsValues) > 0
}

// tagList is the tags of a comma list, trimmed, without empty and repeated names.
func tagList(names []string) []tag {
	var out []tag
	for _, n := range crm.SplitList(names...) {
		out = append(out, tag{Name: n})
	}
	return out
}

// parseID reads a positive integer id into dst.
func parseID(s string, dst *int64) bool {
	n, ok := crm.ParseID(s)
	if ok {
		*dst = n
	}
	return ok
}

// problem is amoCRM's error body (application/problem+json).
type problem struct {
	Title            string `json:"title"`
	Detail           string `json:"detail"`
	RetryAfter       int    `json:"retry_after"`
	ValidationErrors []struct {
		RequestID string `json:"request_id"`
		Errors    []struct {
			Code   string `json:"code"`
			Path   string `json:"path"`
			Detail string `json:"detail"`
		} `json:"errors"`
	} `json:"validation-errors"`
}

func parseProblem(body []byte) (problem, bool) {
	var p problem
	if json.Unmarshal(body, &p) != nil || (p.Title == "" && p.Detail == "" && len(p.ValidationErrors) == 0) {
		return problem{}, false
	}
	return p, true
}

// message renders the problem as one line: title, detail, each field error.
func (p problem) message() string {
	parts := []string{}
	for _, s := range []string{p.Title, p.Detail} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	msg := strings.Join(parts, ": ")
	for _, ve := range p.ValidationErrors {
		for _, e := range ve.Errors {
			msg += fmt.Sprintf("; %s: %s (%s)", e.Path, e.Detail, e.Code)
		}
	}
	return msg
}

// classify turns amoCRM's answer into nil (2xx) or a classified error.
func classify(r *crm.Response) error {
	if r.Status >= 200 && r.Status < 300 {
		return nil
	}
	p, _ := parseProblem(r.Body)
	msg := p.message()
	if msg == "" {
		msg = crm.Excerpt(r.Body)
	}
	switch {
	case r.Status == http.StatusForbidden:
		return lead.Retryable(r.Status, "account or IP blocked by amoCRM (after too many requests?): "+msg, BlockedPause)
	case r.Status == http.StatusTooManyRequests:
		wait := crm.RetryAfter(r.Header, time.Now())
		if wait == 0 && p.RetryAfter > 0 {
			wait = time.Duration(p.RetryAfter) * time.Second
		}
		return lead.Retryable(r.Status, msg, wait)
	case r.Status >= 300 && r.Status < 400:
		return lead.Permanent(r.Status, "redirect to "+r.Header.Get("Location")+" not followed: base_url must be the account's own address")
	}
	return crm.Classify(r, msg)
}

// onlyUTMRejected reports a 400 whose every field error points at one of
// cl's UTM tracking fields: an account without them.
func onlyUTMRejected(r *crm.Response, cl complexLead) bool {
	if r.Status != http.StatusBadRequest {
		return false
	}
	p, ok := parseProblem(r.Body)
	if !ok {
		return false
	}
	n := 0
	for _, ve := range p.ValidationErrors {
		for _, e := range ve.Errors {
			rest, ok := strings.CutPrefix(e.Path, "custom_fields_values.")
			if !ok {
				return false
			}
			// A UTM entry has no field_id: an error there is about another field.
			idx, sub, _ := strings.Cut(rest, ".")
			i, err := strconv.Atoi(idx)
			if err != nil || i < 0 || i >= len(cl.CustomFieldsValues) || !isUTM(cl.CustomFieldsValues[i]) || sub == "field_id" {
				return false
			}
			n++
		}
	}
	return n > 0
}

func isUTM(f fieldValue) bool { return strings.HasPrefix(f.FieldCode, "UTM_") }

func withoutUTM(fs []fieldValue) []fieldValue {
	var out []fieldValue
	for _, f := range fs {
		if !isUTM(f) {
			out = append(out, f)
		}
	}
	return out
}

// Interface guards
var (
	_ caddy.Provisioner     = (*AmoCRM)(nil)
	_ caddyfile.Unmarshaler = (*AmoCRM)(nil)
	_ lead.Sender           = (*AmoCRM)(nil)
	_ lead.Rated            = (*AmoCRM)(nil)
)
