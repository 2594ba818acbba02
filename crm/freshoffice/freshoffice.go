// Package freshoffice is the destination for FreshOffice (myfreshcloud.com),
// API 2.0: a contractor through POST /company/insert, then a deal through
// POST /deal/insert, both JSON with "Authorization: Bearer <token>".
//
// Much of this API is unconfirmed in the reference (marked [U] there), so the
// adapter is defensive where the documentation is thin:
//   - /company/insert is inferred from the deal call; set company to attach
//     every deal to an existing contractor and skip it (the contact then goes
//     into the deal note);
//   - the new id is read from the standard answer's "value" as a string, a
//     number or a JSON string holding {"ID":...}; a contractor answered with
//     no id is a permanent error that says to set company;
//   - errors are read from "error" as a string, an object or the legacy
//     {"error":{"message":{"value":...}}}; a 200 whose status is not
//     "success" is a permanent error carrying that message;
//   - no rate limit is documented: the default of 3/s is a guess.
//
// There is no idempotency key: a contractor created for a lead is remembered
// (in memory) until that lead's deal exists, so a retry after a failed deal
// does not create the contractor again. A restart forgets it.
//
// The crm keys of Roistat's help page map as follows: person → contractor
// type_id; id_status_deal → status_id; summa → sum; chance → chance;
// id_manager → user_id. A value that is not a number is not sent and goes into
// the note instead. Any other key is sent as that deal field verbatim
// (FreshOffice's "added fields", format [U]).
package freshoffice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(FreshOffice{})
}

// DefaultBaseURL is the API 2.0 host; the legacy api.myfreshcloud.com
// (OData, Basic auth) is a different API and is not supported.
const DefaultBaseURL = "https://do.myfreshcloud.com"

// moscow is the default zone for the deal dates: FreshOffice is used mostly
// in Russia, which has kept +03:00 without DST since 2014.
var moscow = time.FixedZone("MSK", 3*60*60)

// maxPending bounds the contractors remembered for leads whose deal failed.
const maxPending = 1000

// FreshOffice creates a contractor and a deal per lead.
type FreshOffice struct {
	crm.Common
	// Token is the API 2.0 bearer token (Администрирование → API; keys of
	// the old API do not work). Use a placeholder: {env.FRESHOFFICE_TOKEN}.
	Token string `json:"token,omitempty"`
	// Manager is the user_id deals are assigned to. Required: deal/insert
	// demands a user_id. A form's crm id_manager overrides it.
	Manager int64 `json:"manager,omitempty"`
	// DealType is the deal type_id (directory 32). Default 1.
	DealType int64 `json:"deal_type,omitempty"`
	// Status is the deal status_id; statuses belong to a deal type. Default 1,
	// the default Roistat documents for id_status_deal.
	Status int64 `json:"status,omitempty"`
	// Company, when set, is the id of an existing contractor every deal is
	// attached to; no contractor is created and the contact goes into the
	// note. Default: a contractor is created per lead.
	Company int64 `json:"company,omitempty"`
	// Timezone gives the deal dates (an IANA name). Default Europe/Moscow.
	Timezone string `json:"timezone,omitempty"`

	token   string
	loc     *time.Location
	pending *contractors
}

// contractors remembers the contractor created for a lead until the lead's
// deal exists, so a retry does not create a second one.
type contractors struct {
	mu   sync.Mutex
	byID map[string]string // lead id → contractor id
}

func (c *contractors) get(leadID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.byID[leadID]
	return id, ok
}

func (c *contractors) put(leadID, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byID) >= maxPending {
		clear(c.byID) // leads that never got a deal; forgetting them only risks a duplicate contractor
	}
	c.byID[leadID] = id
}

func (c *contractors) drop(leadID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, leadID)
}

// CaddyModule returns the Caddy module information.
func (FreshOffice) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  crm.Namespace + ".freshoffice",
		New: func() caddy.Module { return new(FreshOffice) },
	}
}

// Provision resolves placeholders and checks the required options.
func (f *FreshOffice) Provision(caddy.Context) error {
	if err := f.Spec().Resolve(); err != nil {
		return err
	}
	if err := f.Common.Provision(DefaultBaseURL); err != nil {
		return fmt.Errorf("freshoffice: %w", err)
	}
	f.token = strings.TrimSpace(f.token)
	if f.Manager <= 0 {
		return errors.New("freshoffice: manager is required (the user_id deals are assigned to)")
	}
	if f.DealType <= 0 {
		f.DealType = 1
	}
	if f.Status <= 0 {
		f.Status = 1
	}
	f.loc = moscow
	if f.Timezone != "" {
		loc, err := time.LoadLocation(f.Timezone)
		if err != nil {
			return fmt.Errorf("freshoffice: timezone: %w", err)
		}
		f.loc = loc
	}
	f.pending = &contractors{byID: map[string]string{}}
	return nil
}

// Account is the FreshOffice account the token belongs to (one API host
// serves every account).
func (f *FreshOffice) Account() string {
	return crm.AccountKey("freshoffice", crm.HostOf(f.BaseURL), f.token)
}

// DefaultRate: FreshOffice documents no limit; 3/s is a cautious guess.
func (f *FreshOffice) DefaultRate() (int, time.Duration) { return f.RateOr(3, time.Second, 1) }

// roistatKeys maps the crm keys of Roistat's help page for FreshOffice to
// API 2.0 fields; every one of them is numeric.
var roistatKeys = map[string]struct {
	contractor bool
	field      string
}{
	"person":         {contractor: true, field: "type_id"}, // 1 legal entity, 2 person
	"id_status_deal": {field: "status_id"},
	"summa":          {field: "sum"},
	"chance":         {field: "chance"},
	"id_manager":     {field: "user_id"},
}

// idFields are deal fields that FreshOffice takes as numbers; a crm key
// naming one directly is converted like the Roistat keys.
var idFields = map[string]bool{"company_id": true, "type_id": true, "status_id": true, "user_id": true, "sum": true}

// mapped is a lead's crm map sorted into the two requests.
type mapped struct {
	deal, contractor map[string]any
	notes            []string // values that are not numbers, kept for the manager
}

func mapCRM(fields map[string]string) mapped {
	m := mapped{deal: map[string]any{}, contractor: map[string]any{}}
	for _, k := range lead.SortedKeys(fields) {
		v := fields[k]
		target, field := m.deal, k
		if rk, ok := roistatKeys[k]; ok {
			field = rk.field
			if rk.contractor {
				target = m.contractor
			}
		} else if !idFields[k] {
			m.deal[k] = v
			continue
		}
		if n, ok := number(v); ok {
			target[field] = n
		} else {
			m.notes = append(m.notes, k+": "+v)
		}
	}
	return m
}

var numberRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// number reads "1 500,50" or "1500.50" as a JSON number.
func number(s string) (json.Number, bool) {
	s = strings.ReplaceAll(strings.Join(strings.Fields(s), ""), ",", ".")
	return json.Number(s), numberRE.MatchString(s)
}

// Send creates the contractor (unless company is set) and the deal, and
// returns the deal's id.
func (f *FreshOffice) Send(ctx context.Context, l *lead.Lead) (string, error) {
	m := mapCRM(l.CRM)
	phone := lead.NormalizePhone(l.Phone, "")
	var head []string
	companyID, fixed := m.deal["company_id"]
	if !fixed && f.Company > 0 {
		companyID, fixed = json.Number(strconv.FormatInt(f.Company, 10)), true
	}
	if fixed {
		// No contractor of its own: the contact travels in the note.
		head = contactLines(l.Name, phone, l.Email)
	} else {
		id, err := f.contractor(ctx, l, phone, m.contractor)
		if err != nil {
			return "", fmt.Errorf("create contractor: %w", err)
		}
		companyID = idValue(id)
	}

	created := l.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	day := created.In(f.loc)
	deal := map[string]any{
		"name":        title(l),
		"company_id":  companyID,
		"type_id":     f.DealType,
		"status_id":   f.Status,
		"user_id":     f.Manager,
		"date_start":  day.Format(time.DateOnly),
		"date_finish": day.AddDate(0, 0, 1).Format(time.DateOnly), // the span of the vendor's example
		"note":        note(head, l.Summary(), m.notes),
	}
	for k, v := range m.deal {
		deal[k] = v
	}
	id, _, err := f.insert(ctx, "/deal/insert", deal)
	if err != nil {
		return "", fmt.Errorf("create deal: %w", err)
	}
	f.pending.drop(l.ID)
	return id, nil
}

// Preview is what Send would send for l (the dry run), each insert
// answered with FreshOffice's standard success object (example ids).
func (f *FreshOffice) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, f, l, func(req *http.Request, _ []byte) *crm.Response {
		id := "1000002"
		if strings.HasSuffix(req.URL.Path, "/company/insert") {
			id = "1000001"
		}
		return crm.JSONAnswer(`{"status":"success","error":null,"code":"0","rows":1,"pages":1,"page":1,"value":"` + id + `"}`)
	}, f.token)
}

// contractor creates the lead's contractor, or returns the one created for
// it by an earlier attempt whose deal failed.
func (f *FreshOffice) contractor(ctx context.Context, l *lead.Lead, phone string, extra map[string]any) (string, error) {
	if id, ok := f.pending.get(l.ID); ok {
		return id, nil
	}
	body := map[string]any{"name": displayName(l.Name, phone, l.Email)}
	if phone != "" {
		body["phones"] = []map[string]string{{"phone": phone}}
	}
	if l.Email != "" {
		body["emails"] = []map[string]string{{"email": l.Email}}
	}
	for k, v := range extra {
		body[k] = v
	}
	id, status, err := f.insert(ctx, "/company/insert", body)
	if err != nil {
		return "", err
	}
	if id == "" {
		// Retrying would create another contractor per attempt.
		return "", lead.Permanent(status, "contractor created but the answer carries no id in value; set the company option to attach deals to an existing contractor")
	}
	if !crm.Recording(ctx) { // a preview created nothing
		f.pending.put(l.ID, id)
	}
	return id, nil
}

// insert posts one object and reads FreshOffice's standard answer, returning
// the new id (from value) and the HTTP status.
func (f *FreshOffice) insert(ctx context.Context, path string, obj map[string]any) (string, int, error) {
	resp, err := crm.DoJSON(ctx, f.Client(), http.MethodPost, f.BaseURL+path, obj, crm.Bearer(f.token))
	if err != nil {
		return "", 0, err
	}
	id, err := readAnswer(resp)
	return id, resp.Status, err
}

// answer is FreshOffice's standard response object:
// {"status":"success","error":null,"code":"0","rows":1,"pages":1,"page":1,"value":"1"}.
type answer struct {
	Status  *string         `json:"status"`
	Error   json.RawMessage `json:"error"`
	Code    json.RawMessage `json:"code"`
	Message string          `json:"message"`
	Value   json.RawMessage `json:"value"`
}

// readAnswer classifies resp and returns the id it carries.
func readAnswer(resp *crm.Response) (string, error) {
	var a answer
	jsonErr := json.Unmarshal(resp.Body, &a)
	if resp.Status < 200 || resp.Status >= 300 {
		msg := ""
		if jsonErr == nil {
			msg = a.message()
		}
		return "", crm.Classify(resp, msg)
	}
	if jsonErr != nil {
		return "", crm.Unparsable(resp, jsonErr)
	}
	if a.Status == nil {
		return "", crm.Unparsable(resp, errors.New("no status in answer"))
	}
	if msg := a.message(); !strings.EqualFold(*a.Status, "success") || msg != "" {
		if msg == "" {
			msg = "status " + *a.Status
		}
		return "", lead.Permanent(resp.Status, msg)
	}
	return valueID(a.Value), nil
}

// message reads the error in any of the shapes FreshOffice's two APIs use.
func (a *answer) message() string {
	msg := a.Message
	if m := rawMessage(a.Error); m != "" {
		msg = m
	}
	if code := strings.Trim(string(a.Code), `" `); msg != "" && code != "" && code != "0" && code != "null" {
		msg += " (code " + code + ")"
	}
	return msg
}

// rawMessage turns an "error" member into text: a string, or an object with
// message (a string or {"value":...}), or the object itself.
func rawMessage(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Message json.RawMessage `json:"message"`
		Value   string          `json:"value"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		if obj.Value != "" {
			return obj.Value
		}
		if m := rawMessage(obj.Message); m != "" {
			return m
		}
	}
	return crm.Excerpt(raw)
}

// valueID reads the id from value: "12", 12, or a JSON string such as
// "[{\"ID\":12}]" (the directories answer that shape).
func valueID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
		s = string(raw) // an object or array in place of the string
	}
	s = strings.TrimSpace(s)
	if s == "" || (s[0] != '{' && s[0] != '[') {
		return s
	}
	var objs []map[string]json.RawMessage
	if json.Unmarshal([]byte(s), &objs) != nil {
		var one map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &one) != nil {
			return ""
		}
		objs = append(objs, one)
	}
	for _, o := range objs {
		for _, k := range []string{"ID", "id", "Id"} {
			if id := valueID(o[k]); id != "" {
				return id
			}
		}
	}
	return ""
}

// idValue sends a numeric id as a number, anything else as a string.
func idValue(id string) any {
	if n, ok := number(id); ok {
		return n
	}
	return id
}

func title(l *lead.Lead) string {
	for _, s := range []string{l.Title, l.Form} {
		if s != "" {
			return s
		}
	}
	return "Заявка с сайта"
}

// displayName names the contractor: the visitor's name, else the contact.
func displayName(name, phone, email string) string {
	for _, s := range []string{name, phone, email} {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return "Контакт с сайта"
}

func contactLines(name, phone, email string) []string {
	var out []string
	for _, kv := range [][2]string{{"Имя", name}, {"Телефон", phone}, {"Email", email}} {
		if kv[1] != "" {
			out = append(out, kv[0]+": "+kv[1])
		}
	}
	return out
}

func note(head []string, summary string, tail []string) string {
	parts := append([]string(nil), head...)
	if summary != "" {
		parts = append(parts, summary)
	}
	return strings.Join(append(parts, tail...), "\n")
}

// Interface guards
var (
	_ caddy.Provisioner     = (*FreshOffice)(nil)
	_ caddyfile.Unmarshaler = (*FreshOffice)(nil)
	_ lead.Sender           = (*FreshOffice)(nil)
	_ lead.Rated            = (*FreshOffice)(nil)
)
