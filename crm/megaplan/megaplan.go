// Package megaplan is the destination for Megaplan API v3: each lead becomes
// a deal in the configured program (deal scheme), linked to a contractor.
//
// Per lead, against {base_url}/api/v3:
//  1. GET contractor?{"q":"<phone or email>","limit":1} reuses a contractor
//     that has the lead's phone or email, so a retry or a returning visitor
//     makes no duplicate;
//  2. otherwise POST contractorHuman with firstName/lastName (lead.SplitName;
//     a lead with no name is named by its phone or email) and contactInfo
//     entries of type "phone" (E.164) and "email";
//  3. POST deal {"contentType":"Deal","program":…,"manager":…,"contractor":…,
//     "description":…} returning data.id, the crm_id.
//
// The description carries the title, the contact as typed and l.Summary()
// (comment, extra fields, attribution, utm_*). The lead's crm fields follow
// the Roistat page: "Cost" is the deal amount (sent as the Money field
// "cost"); "Category<N>CustomField<Name>" keys, and any other key, are
// top-level deal fields with the value as given. utm_field maps a visit's
// utm_* value to such a custom field. The keys contentType, program, manager,
// contractor and description are the adapter's own and cannot be set by crm.
//
// Auth: a long-lived "token", or "login" + "password" exchanged at
// POST /api/v3/auth/access_token (grant_type=password) for an access and a
// refresh token. The access token is renewed before its expires_in runs out
// and once when a request answers 401 (grant_type=refresh_token, falling
// back to the password when the refresh token is refused); tokens are kept
// through the app's crm.TokenStore, else in memory.
//
// Answers come in the {"meta":{"status","errors"},"data"} envelope;
// meta.status wins over an HTTP 200, so a 200 carrying 422 is a validation
// error. 422/403 and other 4xx are permanent with meta.errors' messages;
// 429 (with Retry-After), 5xx and network errors are retried.
//
// Unconfirmed in the reference ([U]/[L]), handled defensively: the
// contractor search (a refused search falls through to creating one), the
// "phone" contactInfo type, the Money shape of "cost", the token endpoint's
// error format (OAuth {"error",…} and the meta envelope are both read), data.id
// as string or number, and the rate limit (none documented; see DefaultRate).
// Megaplan has no idempotency key; the contractor search keeps retries from
// duplicating contractors, not deals.
package megaplan

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
	"github.com/leadproxy/leadproxy/crm/oauth"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(Megaplan{})
}

// Megaplan creates deals in a Megaplan account.
type Megaplan struct {
	crm.Common
	// Token is a long-lived API access token. Use a placeholder
	// ({env.MEGAPLAN_TOKEN}). Either Token or Login + Password is required.
	Token string `json:"token,omitempty"`
	// Login and Password of the Megaplan user the deals are created as,
	// exchanged for a renewable token. Use placeholders.
	Login    string `json:"login,omitempty"`
	Password string `json:"password,omitempty"`
	// Program is the id of the deal scheme (pipeline) new deals go to.
	// Required.
	Program int `json:"program,omitempty"`
	// Manager is the id of the employee responsible for new deals.
	// Default: none sent, Megaplan's own default applies.
	Manager int `json:"manager,omitempty"`
	// Currency of the "Cost" amount (ISO code, "RUB"). Default: none sent,
	// the account's main currency applies.
	Currency string `json:"currency,omitempty"`
	// UTMFields maps a utm key (source, medium, campaign, term, content) to
	// the deal field that receives it, e.g. source →
	// Category130CustomFieldUtmSource. UTM values are always in the
	// description as well.
	UTMFields map[string]string `json:"utm_fields,omitempty"`

	api             string // {base_url}/api/v3
	token           string // Token resolved
	login, password string
	oauth.Keeper
}

// CaddyModule returns the Caddy module information.
func (Megaplan) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".megaplan",
		New: func() caddy.Module { return new(Megaplan) },
	}
}

// Provision resolves placeholders and checks the required options.
func (m *Megaplan) Provision(ctx caddy.Context) error {
	if err := m.Spec().Resolve(); err != nil {
		return err
	}
	if err := m.Common.Provision(""); err != nil {
		return fmt.Errorf("megaplan: %w", err)
	}
	m.api = strings.TrimSuffix(m.BaseURL, "/api/v3") + "/api/v3"
	token := m.token
	if m.Program <= 0 {
		return errors.New("megaplan: program is required (the id of the deal scheme)")
	}
	if m.Manager < 0 {
		return fmt.Errorf("megaplan: manager %d: want an employee id", m.Manager)
	}
	for key := range m.UTMFields {
		if err := crm.CheckUTMKey(key); err != nil {
			return fmt.Errorf("megaplan: utm_field: %w", err)
		}
	}
	var grant oauth.Grant
	if m.login != "" {
		grant = m.grant
	}
	seed := oauth.Seed(m.api, token, m.login, m.password)
	m.Keep("megaplan", oauth.New(oauth.Token{Access: token}, seed, grant, ctx.Logger()))
	return nil
}

// Account is the Megaplan account (the base_url's host).
func (m *Megaplan) Account() string { return crm.AccountKey("megaplan", crm.HostOf(m.BaseURL)) }

// DefaultRate: Megaplan documents no limit (its SDKs handle 429 with
// Retry-After); 3 leads a second, each up to three requests, stays gentle
// with a shared cloud account.
func (m *Megaplan) DefaultRate() (int, time.Duration) { return m.RateOr(3, time.Second, 1) }

// ref is a link entity: contentType and id are all Megaplan needs.
type ref struct {
	ContentType string          `json:"contentType"`
	ID          json.RawMessage `json:"id"`
}

func intRef(contentType string, id int) ref {
	return ref{ContentType: contentType, ID: json.RawMessage(strconv.Itoa(id))}
}

type contactInfo struct {
	ContentType string `json:"contentType"`
	Type        string `json:"type"`
	Value       string `json:"value"`
	IsMain      bool   `json:"isMain,omitempty"`
}

type contractorHuman struct {
	ContentType string        `json:"contentType"`
	FirstName   string        `json:"firstName,omitempty"`
	LastName    string        `json:"lastName,omitempty"`
	ContactInfo []contactInfo `json:"contactInfo,omitempty"`
}

// Send finds or creates the contractor, then creates the deal, and returns
// the deal's id.
func (m *Megaplan) Send(ctx context.Context, l *lead.Lead) (string, error) {
	if m.Tokens() == nil {
		return "", lead.Permanent(0, "megaplan: not provisioned")
	}
	contractor, err := m.contractor(ctx, l)
	if err != nil {
		return "", err
	}
	data, resp, err := m.call(ctx, http.MethodPost, "/deal", nil, m.deal(l, contractor))
	if err != nil {
		return "", fmt.Errorf("create deal: %w", err)
	}
	var deal ref
	err = json.Unmarshal(data, &deal)
	if id := idString(deal.ID); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("create deal: %w", crm.Unparsable(resp, err))
}

// Preview is what Send would send for l (the dry run): a token request
// only when Send would make one (its answer is kept nowhere), a search that
// finds no contractor, then the creates, answered with example ids.
func (m *Megaplan) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, m, l, func(req *http.Request, _ []byte) *crm.Response {
		p := req.URL.Path
		switch {
		case strings.HasSuffix(p, "/auth/access_token"):
			return crm.JSONAnswer(`{"access_token":"leadproxy-preview-access-token","expires_in":86400,"token_type":"bearer","refresh_token":"leadproxy-preview-refresh-token"}`)
		case req.Method == http.MethodGet:
			return crm.JSONAnswer(`{"meta":{"status":200,"errors":[]},"data":[]}`)
		case strings.HasSuffix(p, "/contractorHuman"):
			return crm.JSONAnswer(`{"meta":{"status":200,"errors":[]},"data":{"contentType":"ContractorHuman","id":"1000001"}}`)
		}
		return crm.JSONAnswer(`{"meta":{"status":200,"errors":[]},"data":{"contentType":"Deal","id":"1000002"}}`)
	}, m.login, m.password)
}

// contractor returns the contractor to link the deal to: one found by the
// lead's phone or email, else a new person; nil when the lead has nothing
// to make one of.
func (m *Megaplan) contractor(ctx context.Context, l *lead.Lead) (*ref, error) {
	phone := lead.NormalizePhone(l.Phone, "")
	email := strings.TrimSpace(l.Email)
	if q := crm.FirstNonEmpty(phone, email); q != "" {
		found, err := m.findContractor(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("find contractor: %w", err)
		}
		if found != nil {
			return found, nil
		}
	}
	first, last := lead.SplitName(l.Name)
	if first == "" && last == "" {
		first = crm.FirstNonEmpty(phone, email) // Megaplan lists people by name
	}
	if first == "" {
		return nil, nil
	}
	body := contractorHuman{ContentType: "ContractorHuman", FirstName: first, LastName: last}
	if phone != "" {
		body.ContactInfo = append(body.ContactInfo, contactInfo{ContentType: "ContactInfo", Type: "phone", Value: phone})
	}
	if email != "" {
		body.ContactInfo = append(body.ContactInfo, contactInfo{ContentType: "ContactInfo", Type: "email", Value: email})
	}
	if len(body.ContactInfo) > 0 {
		body.ContactInfo[0].IsMain = true
	}
	data, resp, err := m.call(ctx, http.MethodPost, "/contractorHuman", nil, body)
	if err != nil {
		return nil, fmt.Errorf("create contractor: %w", err)
	}
	var created ref
	err = json.Unmarshal(data, &created)
	if idString(created.ID) == "" {
		return nil, fmt.Errorf("create contractor: %w", crm.Unparsable(resp, err))
	}
	return &ref{ContentType: crm.FirstNonEmpty(created.ContentType, "ContractorHuman"), ID: created.ID}, nil
}

// findContractor searches contractors by q. The search is confirmed only by
// client libraries, so a refusal other than auth lets the lead go on with a
// new contractor instead of failing it.
func (m *Megaplan) findContractor(ctx context.Context, q string) (*ref, error) {
	data, _, err := m.call(ctx, http.MethodGet, "/contractor", map[string]any{"q": q, "limit": 1}, nil)
	if err != nil {
		var ae *oauth.AuthError
		var se *lead.SendError
		if errors.As(err, &ae) || !lead.IsPermanent(err) ||
			(errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden)) {
			return nil, err
		}
		return nil, nil
	}
	var found []ref
	if json.Unmarshal(data, &found) != nil {
		return nil, nil
	}
	for _, r := range found {
		if idString(r.ID) != "" && strings.HasPrefix(r.ContentType, "Contractor") {
			return &r, nil
		}
	}
	return nil, nil
}

// deal builds the deal body: UTM mapping, then the lead's crm fields (which
// win over it), then the adapter's own keys (which win over both).
func (m *Megaplan) deal(l *lead.Lead, contractor *ref) map[string]any {
	deal := map[string]any{}
	if l.Visit != nil {
		for key, field := range m.UTMFields {
			if v := l.Visit.UTM[key]; v != "" {
				deal[field] = v
			}
		}
	}
	var notes []string
	for _, k := range lead.SortedKeys(l.CRM) {
		v := l.CRM[k]
		if strings.TrimSpace(v) == "" {
			continue
		}
		if k != "Cost" {
			deal[k] = v
			continue
		}
		if amount, ok := crm.ParseAmount(v); ok {
			money := map[string]any{"contentType": "Money", "value": amount}
			if m.Currency != "" {
				money["currency"] = m.Currency
			}
			deal["cost"] = money
		} else {
			notes = append(notes, "Cost: "+v) // not a number: kept for the manager, not lost
		}
	}
	deal["contentType"] = "Deal"
	deal["program"] = intRef("Program", m.Program)
	if m.Manager > 0 {
		deal["manager"] = intRef("Employee", m.Manager)
	}
	if contractor != nil {
		deal["contractor"] = contractor
	}
	deal["description"] = description(l, notes)
	return deal
}

// description is the deal's text: title, the contact as the visitor gave it
// (the linked contractor may be an older one), notes and the summary.
func description(l *lead.Lead, notes []string) string {
	var lines []string
	if l.Title != "" && l.Title != l.Form {
		lines = append(lines, l.Title)
	}
	for _, kv := range [][2]string{{"Имя", l.Name}, {"Телефон", l.Phone}, {"Email", l.Email}} {
		if kv[1] != "" {
			lines = append(lines, kv[0]+": "+kv[1])
		}
	}
	lines = append(lines, notes...)
	if s := l.Summary(); s != "" {
		lines = append(lines, s)
	}
	return strings.Join(lines, "\n")
}

// call makes one API request with the current token (renewed once on 401)
// and returns the envelope's data. query, if any, travels as the URL-encoded
// JSON object after "?" that Megaplan reads.
func (m *Megaplan) call(ctx context.Context, method, path string, query, body any) (json.RawMessage, *crm.Response, error) {
	u := m.api + path
	if query != nil {
		q, err := crm.JSONBody(query)
		if err != nil {
			return nil, nil, err
		}
		// QueryEscape keeps "+" of a phone as %2B; spaces become %20, not "+".
		u += "?" + strings.ReplaceAll(url.QueryEscape(string(q)), "+", "%20")
	}
	resp, err := m.Tokens().Do(ctx, func(access string) (*crm.Response, error) {
		return crm.DoJSON(ctx, m.Client(), method, u, body, crm.Bearer(access))
	}, func(r *crm.Response) bool {
		status, _ := effective(r)
		return status == http.StatusUnauthorized
	})
	if err != nil {
		return nil, nil, err
	}
	data, err := decode(resp)
	return data, resp, err
}

// grant obtains a token: with the refresh token when there is one, else (or
// when it is refused) with the login and password.
func (m *Megaplan) grant(ctx context.Context, cur oauth.Token) (oauth.Token, error) {
	if cur.Refresh != "" {
		tok, err := m.exchange(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cur.Refresh}})
		if err == nil || !lead.IsPermanent(err) {
			return tok, err
		}
	}
	return m.exchange(ctx, url.Values{"grant_type": {"password"}, "username": {m.login}, "password": {m.password}})
}

func (m *Megaplan) exchange(ctx context.Context, form url.Values) (oauth.Token, error) {
	return oauth.Exchange(ctx, m.Client(), m.api+"/auth/access_token", form, func(body []byte) string {
		var env envelope
		if json.Unmarshal(body, &env) != nil {
			return ""
		}
		return env.message()
	})
}

// envelope is every Megaplan API v3 answer.
type envelope struct {
	Meta *struct {
		Status int               `json:"status"`
		Errors []json.RawMessage `json:"errors"`
	} `json:"meta"`
	Data json.RawMessage `json:"data"`
}

// effective returns the answer's status: meta.status when the HTTP status
// says success but the body does not.
func effective(r *crm.Response) (int, *envelope) {
	var env envelope
	if json.Unmarshal(r.Body, &env) != nil {
		return r.Status, nil
	}
	if env.Meta != nil && env.Meta.Status >= 300 && r.Status < 300 {
		return env.Meta.Status, &env
	}
	return r.Status, &env
}

// decode returns the data of a successful answer, or the classified error
// with meta.errors' messages.
func decode(r *crm.Response) (json.RawMessage, error) {
	status, env := effective(r)
	if status >= 200 && status < 300 {
		if env == nil || env.Meta == nil || len(env.Data) == 0 || string(env.Data) == "null" {
			return nil, crm.Unparsable(r, errors.New("no meta/data envelope"))
		}
		return env.Data, nil
	}
	msg := ""
	if env != nil {
		msg = env.message()
	}
	return nil, crm.Classify(&crm.Response{Status: status, Header: r.Header, Body: r.Body}, msg)
}

// message joins meta.errors as "field: message"; entries of an unexpected
// shape are excerpted rather than dropped.
func (e *envelope) message() string {
	if e.Meta == nil {
		return ""
	}
	var parts []string
	for _, raw := range e.Meta.Errors {
		var x struct {
			Field   json.RawMessage `json:"field"`
			Message string          `json:"message"`
		}
		var s string
		switch {
		case json.Unmarshal(raw, &x) == nil && x.Message != "":
			var field string
			if json.Unmarshal(x.Field, &field) == nil && field != "" {
				parts = append(parts, field+": "+x.Message)
			} else {
				parts = append(parts, x.Message)
			}
		case json.Unmarshal(raw, &s) == nil && s != "":
			parts = append(parts, s)
		default:
			parts = append(parts, crm.Excerpt(raw))
		}
	}
	return strings.Join(parts, "; ")
}

// idString reads an id sent as a JSON string or number.
func idString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Megaplan)(nil)
	_ caddyfile.Unmarshaler = (*Megaplan)(nil)
	_ lead.Sender           = (*Megaplan)(nil)
	_ lead.Rated            = (*Megaplan)(nil)
	_ crm.TokenKeeper       = (*Megaplan)(nil)
)
