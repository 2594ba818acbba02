// Package bitrix24test is a fake Bitrix24 portal for tests: an inbound
// webhook /rest/<user>/<code>/<method>[.json] taking JSON, form-encoded,
// multipart or query parameters (PHP bracket notation), with crm.lead.add,
// crm.contact.add, crm.deal.add, crm.duplicate.findbycomm and
// crm.contact.get; errors come as {"error","error_description"} with the
// statuses Bitrix24 uses, and each crmtest.Fault the way Bitrix24 (or its
// front proxy) fails.
package bitrix24test

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Fields is the decoded `fields` parameter of a create call.
type Fields map[string]any

// Str returns a field as text ("" when absent).
func (f Fields) Str(key string) string {
	switch v := f[key].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// Multi returns the VALUEs and VALUE_TYPEs of a multi-field (PHONE, EMAIL).
func (f Fields) Multi(key string) (values, types []string) {
	list, _ := f[key].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		values = append(values, fmt.Sprint(m["VALUE"]))
		types = append(types, fmt.Sprint(m["VALUE_TYPE"]))
	}
	return values, types
}

// Fake is a running fake portal.
type Fake struct {
	URL    string
	User   string // webhook user id, "1"
	Code   string // webhook code
	Entity string // what Caddyfile() configures: "lead" (default) or "deal"
	Faults *crmtest.Faults

	srv      *httptest.Server
	mu       sync.Mutex
	next     int
	calls    []string
	errs     []vendorError
	leads    crmtest.Log[Fields]
	contacts crmtest.Log[Fields]
	deals    crmtest.Log[Fields]
	people   map[string]Fields // contact id → fields, for lookups
}

type vendorError struct {
	status            int
	code, description string
}

// New starts a fake portal.
func New() *Fake {
	f := &Fake{User: "1", Code: "x7k2m9q4w8e1r5t3", Entity: "lead", Faults: &crmtest.Faults{}, next: 3464, people: map[string]Fields{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// WebhookURL is the fake's inbound webhook.
func (f *Fake) WebhookURL() string { return f.URL + "/rest/" + f.User + "/" + f.Code + "/" }

// Caddyfile returns the options of a destination block pointing at the fake.
func (f *Fake) Caddyfile() string {
	return "webhook_url " + f.WebhookURL() + "\nentity " + f.Entity
}

// Leads, Contacts and Deals return the accepted create calls' fields.
func (f *Fake) Leads() []Fields    { return f.leads.All() }
func (f *Fake) Contacts() []Fields { return f.contacts.All() }
func (f *Fake) Deals() []Fields    { return f.deals.All() }

// Calls returns the method of every request that reached a method, in order.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// AddContact puts an existing contact in the portal and returns its id.
func (f *Fake) AddContact(fields Fields) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store(fields)
}

// FailNext makes the next request answer {"error":code,"error_description":
// description} with status: vendor answers that are not a crmtest.Fault.
func (f *Fake) FailNext(status int, code, description string) {
	f.mu.Lock()
	f.errs = append(f.errs, vendorError{status, code, description})
	f.mu.Unlock()
}

// store keeps a record under a fresh id; f.mu must be held.
func (f *Fake) store(fields Fields) string {
	f.next++
	id := strconv.Itoa(f.next)
	if fields != nil {
		f.people[id] = fields
	}
	return id
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	params, perr := readParams(r) // read first, so a client that gives up is noticed
	if f.fault(w, r) {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/rest/"+f.User+"/"+f.Code+"/")
	if !ok || strings.Contains(rest, "/") {
		vendor(w, 401, "NO_AUTH_FOUND", "Wrong authorization data")
		return
	}
	method := strings.TrimSuffix(rest, ".json")
	f.mu.Lock()
	f.calls = append(f.calls, method)
	f.mu.Unlock()
	if perr != nil {
		vendor(w, 400, "INVALID_REQUEST", perr.Error())
		return
	}
	switch method {
	case "crm.lead.add":
		f.add(w, params, &f.leads, false)
	case "crm.contact.add":
		f.add(w, params, &f.contacts, true)
	case "crm.deal.add":
		f.add(w, params, &f.deals, false)
	case "crm.duplicate.findbycomm":
		f.findByComm(w, params)
	case "crm.contact.get":
		f.contactGet(w, params)
	default:
		vendor(w, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
	}
}

func (f *Fake) add(w http.ResponseWriter, params map[string]any, log *crmtest.Log[Fields], person bool) {
	fields, ok := params["fields"].(map[string]any)
	if !ok {
		vendor(w, 400, "", "Parameter 'fields' must be array.")
		return
	}
	for _, k := range []string{"PHONE", "EMAIL"} {
		if err := checkMulti(k, fields[k]); err != "" {
			vendor(w, 400, "", err)
			return
		}
	}
	f.mu.Lock()
	var id string
	if person {
		id = f.store(fields)
	} else {
		id = f.store(nil)
	}
	f.mu.Unlock()
	log.Add(fields)
	n, _ := strconv.Atoi(id)
	success(w, n)
}

// checkMulti checks a multi-field: a list of {VALUE, VALUE_TYPE}.
func checkMulti(key string, v any) string {
	if v == nil {
		return ""
	}
	list, ok := v.([]any)
	if !ok {
		return fmt.Sprintf("Field '%s' must be array.", key)
	}
	for _, x := range list {
		m, ok := x.(map[string]any)
		if s, _ := m["VALUE"].(string); !ok || strings.TrimSpace(s) == "" {
			return fmt.Sprintf("Field '%s' has an empty or malformed VALUE.", key)
		}
	}
	return ""
}

func (f *Fake) findByComm(w http.ResponseWriter, params map[string]any) {
	typ, _ := params["type"].(string)
	if typ != "PHONE" && typ != "EMAIL" {
		vendor(w, 400, "Communication type is not defined", "Parameter 'type' is required.")
		return
	}
	entity, _ := params["entity_type"].(string)
	if entity != "CONTACT" && entity != "LEAD" && entity != "COMPANY" {
		vendor(w, 400, "Entity type is not defined", "Parameter 'entity_type' is required.")
		return
	}
	values, _ := params["values"].([]any)
	if len(values) == 0 || len(values) > 20 {
		vendor(w, 400, "", "Parameter 'values' must be an array of 1 to 20 items.")
		return
	}
	var ids []int
	f.mu.Lock()
	if entity == "CONTACT" {
		for id, p := range f.people {
			have, _ := p.Multi(typ)
			for _, h := range have {
				for _, v := range values {
					if h == fmt.Sprint(v) {
						n, _ := strconv.Atoi(id)
						ids = append(ids, n)
					}
				}
			}
		}
	}
	f.mu.Unlock()
	sort.Ints(ids)
	if len(ids) == 0 {
		writeJSON(w, 200, map[string]any{"result": []any{}, "time": timing()}) // PHP's empty array
		return
	}
	writeJSON(w, 200, map[string]any{"result": map[string]any{entity: ids}, "time": timing()})
}

func (f *Fake) contactGet(w http.ResponseWriter, params map[string]any) {
	id := fmt.Sprint(params["id"])
	f.mu.Lock()
	p, ok := f.people[id]
	f.mu.Unlock()
	if !ok {
		vendor(w, 400, "", "Not found")
		return
	}
	out := map[string]any{"ID": id}
	for k, v := range p {
		out[k] = v
	}
	out["ASSIGNED_BY_ID"] = p.Str("ASSIGNED_BY_ID") // Bitrix24 answers ids as strings
	writeJSON(w, 200, map[string]any{"result": out, "time": timing()})
}

// fault answers the armed fault or vendor error; false if none.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	var ve *vendorError
	if len(f.errs) > 0 {
		ve = &f.errs[0]
		f.errs = f.errs[1:]
	}
	f.mu.Unlock()
	if ve != nil {
		vendor(w, ve.status, ve.code, ve.description)
		return true
	}
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		vendor(w, 401, "NO_AUTH_FOUND", "Wrong authorization data")
	case crmtest.PaymentHTML:
		crmtest.HTML(w, 402, "402 Payment Required")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, 403, "403 Forbidden")
	case crmtest.RateJSON:
		vendor(w, 429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
	case crmtest.RateHTML:
		crmtest.HTML(w, 429, "429 Too Many Requests")
	case crmtest.QueryLimit:
		vendor(w, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	case crmtest.Unavailable:
		crmtest.HTML(w, 503, "503 Service Unavailable")
	case crmtest.ServerError:
		vendor(w, 500, "INTERNAL_SERVER_ERROR", "Internal server error")
	case crmtest.Slow:
		f.Faults.Wait(r)
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(200)
		io.WriteString(w, "<!DOCTYPE html><html><body>Битрикс24: техническое обслуживание</body></html>")
	case crmtest.Validation:
		vendor(w, 400, "", "Parameter 'fields' must be array.")
	case crmtest.Reset:
		crmtest.ResetConn(w)
	}
	return true
}

// readParams reads the call's parameters from the query and the body
// (JSON, urlencoded or multipart), top-level keys lower-cased: Bitrix24
// takes fields and FIELDS alike.
func readParams(r *http.Request) (map[string]any, error) {
	out := map[string]any{}
	merge := func(vals url.Values) {
		for k, vs := range vals {
			for _, v := range vs {
				setPath(out, bracketPath(k), v)
			}
		}
	}
	merge(r.URL.Query())
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case r.Method == http.MethodGet:
	case mt == "application/json":
		var body map[string]any
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			return nil, fmt.Errorf("wrong JSON body: %v", err)
		}
		for k, v := range body {
			out[k] = v
		}
	case mt == "application/x-www-form-urlencoded", mt == "multipart/form-data":
		if err := r.ParseMultipartForm(1 << 20); err != nil && err != http.ErrNotMultipart {
			return nil, err
		}
		merge(r.PostForm)
	default:
		io.Copy(io.Discard, r.Body)
	}
	lower := map[string]any{}
	for k, v := range out {
		lower[strings.ToLower(k)] = normalize(v)
	}
	return lower, nil
}

// bracketPath splits "fields[PHONE][0][VALUE]" into its segments.
func bracketPath(key string) []string {
	head, rest, _ := strings.Cut(key, "[")
	segs := []string{head}
	for rest != "" {
		seg, after, _ := strings.Cut(rest, "]")
		segs = append(segs, seg)
		rest = strings.TrimPrefix(after, "[")
	}
	return segs
}

func setPath(m map[string]any, segs []string, v string) {
	for _, s := range segs[:len(segs)-1] {
		next, ok := m[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[s] = next
		}
		m = next
	}
	m[segs[len(segs)-1]] = v
}

// normalize turns maps keyed 0..n-1 into lists, as PHP arrays read in JSON.
func normalize(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		if l, ok := v.([]any); ok {
			for i := range l {
				l[i] = normalize(l[i])
			}
		}
		return v
	}
	for k := range m {
		m[k] = normalize(m[k])
	}
	list := make([]any, len(m))
	for k, x := range m {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= len(m) {
			return m
		}
		list[i] = x
	}
	if len(m) == 0 {
		return m
	}
	return list
}

func timing() map[string]any {
	now := float64(time.Now().UnixMilli()) / 1000
	return map[string]any{"start": now, "finish": now + 0.02, "duration": 0.02, "processing": 0.01,
		"date_start": time.Now().Format(time.RFC3339), "date_finish": time.Now().Format(time.RFC3339),
		"operating_reset_at": int64(now) + 600, "operating": 0.01}
}

func success(w http.ResponseWriter, id int) {
	writeJSON(w, 200, map[string]any{"result": id, "time": timing()})
}

// vendor writes Bitrix24's error body.
func vendor(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}
