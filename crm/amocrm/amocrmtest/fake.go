// Package amocrmtest is a fake amoCRM / Kommo account (API v4) for tests:
// POST /api/v4/leads/complex and POST /api/v4/leads/{id}/notes, checked
// the way amoCRM checks them, answered with its documented bodies, and
// each crmtest.Fault rendered the way amoCRM (or its gateway) fails.
package amocrmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Token is the long-lived token the fake accepts unless Fake.Token is changed.
const Token = "test-long-lived-token"

// Lead is one lead of an accepted leads/complex request, as amoCRM reads it.
type Lead struct {
	Name               string       `json:"name"`
	Price              *int64       `json:"price"`
	PipelineID         int64        `json:"pipeline_id"`
	StatusID           int64        `json:"status_id"`
	ResponsibleUserID  int64        `json:"responsible_user_id"`
	CustomFieldsValues []FieldValue `json:"custom_fields_values"`
	Embedded           struct {
		Tags     []Tag     `json:"tags"`
		Contacts []Contact `json:"contacts"`
	} `json:"_embedded"`
	RequestID string `json:"request_id"`

	ID        int64 `json:"-"` // what the fake gave it
	ContactID int64 `json:"-"`
}

// FieldValue is one custom_fields_values entry.
type FieldValue struct {
	FieldID   int64   `json:"field_id"`
	FieldCode string  `json:"field_code"`
	Values    []Value `json:"values"`
}

// Value is one value of a custom field.
type Value struct {
	Value    any    `json:"value"`
	EnumCode string `json:"enum_code"`
	EnumID   int64  `json:"enum_id"`
}

// Tag is a lead tag, by name or id.
type Tag struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Contact is the embedded contact.
type Contact struct {
	Name               string       `json:"name"`
	FirstName          string       `json:"first_name"`
	LastName           string       `json:"last_name"`
	CustomFieldsValues []FieldValue `json:"custom_fields_values"`
}

// Note is one accepted note.
type Note struct {
	LeadID   int64
	NoteType string
	Text     string
}

// Field returns the first value of the custom field with this id or code.
func Field(fs []FieldValue, idOrCode string) (string, bool) {
	for _, f := range fs {
		if f.FieldCode == idOrCode || strconv.FormatInt(f.FieldID, 10) == idOrCode {
			if len(f.Values) > 0 {
				return fmt.Sprint(f.Values[0].Value), true
			}
		}
	}
	return "", false
}

// Fake is a running fake account.
type Fake struct {
	URL    string
	Token  string
	Faults *crmtest.Faults
	// NoTracking makes the account reject the UTM_* field codes, as an
	// account without the tracking fields would.
	NoTracking bool

	srv   *httptest.Server
	leads crmtest.Log[Lead]
	notes crmtest.Log[Note]
	mu    sync.Mutex
	next  int64
	known map[int64]bool
}

// New starts a fake account.
func New() *Fake {
	f := &Fake{Token: Token, Faults: &crmtest.Faults{}, next: 9774765, known: map[int64]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Leads returns the leads accepted so far, in order.
func (f *Fake) Leads() []Lead { return f.leads.All() }

// Notes returns the notes accepted so far, in order.
func (f *Fake) Notes() []Note { return f.notes.All() }

// Caddyfile returns the options of a destination block pointing at the fake.
func (f *Fake) Caddyfile() string {
	return "base_url " + f.URL + "\ntoken " + f.Token
}

func (f *Fake) id() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	return f.next
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	// Reading the body first lets the server notice a client that gives up.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if f.fault(w, r) {
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+f.Token {
		problem(w, 401, "Unauthorized", "Invalid user name or password", nil)
		return
	}
	var leadID int64
	switch {
	case r.URL.Path == "/api/v4/leads/complex":
	case strings.HasPrefix(r.URL.Path, "/api/v4/leads/") && strings.HasSuffix(r.URL.Path, "/notes"):
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v4/leads/"), "/notes"), 10, 64)
		if err != nil {
			problem(w, 404, "Not Found", "Page not found", nil)
			return
		}
		leadID = id
	default:
		problem(w, 404, "Not Found", "Page not found", nil)
		return
	}
	if r.Method != http.MethodPost {
		problem(w, 405, "Method Not Allowed", "Method not allowed", nil)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		problem(w, 400, "Bad Request", "Content-Type must be application/json", nil)
		return
	}
	if leadID != 0 {
		f.addNotes(w, leadID, body)
		return
	}
	f.addLeads(w, body)
}

// fieldError is one entry of validation-errors[].errors.
type fieldError struct {
	Code   string `json:"code"`
	Path   string `json:"path"`
	Detail string `json:"detail"`
}

func (f *Fake) addLeads(w http.ResponseWriter, body []byte) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		problem(w, 400, "Bad Request", "Request body must be an array", nil)
		return
	}
	if len(raw) == 0 || len(raw) > 50 {
		problem(w, 400, "Bad Request", "Request must contain from 1 to 50 entities", nil)
		return
	}
	leads := make([]Lead, len(raw))
	var verrs []any
	for i, m := range raw {
		errs := f.checkLead(m, &leads[i])
		if len(errs) > 0 {
			verrs = append(verrs, map[string]any{"request_id": strconv.Itoa(i), "errors": errs})
		}
	}
	if len(verrs) > 0 {
		problem(w, 400, "Bad Request", "Request validation failed", verrs)
		return
	}
	out := make([]map[string]any, len(leads))
	for i := range leads {
		l := &leads[i]
		l.ID = f.id()
		rid := l.RequestID
		if rid == "" {
			rid = strconv.Itoa(i)
		}
		out[i] = map[string]any{"id": l.ID, "contact_id": nil, "company_id": nil, "request_id": []string{rid}, "merged": false}
		if len(l.Embedded.Contacts) > 0 {
			l.ContactID = f.id()
			out[i]["contact_id"] = l.ContactID
		}
		f.mu.Lock()
		f.known[l.ID] = true
		f.mu.Unlock()
		f.leads.Add(*l)
	}
	writeJSON(w, 200, "application/hal+json", out)
}

// checkLead decodes one lead strictly (ids and price must be numbers) and
// returns amoCRM-style field errors.
func (f *Fake) checkLead(m json.RawMessage, l *Lead) []fieldError {
	if err := json.Unmarshal(m, l); err != nil {
		return []fieldError{{Code: "InvalidType", Path: jsonPath(err), Detail: "This value should be of another type."}}
	}
	var errs []fieldError
	errs = append(errs, f.checkFields("custom_fields_values", l.CustomFieldsValues)...)
	if len(l.Embedded.Contacts) > 1 {
		errs = append(errs, fieldError{"TooManyEntities", "_embedded.contacts", "Only one contact is allowed."})
	}
	for i, c := range l.Embedded.Contacts {
		errs = append(errs, f.checkFields(fmt.Sprintf("_embedded.contacts.%d.custom_fields_values", i), c.CustomFieldsValues)...)
	}
	for i, t := range l.Embedded.Tags {
		if t.ID == 0 && strings.TrimSpace(t.Name) == "" {
			errs = append(errs, fieldError{"NotBlank", fmt.Sprintf("_embedded.tags.%d.name", i), "This value should not be blank."})
		}
	}
	return errs
}

func (f *Fake) checkFields(path string, fs []FieldValue) []fieldError {
	var errs []fieldError
	if len(fs) > 40 {
		errs = append(errs, fieldError{"TooManyValues", path, "Not more than 40 custom fields values."})
	}
	for i, fv := range fs {
		p := fmt.Sprintf("%s.%d", path, i)
		switch {
		case fv.FieldID == 0 && fv.FieldCode == "":
			errs = append(errs, fieldError{"NotBlank", p + ".field_id", "field_id or field_code is required."})
		case fv.FieldID < 0:
			errs = append(errs, fieldError{"NotSupportedChoice", p + ".field_id", "The value you selected is not a valid choice."})
		case f.NoTracking && strings.HasPrefix(fv.FieldCode, "UTM_"):
			errs = append(errs, fieldError{"NotSupportedChoice", p + ".field_code", "The value you selected is not a valid choice."})
		}
		if len(fv.Values) == 0 {
			errs = append(errs, fieldError{"NotBlank", p + ".values", "This value should not be blank."})
		}
		for j, v := range fv.Values {
			if v.Value == nil || v.Value == "" {
				errs = append(errs, fieldError{"NotBlank", fmt.Sprintf("%s.values.%d.value", p, j), "This value should not be blank."})
			}
		}
	}
	return errs
}

func (f *Fake) addNotes(w http.ResponseWriter, leadID int64, body []byte) {
	f.mu.Lock()
	known := f.known[leadID]
	f.mu.Unlock()
	if !known {
		problem(w, 404, "Not Found", "Entity not found", nil)
		return
	}
	var notes []struct {
		NoteType string `json:"note_type"`
		Params   struct {
			Text string `json:"text"`
		} `json:"params"`
	}
	if err := json.Unmarshal(body, &notes); err != nil || len(notes) == 0 {
		problem(w, 400, "Bad Request", "Request body must be an array", nil)
		return
	}
	var out []map[string]any
	for i, n := range notes {
		if n.NoteType != "common" || n.Params.Text == "" {
			problem(w, 400, "Bad Request", "Request validation failed", []any{map[string]any{
				"request_id": strconv.Itoa(i),
				"errors":     []fieldError{{"NotBlank", "params.text", "This value should not be blank."}},
			}})
			return
		}
		id := f.id()
		f.notes.Add(Note{LeadID: leadID, NoteType: n.NoteType, Text: n.Params.Text})
		out = append(out, map[string]any{"id": id, "entity_id": leadID, "request_id": strconv.Itoa(i)})
	}
	writeJSON(w, 200, "application/hal+json", map[string]any{"_total_items": len(out), "_embedded": map[string]any{"notes": out}})
}

// fault answers the armed fault the way amoCRM does; false if none.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request) bool {
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		problem(w, 401, "Unauthorized", "Invalid user name or password", nil)
	case crmtest.PaymentHTML:
		crmtest.HTML(w, 402, "402 Payment Required")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, 403, "403 Forbidden")
	case crmtest.RateJSON:
		writeJSON(w, 429, "application/problem+json", map[string]any{
			"title": "Too Many Requests", "type": "https://httpstatus.es/429", "status": 429,
			"detail": "Too many requests", "retry_after": 300,
		})
	case crmtest.RateHTML:
		crmtest.HTML(w, 429, "429 Too Many Requests")
	case crmtest.QueryLimit, crmtest.Unavailable:
		crmtest.HTML(w, 503, "503 Service Temporarily Unavailable")
	case crmtest.ServerError:
		writeJSON(w, 500, "application/problem+json", map[string]any{
			"title": "ErrInternalServer", "type": "https://httpstatus.es/500", "status": 500,
			"detail": "Internal server error", "trace_id": "4f2a9c1e0b",
		})
	case crmtest.Slow:
		f.Faults.Wait(r)
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "application/hal+json")
		w.WriteHeader(200)
		io.WriteString(w, `<html><body>Bad Gateway</body></html>`)
	case crmtest.Validation:
		problem(w, 400, "Bad Request", "Request validation failed", []any{map[string]any{
			"request_id": "0",
			"errors":     []fieldError{{"NotSupportedChoice", "custom_fields_values.0.field_id", "The value you selected is not a valid choice."}},
		}})
	case crmtest.Reset:
		crmtest.ResetConn(w)
	}
	return true
}

// problem writes amoCRM's application/problem+json error.
func problem(w http.ResponseWriter, status int, title, detail string, validation []any) {
	body := map[string]any{"title": title, "type": "https://httpstatus.es/" + strconv.Itoa(status), "status": status, "detail": detail}
	if validation != nil {
		body["validation-errors"] = validation
	}
	writeJSON(w, status, "application/problem+json", body)
}

func writeJSON(w http.ResponseWriter, status int, ctype string, v any) {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(v)
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// jsonPath names the field of a decoding error, as amoCRM's path does.
func jsonPath(err error) string {
	if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
		return te.Field
	}
	return ""
}
