// Package freshofficetest is a fake FreshOffice API 2.0 server: POST
// /company/insert and /deal/insert with a bearer token and JSON bodies,
// answering FreshOffice's standard response object.
//
// Where the reference is confirmed (the deal's required fields and their
// types, the success object) the fake is strict; where it is not (the
// contractor call, error bodies, rate limiting) it is lenient and picks a
// plausible shape, so the adapter is tested against more than one.
package freshofficetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Token is the bearer token the fake accepts; Manager is a user id that
// exists on it.
const (
	Token   = "test-token"
	Manager = 37
)

// ErrorIn200 answers 200 with the standard object carrying an error, the
// shape the [U] reference suggests for errors that pass HTTP.
const ErrorIn200 crmtest.Fault = "200-error"

// Deal is an accepted /deal/insert body.
type Deal struct {
	Name       string
	CompanyID  int64
	TypeID     int64
	StatusID   int64
	UserID     int64
	DateStart  string
	DateFinish string
	Note       string
	ID         string
	Raw        map[string]any // the whole body, numbers as json.Number
}

// Company is an accepted /company/insert body.
type Company struct {
	Name   string
	Phones []string
	Emails []string
	ID     string
	Raw    map[string]any
}

// Fake is a running fake server.
type Fake struct {
	URL    string
	Faults *crmtest.Faults

	srv       *httptest.Server
	deals     crmtest.Log[Deal]
	companies crmtest.Log[Company]
	seq       atomic.Int64
	hits      atomic.Int64
}

// New starts a fake.
func New() *Fake {
	f := &Fake{Faults: &crmtest.Faults{}}
	f.seq.Store(1000)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Caddyfile returns the option lines that point a freshoffice destination
// at this fake.
func (f *Fake) Caddyfile() string {
	return fmt.Sprintf("base_url %s\ntoken %s\nmanager %d", f.URL, Token, Manager)
}

// Deals returns the accepted deals, in order.
func (f *Fake) Deals() []Deal { return f.deals.All() }

// Companies returns the accepted contractors, in order.
func (f *Fake) Companies() []Company { return f.companies.All() }

// Hits counts every request the fake answered, faults included.
func (f *Fake) Hits() int { return int(f.hits.Load()) }

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	// Reading the body first lets the server notice a client that gives up
	// during the Slow fault.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, "error", "Request too large", "")
		return
	}
	if f.fault(w, r) {
		return
	}
	if r.Method != http.MethodPost {
		reply(w, http.StatusMethodNotAllowed, "error", "Method not allowed", "")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token {
		reply(w, http.StatusUnauthorized, "error", "Unauthorized", "")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		reply(w, http.StatusUnsupportedMediaType, "error", "Content-Type must be application/json", "")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil {
		reply(w, http.StatusBadRequest, "error", "Invalid JSON: "+err.Error(), "")
		return
	}
	id := strconv.FormatInt(f.seq.Add(1), 10)
	switch r.URL.Path {
	case "/deal/insert":
		var d Deal
		if d, err = parseDeal(body); err == nil {
			d.ID = id
			f.deals.Add(d)
		}
	case "/company/insert":
		var c Company
		if c, err = parseCompany(body); err == nil {
			c.ID = id
			f.companies.Add(c)
		}
	default:
		reply(w, http.StatusNotFound, "error", "Method not found", "")
		return
	}
	if err != nil {
		reply(w, http.StatusBadRequest, "error", err.Error(), "")
		return
	}
	reply(w, http.StatusOK, "success", "", id)
}

// fault answers the next armed fault, if any.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request) bool {
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		reply(w, http.StatusUnauthorized, "error", "Токен недействителен", "")
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Оплатите подписку FreshOffice")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "Доступ к API запрещён")
	case crmtest.RateJSON:
		w.Header().Set("Retry-After", "7")
		reply(w, http.StatusTooManyRequests, "error", "Превышен лимит запросов", "")
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
	case crmtest.QueryLimit:
		reply(w, http.StatusServiceUnavailable, "error", "Сервер перегружен, повторите запрос позже", "")
	case crmtest.ServerError:
		reply(w, http.StatusInternalServerError, "error", "Внутренняя ошибка сервера", "")
	case crmtest.Slow:
		f.Faults.Wait(r)
		reply(w, http.StatusOK, "success", "", strconv.FormatInt(f.seq.Add(1), 10))
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("Object reference not set to an instance of an object."))
	case crmtest.Validation:
		reply(w, http.StatusBadRequest, "error", "Не заполнено обязательное поле date_finish", "")
	case ErrorIn200:
		reply(w, http.StatusOK, "error", "Статус сделки не относится к типу сделки", "")
	case crmtest.Unavailable:
		crmtest.HTML(w, http.StatusServiceUnavailable, "503 Service Unavailable")
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		return false
	}
	return true
}

// reply writes the standard response object.
func reply(w http.ResponseWriter, status int, state, errMsg, value string) {
	obj := map[string]any{"status": state, "error": nil, "code": "0", "rows": 0, "pages": 0, "page": 0, "value": nil}
	if errMsg != "" {
		obj["error"] = errMsg
		obj["code"] = strconv.Itoa(status)
	}
	if value != "" {
		obj["rows"], obj["pages"], obj["page"], obj["value"] = 1, 1, 1, value
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(obj)
}

// bad builds a validation message as FreshOffice words it (capitalised,
// Russian); it is sent to the client, not handled in Go.
func bad(format string, args ...any) error {
	return vendorError(fmt.Sprintf(format, args...))
}

type vendorError string

func (e vendorError) Error() string { return string(e) }

// parseDeal checks the fields deal/insert requires, with their types.
func parseDeal(b map[string]any) (Deal, error) {
	d := Deal{Raw: b}
	var err error
	if d.Name, err = str(b, "name", true); err != nil {
		return d, err
	}
	for _, f := range []struct {
		key string
		dst *int64
	}{{"company_id", &d.CompanyID}, {"type_id", &d.TypeID}, {"status_id", &d.StatusID}, {"user_id", &d.UserID}} {
		if *f.dst, err = id(b, f.key); err != nil {
			return d, err
		}
	}
	if d.DateStart, err = date(b, "date_start"); err != nil {
		return d, err
	}
	if d.DateFinish, err = date(b, "date_finish"); err != nil {
		return d, err
	}
	if d.DateFinish < d.DateStart {
		return d, bad("date_finish раньше date_start")
	}
	if v, ok := b["sum"]; ok {
		if _, isNum := v.(json.Number); !isNum {
			return d, bad("sum должно быть числом")
		}
	}
	d.Note, err = str(b, "note", false)
	return d, err
}

// parseCompany is lenient ([U]): a name, and phones/emails as lists of
// {"phone"} / {"email"} objects when present.
func parseCompany(b map[string]any) (Company, error) {
	c := Company{Raw: b}
	var err error
	if c.Name, err = str(b, "name", true); err != nil {
		return c, err
	}
	if c.Phones, err = list(b, "phones", "phone"); err != nil {
		return c, err
	}
	c.Emails, err = list(b, "emails", "email")
	return c, err
}

func str(b map[string]any, key string, required bool) (string, error) {
	v, ok := b[key]
	if !ok || v == nil {
		if required {
			return "", bad("Не заполнено обязательное поле %s", key)
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok || (required && s == "") {
		return "", bad("Поле %s должно быть непустой строкой", key)
	}
	return s, nil
}

func id(b map[string]any, key string) (int64, error) {
	n, ok := b[key].(json.Number)
	if !ok {
		return 0, bad("Не заполнено обязательное поле %s (целое число)", key)
	}
	v, err := n.Int64()
	if err != nil || v <= 0 {
		return 0, bad("Поле %s: %q не является идентификатором", key, n)
	}
	return v, nil
}

func date(b map[string]any, key string) (string, error) {
	s, err := str(b, key, true)
	if err != nil {
		return "", err
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return "", bad("Поле %s: ожидается дата ГГГГ-ММ-ДД, получено %q", key, s)
	}
	return s, nil
}

func list(b map[string]any, key, member string) ([]string, error) {
	v, ok := b[key]
	if !ok {
		return nil, nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, bad("Поле %s должно быть массивом", key)
	}
	var out []string
	for _, it := range items {
		obj, _ := it.(map[string]any)
		s, _ := obj[member].(string)
		if s == "" {
			return nil, bad("Поле %s: у элемента нет %s", key, member)
		}
		out = append(out, s)
	}
	return out, nil
}
