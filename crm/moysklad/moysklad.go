// Package moysklad is the destination that creates a customer order in
// MoySklad (JSON API 1.2): it finds the visitor's counterparty by phone (or
// by email when there is no phone) or creates one, then posts
// /entity/customerorder with that agent and the configured organization.
//
// Requests carry "Authorization: Bearer <token>" and the mandatory
// "Accept-Encoding: gzip" (MoySklad answers 415 without it); answers are
// decompressed here. Both creates carry a syncId derived from the lead id, so
// a retry after a lost answer returns the entity made the first time instead
// of a duplicate. The order's description holds the contact, the lead
// summary (comment, extra fields, attribution) and any note below, cut to
// the field's 4096 characters.
//
// The form's crm fields map as Roistat's help page lists them for MoySklad:
// state_uuid, currency_uuid, project_uuid, contract_uuid,
// existing_store_uuid, existing_organization_uuid and
// existing_counterparty_uuid become the order's state, rate.currency,
// project, contract, store, organization and agent; owner_uid (an
// employee's login, or the employee's UUID) becomes its owner;
// existing_good_uuid, a JSON array of {uuid, count, discount, vat, sum},
// becomes its positions; and any other key whose value is a JSON object
// {uuid, value, type} becomes an additional field (attribute). Any other
// key is written into the description as "key: value".
//
// Errors: MoySklad's {"errors":[{error, code, ...}]} text is put on the
// lead. 429 (codes 1049 rate, 1073 parallel) is retried after
// X-Lognex-Retry-After (ms); codes 1074/1095 (maintenance) are retried
// whatever the status; 5xx and network errors are retried; other 4xx are
// permanent.
//
// Unconfirmed or inferred ([U]), handled defensively: a position's "sum" is
// read as the unit price in roubles (MoySklad wants kopecks); positions
// without vat or sum leave them to MoySklad rather than assume Roistat's
// 18% default; a login matching no employee leaves the order without owner
// and says so in the description, so the lead is not lost to a typo (or
// to a token without the right to list employees); an
// email MoySklad would reject (error 3015) goes to the description only.
package moysklad

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/google/uuid"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(MoySklad{})
}

// DefaultBaseURL is MoySklad's API root.
const DefaultBaseURL = "https://api.moysklad.ru/api/remap/1.2"

// apiPath is appended to a base_url given without a path.
const apiPath = "/api/remap/1.2"

// HrefBase starts every meta href the adapter writes. MoySklad rejects hrefs
// naming another server (error 1059), so they do not follow base_url.
const HrefBase = DefaultBaseURL

// DescriptionMax is the length limit of an order's description, in characters.
const DescriptionMax = 4096

// MoySklad creates customer orders in one MoySklad account.
type MoySklad struct {
	crm.Common
	// Token is an access token (POST /security/token, or a solution's
	// token), sent as Bearer. Generating a new one revokes the user's old
	// ones. Use a placeholder such as {env.MOYSKLAD_TOKEN}.
	Token string `json:"token,omitempty"`
	// Organization is the UUID of the legal entity (Юрлицо) the orders are
	// made by; a form's existing_organization_uuid overrides it.
	Organization string `json:"organization,omitempty"`
	// Store is the UUID of the warehouse orders are reserved from, if any;
	// a form's existing_store_uuid overrides it.
	Store string `json:"store,omitempty"`

	token        string
	organization string
	store        string
	api          string

	employees *sync.Map // login → employee id ("" when none), looked up once
}

// CaddyModule returns the Caddy module information.
func (MoySklad) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".moysklad",
		New: func() caddy.Module { return new(MoySklad) },
	}
}

// Provision resolves placeholders and checks the required options.
func (m *MoySklad) Provision(caddy.Context) error {
	if err := m.Spec().Resolve(); err != nil {
		return err
	}
	if err := m.Common.Provision(DefaultBaseURL); err != nil {
		return fmt.Errorf("moysklad: %w", err)
	}
	m.api = m.BaseURL
	if u, _ := url.Parse(m.api); u != nil && u.Path == "" {
		m.api += apiPath
	}
	if !IsUUID(m.organization) {
		return fmt.Errorf("moysklad: organization %q: want a UUID like 850c8195-f504-11e5-8a84-bae50000015e", m.organization)
	}
	if m.store != "" && !IsUUID(m.store) {
		return fmt.Errorf("moysklad: store %q: want a UUID", m.store)
	}
	m.employees = new(sync.Map)
	return nil
}

// Account is the MoySklad user or solution the token belongs to: the
// request-unit bucket counts per user, and one API host serves everyone.
func (m *MoySklad) Account() string {
	return crm.AccountKey("moysklad", crm.HostOf(m.BaseURL), m.token)
}

// DefaultRate counts Sends. MoySklad allows 45 request units per 3 s and,
// from December 2026, a user token's request weighs 4 (11 requests/3 s); a
// Send makes up to 3 requests (find, create counterparty, create order), so
// one Send a second stays inside the limit. Drains that exceed it meet 429s,
// and many 429s a minute get API access disabled: hence the margin.
func (m *MoySklad) DefaultRate() (int, time.Duration) { return m.RateOr(1, time.Second, 1) }

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether s is a MoySklad id (a UUID in its canonical form).
func IsUUID(s string) bool { return uuidRe.MatchString(s) }

// SyncID is the syncId of the entity of kind made for a lead: the same on
// every attempt, different per lead and kind.
func SyncID(kind, leadID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:leadproxy:"+kind+":"+leadID)).String()
}

// Meta is MoySklad's reference to another object.
type Meta struct {
	Href      string `json:"href"`
	Type      string `json:"type"`
	MediaType string `json:"mediaType"`
}

// Ref wraps a Meta as fields that point to an object take it.
type Ref struct {
	Meta Meta `json:"meta"`
}

// EntityRef points to /entity/<typ>/<id>.
func EntityRef(typ, id string) *Ref {
	return &Ref{Meta{Href: HrefBase + "/entity/" + typ + "/" + id, Type: typ, MediaType: "application/json"}}
}

func orderMetaRef(kind, typ, id string) *Ref {
	return &Ref{Meta{Href: HrefBase + "/entity/customerorder/metadata/" + kind + "/" + id, Type: typ, MediaType: "application/json"}}
}

// Counterparty is the body of a counterparty create.
type Counterparty struct {
	Name        string `json:"name"`
	CompanyType string `json:"companyType"`
	Phone       string `json:"phone,omitempty"`
	Email       string `json:"email,omitempty"`
	Description string `json:"description,omitempty"`
	SyncID      string `json:"syncId"`
}

// CustomerOrder is the body of a customer order create.
type CustomerOrder struct {
	Organization *Ref        `json:"organization"`
	Agent        *Ref        `json:"agent"`
	State        *Ref        `json:"state,omitempty"`
	Store        *Ref        `json:"store,omitempty"`
	Project      *Ref        `json:"project,omitempty"`
	Contract     *Ref        `json:"contract,omitempty"`
	Owner        *Ref        `json:"owner,omitempty"`
	Rate         *Rate       `json:"rate,omitempty"`
	Description  string      `json:"description,omitempty"`
	Positions    []Position  `json:"positions,omitempty"`
	Attributes   []Attribute `json:"attributes,omitempty"`
	SyncID       string      `json:"syncId"`
}

// Rate is the order's currency.
type Rate struct {
	Currency *Ref `json:"currency"`
}

// Position is one line of goods. Price is in kopecks.
type Position struct {
	Quantity   float64  `json:"quantity"`
	Price      *float64 `json:"price,omitempty"`
	Discount   *float64 `json:"discount,omitempty"`
	VAT        *int     `json:"vat,omitempty"`
	Assortment *Ref     `json:"assortment"`
}

// Attribute is an additional field's value.
type Attribute struct {
	Meta  Meta `json:"meta"`
	Value any  `json:"value"`
}

// Send finds or creates the counterparty, creates the order and returns
// the order's id.
func (m *MoySklad) Send(ctx context.Context, l *lead.Lead) (string, error) {
	f, err := parseCRM(l.CRM)
	if err != nil {
		return "", fmt.Errorf("moysklad: %w", err)
	}
	phone := lead.NormalizePhone(l.Phone, "")
	email := strings.TrimSpace(l.Email)
	if email != "" && !crm.PlausibleEmail(email) {
		email = ""
	}
	o := f.order
	if o.Organization == nil {
		o.Organization = EntityRef("organization", m.organization)
	}
	if o.Store == nil && m.store != "" {
		o.Store = EntityRef("store", m.store)
	}
	agent := f.counterparty
	if agent == "" {
		if agent, err = m.counterparty(ctx, l, phone, email); err != nil {
			return "", err
		}
	}
	o.Agent = EntityRef("counterparty", agent)
	if f.ownerLogin != "" {
		id, err := m.employee(ctx, f.ownerLogin)
		if err != nil && !lead.IsPermanent(err) {
			return "", err
		}
		if id != "" {
			o.Owner = EntityRef("employee", id)
		} else {
			f.notes = append(f.notes, "Ответственный не найден: "+f.ownerLogin)
		}
	}
	o.Description = description(l, phone, f.notes)
	o.SyncID = SyncID("customerorder", l.ID)
	var created entity
	if err := m.call(ctx, "create order", http.MethodPost, "/entity/customerorder", nil, o, &created); err != nil {
		return "", err
	}
	return created.ID, nil
}

// Preview is what Send would send for l (the dry run): the lookups find
// nothing (a new counterparty is created) and each create answers its
// example id, so the order's agent is that example counterparty.
func (m *MoySklad) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, m, l, func(req *http.Request, _ []byte) *crm.Response {
		if req.Method == http.MethodGet {
			return crm.JSONAnswer(`{"meta":{"size":0,"limit":1,"offset":0},"rows":[]}`)
		}
		if strings.HasSuffix(req.URL.Path, "/entity/counterparty") {
			return crm.JSONAnswer(`{"id":"00000000-0000-4000-8000-000000000001"}`)
		}
		return crm.JSONAnswer(`{"id":"00000000-0000-4000-8000-000000000002"}`)
	}, m.token)
}

// description renders the order comment: the contact (the agent may be an
// older counterparty with other details), the lead summary, then notes.
func description(l *lead.Lead, phone string, notes []string) string {
	var parts []string
	var contact []string
	for _, kv := range [][2]string{{"Имя", l.Name}, {"Телефон", phone}, {"Email", strings.TrimSpace(l.Email)}} {
		if kv[1] != "" {
			contact = append(contact, kv[0]+": "+kv[1])
		}
	}
	for _, p := range []string{strings.Join(contact, "\n"), l.Summary(), strings.Join(notes, "\n")} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	s := strings.Join(parts, "\n\n")
	if r := []rune(s); len(r) > DescriptionMax {
		s = string(r[:DescriptionMax-1]) + "…"
	}
	return s
}

type entity struct {
	ID string `json:"id"`
}

type list struct {
	Rows []entity `json:"rows"`
}

// counterparty returns the id of the counterparty with the lead's phone
// (or, with no phone, email), creating one when none matches.
func (m *MoySklad) counterparty(ctx context.Context, l *lead.Lead, phone, email string) (string, error) {
	filter := ""
	switch {
	case phone != "":
		filter = "phone=" + phone
	case email != "":
		filter = "email=" + email
	}
	if filter != "" {
		var found list
		q := url.Values{"filter": {filter}, "limit": {"1"}}
		if err := m.call(ctx, "find counterparty", http.MethodGet, "/entity/counterparty", q, nil, &found); err != nil {
			return "", err
		}
		if len(found.Rows) > 0 {
			return found.Rows[0].ID, nil
		}
	}
	name := strings.TrimSpace(l.Name)
	if name == "" {
		name = strings.TrimSpace(phone + " " + email) // never empty: a lead has one of them
	}
	if name == "" {
		name = "Заявка " + l.ID
	}
	c := Counterparty{
		Name: name, CompanyType: "individual", Phone: phone, Email: email,
		Description: strings.TrimSpace("Из заявки с сайта " + l.Site),
		SyncID:      SyncID("counterparty", l.ID),
	}
	var created entity
	if err := m.call(ctx, "create counterparty", http.MethodPost, "/entity/counterparty", nil, c, &created); err != nil {
		return "", err
	}
	return created.ID, nil
}

// employee returns the id of the employee with this login, "" if none.
func (m *MoySklad) employee(ctx context.Context, login string) (string, error) {
	if id, ok := m.employees.Load(login); ok {
		return id.(string), nil
	}
	var found list
	q := url.Values{"filter": {"uid=" + login}, "limit": {"1"}}
	if err := m.call(ctx, "find owner", http.MethodGet, "/entity/employee", q, nil, &found); err != nil {
		return "", err
	}
	id := ""
	if len(found.Rows) > 0 {
		id = found.Rows[0].ID
	}
	if !crm.Recording(ctx) { // a preview's answer is an example
		m.employees.Store(login, id)
	}
	return id, nil
}

// call makes one API request and decodes a 2xx answer into out, which must
// carry an id (or rows). step names the request in errors.
func (m *MoySklad) call(ctx context.Context, step, method, path string, q url.Values, in, out any) error {
	wrap := func(err error) error { return fmt.Errorf("moysklad: %s: %w", step, err) }
	u := m.api + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := crm.DoJSON(ctx, m.Client(), method, u, in, http.Header{
		"Authorization": {"Bearer " + m.token},
		// Set by hand, so Go's transport leaves the answer compressed: decompress below.
		"Accept-Encoding": {"gzip"},
	})
	if err != nil {
		return wrap(err)
	}
	zerr := decompress(resp)
	if err := classify(resp); err != nil {
		return wrap(err)
	}
	if zerr != nil {
		return wrap(crm.Unparsable(resp, zerr))
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return wrap(crm.Unparsable(resp, err))
	}
	switch out := out.(type) {
	case *entity:
		if !IsUUID(out.ID) {
			return wrap(crm.Unparsable(resp, errors.New("no id in the answer")))
		}
	case *list:
		for _, r := range out.Rows {
			if !IsUUID(r.ID) {
				return wrap(crm.Unparsable(resp, errors.New("a row without id")))
			}
		}
	}
	return nil
}

// decompress replaces a gzip body by its content.
func decompress(resp *crm.Response) error {
	if !strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") || len(resp.Body) == 0 {
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(resp.Body))
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, crm.MaxResponseBody))
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	resp.Body = b
	resp.Header.Del("Content-Encoding")
	return nil
}

// Error codes that mean "later" whatever the HTTP status: rate (1049),
// parallel requests (1073), maintenance (1074), temporarily unavailable (1095).
var retryCodes = map[int]bool{1049: true, 1073: true, 1074: true, 1095: true}

// classify turns a non-2xx answer into an error with MoySklad's message.
func classify(resp *crm.Response) error {
	if resp.Status >= 200 && resp.Status < 300 {
		return nil
	}
	msg, codes := Message(resp.Body)
	if msg == "" {
		msg = resp.Header.Get("X-Lognex-Auth-Message")
	}
	if msg == "" && resp.Status == http.StatusUnsupportedMediaType {
		msg = "unsupported request encoding (MoySklad wants Accept-Encoding: gzip)"
	}
	retry := resp.Status == http.StatusTooManyRequests
	for _, c := range codes {
		retry = retry || retryCodes[c]
	}
	if retry {
		if msg == "" {
			msg = crm.Excerpt(resp.Body)
		}
		return lead.Retryable(resp.Status, msg, RetryAfter(resp.Header))
	}
	return crm.Classify(resp, msg)
}

// RetryAfter reads MoySklad's X-Lognex-Retry-After (ms), then X-Lognex-Reset
// (ms), then a standard Retry-After; 0 if none.
func RetryAfter(h http.Header) time.Duration {
	for _, k := range []string{"X-Lognex-Retry-After", "X-Lognex-Reset"} {
		if ms, err := strconv.Atoi(strings.TrimSpace(h.Get(k))); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return crm.RetryAfter(h, time.Now())
}

// Message joins MoySklad's errors ("text (code N)") and returns their codes.
func Message(body []byte) (string, []int) {
	var e struct {
		Errors []struct {
			Error        string `json:"error"`
			ErrorMessage string `json:"error_message"`
			Parameter    string `json:"parameter"`
			Code         int    `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", nil
	}
	var msgs []string
	var codes []int
	for _, x := range e.Errors {
		s := x.Error
		if x.ErrorMessage != "" && x.ErrorMessage != s {
			s = strings.TrimSpace(s + " " + x.ErrorMessage)
		}
		if x.Code != 0 {
			s += " (code " + strconv.Itoa(x.Code) + ")"
			codes = append(codes, x.Code)
		}
		msgs = append(msgs, s)
	}
	return strings.Join(msgs, "; "), codes
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MoySklad)(nil)
	_ caddyfile.Unmarshaler = (*MoySklad)(nil)
	_ lead.Sender           = (*MoySklad)(nil)
	_ lead.Rated            = (*MoySklad)(nil)
)
