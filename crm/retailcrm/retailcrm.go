// Package retailcrm is the destination that creates an order in retailCRM
// (Simla) through API v5: POST {base_url}/api/v5/orders/create, form-encoded
// site=<code>&order=<JSON>, the key in the X-API-KEY header.
//
// The order carries firstName/patronymic/lastName, phone (E.164), email,
// customerComment (the visitor's comment), managerComment (the lead summary:
// comment, extra fields, attribution), source (utm_* as source, medium,
// campaign, keyword, content) and externalId "leadproxy-<lead id>". The
// form's crm fields map as Roistat's help page lists them for retailCRM:
// managerComment (put before the summary), orderMethod, managerId (an
// integer), and every other key is a custom field's symbolic code, sent in
// customFields as the string given ("1"/"0" for a checkbox, the value's
// symbolic code for a directory).
//
// Errors: 2xx with {"success":true,"id":N} is delivered; 400/403/404 are
// permanent with the CRM's errorMsg and per-field errors; 429, 503 (the
// documented rate-limit answer) and 5xx are retried.
//
// Unconfirmed in the vendor docs (not in retailCRM's published API reference), so handled
// defensively: resending an externalId fails with an error whose text is not
// documented, so on any 400 the adapter looks the externalId up
// (GET /api/v5/orders?filter[externalIds][]=) and, when the order exists,
// records its id instead of failing; errors may come as an object or an
// array; an order with no customer is assumed to create one; an email the
// CRM might reject is moved into managerComment instead.
package retailcrm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(RetailCRM{})
}

// ExternalIDPrefix starts every order's externalId; the rest is the lead id,
// stable across retries, so a resend cannot make a second order.
const ExternalIDPrefix = "leadproxy-"

// RetailCRM creates orders in one retailCRM account.
type RetailCRM struct {
	crm.Common
	// APIKey is the account's API key (Settings → Integration → API keys),
	// sent as X-API-KEY. It needs the order create and read scopes. Use a
	// placeholder such as {env.RETAILCRM_KEY}.
	APIKey string `json:"api_key,omitempty"`
	// Site is the symbolic code of the store the orders belong to. Required:
	// a key that covers several stores cannot create an order without it.
	Site string `json:"site,omitempty"`

	apiKey string
	site   string
	api    string // base_url + "/api/v5"
}

// CaddyModule returns the Caddy module information.
func (RetailCRM) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".retailcrm",
		New: func() caddy.Module { return new(RetailCRM) },
	}
}

// Provision resolves placeholders and checks the required options.
func (r *RetailCRM) Provision(caddy.Context) error {
	if err := r.Spec().Resolve(); err != nil {
		return err
	}
	if err := r.Common.Provision(""); err != nil {
		return fmt.Errorf("retailcrm: %w", err)
	}
	// Accept the account address with or without the API path.
	base := strings.TrimSuffix(strings.TrimSuffix(r.BaseURL, "/api/v5"), "/api")
	r.api = base + "/api/v5"
	return nil
}

// Account is the retailCRM account (the base_url's host).
func (r *RetailCRM) Account() string { return crm.AccountKey("retailcrm", crm.HostOf(r.BaseURL)) }

// DefaultRate is retailCRM's documented limit: 10 requests a second per IP.
// A Send makes one request (two when a 400 sends it looking for a resent
// order), so the limit holds per Send as well.
func (r *RetailCRM) DefaultRate() (int, time.Duration) { return r.RateOr(10, time.Second, 1) }

// Order is the part of retailCRM's order object the adapter fills.
type Order struct {
	ExternalID      string            `json:"externalId"`
	OrderMethod     string            `json:"orderMethod,omitempty"`
	FirstName       string            `json:"firstName,omitempty"`
	Patronymic      string            `json:"patronymic,omitempty"`
	LastName        string            `json:"lastName,omitempty"`
	Phone           string            `json:"phone,omitempty"`
	Email           string            `json:"email,omitempty"`
	CustomerComment string            `json:"customerComment,omitempty"`
	ManagerComment  string            `json:"managerComment,omitempty"`
	ManagerID       int64             `json:"managerId,omitempty"`
	Source          *Source           `json:"source,omitempty"`
	CustomFields    map[string]string `json:"customFields,omitempty"`
}

// Source is the order's advertising source (utm values).
type Source struct {
	Source   string `json:"source,omitempty"`
	Medium   string `json:"medium,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	Keyword  string `json:"keyword,omitempty"`
	Content  string `json:"content,omitempty"`
}

// BuildOrder maps a lead onto an order. It fails only on a crm value the
// CRM cannot take (managerId that is not a number): a permanent error.
func BuildOrder(l *lead.Lead) (*Order, error) {
	o := &Order{
		ExternalID:      ExternalIDPrefix + l.ID,
		Phone:           lead.NormalizePhone(l.Phone, ""),
		CustomerComment: l.Comment,
	}
	o.FirstName, o.LastName = lead.SplitName(l.Name)
	if len(strings.Fields(l.Name)) == 3 {
		// ФИО: SplitName keeps "Имя Отчество" together; retailCRM has a field for each.
		o.FirstName, o.Patronymic, _ = strings.Cut(o.FirstName, " ")
	}
	var notes []string
	if email := strings.TrimSpace(l.Email); email != "" {
		if crm.PlausibleEmail(email) {
			o.Email = email
		} else {
			notes = append(notes, "Email: "+email)
		}
	}
	for _, k := range lead.SortedKeys(l.CRM) {
		v := l.CRM[k]
		switch k {
		case "managerComment":
			notes = append([]string{v}, notes...)
		case "orderMethod":
			o.OrderMethod = v
		case "managerId":
			id, ok := crm.ParseID(v)
			if !ok {
				return nil, lead.Permanent(0, fmt.Sprintf("crm managerId %q: want the manager's numeric id", v))
			}
			o.ManagerID = id
		default:
			if o.CustomFields == nil {
				o.CustomFields = map[string]string{}
			}
			o.CustomFields[k] = v
		}
	}
	if s := l.Summary(); s != "" {
		notes = append(notes, s)
	}
	o.ManagerComment = strings.Join(nonEmpty(notes), "\n\n")
	if l.Visit != nil && len(l.Visit.UTM) > 0 {
		u := l.Visit.UTM
		src := Source{Source: u["source"], Medium: u["medium"], Campaign: u["campaign"], Keyword: u["term"], Content: u["content"]}
		if src != (Source{}) {
			o.Source = &src
		}
	}
	return o, nil
}

// Send creates the order and returns its id.
func (r *RetailCRM) Send(ctx context.Context, l *lead.Lead) (string, error) {
	o, err := BuildOrder(l)
	if err != nil {
		return "", fmt.Errorf("retailcrm: %w", err)
	}
	body, err := crm.JSONBody(o)
	if err != nil {
		return "", fmt.Errorf("retailcrm: %w", err)
	}
	form := url.Values{"site": {r.site}, "order": {string(body)}}
	req, err := r.request(ctx, http.MethodPost, "/orders/create", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return "", err
	}
	resp, err := crm.Do(r.Client(), req)
	if err != nil {
		return "", fmt.Errorf("retailcrm: create order: %w", err)
	}
	if resp.Status == http.StatusBadRequest {
		if id, ok := r.existing(ctx, o.ExternalID); ok {
			return id, nil
		}
	}
	if err := classify(resp); err != nil {
		return "", fmt.Errorf("retailcrm: create order: %w", err)
	}
	var ok struct {
		Success bool        `json:"success"`
		ID      json.Number `json:"id"`
		Order   struct {
			ID json.Number `json:"id"`
		} `json:"order"`
	}
	if err := json.Unmarshal(resp.Body, &ok); err != nil {
		return "", fmt.Errorf("retailcrm: create order: %w", crm.Unparsable(resp, err))
	}
	if !ok.Success {
		if msg := Message(resp.Body); msg != "" {
			return "", fmt.Errorf("retailcrm: create order: %w", lead.Permanent(resp.Status, msg))
		}
	}
	id := ok.ID.String()
	if id == "" {
		id = ok.Order.ID.String()
	}
	if id == "" {
		return "", fmt.Errorf("retailcrm: create order: %w", crm.Unparsable(resp, errors.New("no order id")))
	}
	return id, nil
}

// Preview is what Send would send for l (the dry run), answered with the
// documented 201 of orders/create.
func (r *RetailCRM) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, r, l, func(*http.Request, []byte) *crm.Response {
		return &crm.Response{Status: http.StatusCreated, Header: http.Header{"Content-Type": {crm.ContentJSON}},
			Body: []byte(`{"success":true,"id":1,"order":{"id":1}}`)}
	}, r.apiKey)
}

// existing looks an order up by externalId: the answer to "already exists"
// after an earlier attempt created the order but its answer was lost.
func (r *RetailCRM) existing(ctx context.Context, externalID string) (string, bool) {
	q := url.Values{"filter[externalIds][]": {externalID}, "site": {r.site}}
	req, err := r.request(ctx, http.MethodGet, "/orders?"+q.Encode(), "", nil)
	if err != nil {
		return "", false
	}
	resp, err := crm.Do(r.Client(), req)
	if err != nil || resp.Status != http.StatusOK {
		return "", false
	}
	var list struct {
		Orders []struct {
			ID         json.Number `json:"id"`
			ExternalID string      `json:"externalId"`
		} `json:"orders"`
	}
	if json.Unmarshal(resp.Body, &list) != nil {
		return "", false
	}
	for _, o := range list.Orders {
		if o.ExternalID == externalID && o.ID != "" {
			return o.ID.String(), true
		}
	}
	return "", false
}

func (r *RetailCRM) request(ctx context.Context, method, path, contentType string, body []byte) (*http.Request, error) {
	req, err := crm.NewRequest(ctx, method, r.api+path, contentType, body, http.Header{"X-API-KEY": {r.apiKey}})
	if err != nil {
		return nil, fmt.Errorf("retailcrm: %w", err)
	}
	return req, nil
}

// classify is crm.Classify with retailCRM's own message. The documented
// rate-limit answer is 503 and the client library also sees 429: both are
// retryable there already.
func classify(resp *crm.Response) error {
	return crm.Classify(resp, Message(resp.Body))
}

// Message extracts retailCRM's error text: errorMsg, then the per-field
// errors ("code: text"), which come as an object or, possibly, an array.
func Message(body []byte) string {
	var e struct {
		ErrorMsg string          `json:"errorMsg"`
		Errors   json.RawMessage `json:"errors"`
	}
	if len(bytes.TrimSpace(body)) == 0 || json.Unmarshal(body, &e) != nil {
		return ""
	}
	var details []string
	var byField map[string]any
	var list []any
	switch {
	case json.Unmarshal(e.Errors, &byField) == nil:
		for _, k := range slices.Sorted(maps.Keys(byField)) {
			details = append(details, k+": "+fmt.Sprint(byField[k]))
		}
	case json.Unmarshal(e.Errors, &list) == nil:
		for _, v := range list {
			details = append(details, fmt.Sprint(v))
		}
	}
	msg := e.ErrorMsg
	if len(details) > 0 {
		if msg != "" {
			msg += ": "
		}
		msg += strings.Join(details, "; ")
	}
	return msg
}

func nonEmpty(ss []string) []string {
	out := ss[:0]
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

// Interface guards
var (
	_ caddy.Provisioner     = (*RetailCRM)(nil)
	_ caddyfile.Unmarshaler = (*RetailCRM)(nil)
	_ lead.Sender           = (*RetailCRM)(nil)
	_ lead.Rated            = (*RetailCRM)(nil)
)
