// Package moyskladtest is a fake MoySklad JSON API 1.2 for tests. It checks
// requests as MoySklad does: Bearer token, the mandatory
// "Accept-Encoding: gzip" (415 with an empty body otherwise), a JSON body,
// required fields (error 3000, HTTP 412), meta hrefs on api.moysklad.ru
// (1059) of the right type with UUID ids, attribute value types; it replays
// a known syncId instead of creating twice, and answers gzip-compressed JSON
// or the fault a test armed, with MoySklad's error array and X-Lognex-*
// headers.
//
// Lenient where the docs leave it open: the HTTP status of error 3000 (412
// is used), whether referenced ids exist (only their format is checked), and
// the exact filter matching (plain equality on phone, email and uid).
package moyskladtest

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Values the fake account knows.
const (
	Token        = "test-token"
	Organization = "850c8195-f504-11e5-8a84-bae50000015e"
	// Employee is the login of an employee the fake knows, with EmployeeID.
	Employee   = "manager@demo"
	EmployeeID = "faba7f37-2e58-11e6-8a84-bae500000028"

	apiRoot  = "/api/remap/1.2"
	hrefBase = "https://api.moysklad.ru" + apiRoot
)

// Parallel is a MoySklad-only fault: 429 with error 1073 (too many
// parallel requests), which carries no X-Lognex-Retry-After.
const Parallel crmtest.Fault = "429-parallel"

// Meta and Ref are MoySklad references, as sent.
type (
	Meta struct {
		Href      string `json:"href"`
		Type      string `json:"type"`
		MediaType string `json:"mediaType"`
	}
	Ref struct {
		Meta Meta `json:"meta"`
	}
)

// Counterparty is a counterparty the fake created.
type Counterparty struct {
	ID          string   `json:"-"`
	Name        string   `json:"name"`
	CompanyType string   `json:"companyType"`
	Phone       string   `json:"phone"`
	Email       string   `json:"email"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	SyncID      string   `json:"syncId"`
}

// Position is a line of an order, as sent.
type Position struct {
	Quantity   float64  `json:"quantity"`
	Price      *float64 `json:"price"`
	Discount   *float64 `json:"discount"`
	VAT        *int     `json:"vat"`
	Assortment *Ref     `json:"assortment"`
}

// Attribute is an additional field's value, as sent.
type Attribute struct {
	Meta  Meta `json:"meta"`
	Value any  `json:"value"`
}

// CustomerOrder is an order the fake created.
type CustomerOrder struct {
	ID           string `json:"-"`
	Name         string `json:"-"`
	Organization *Ref   `json:"organization"`
	Agent        *Ref   `json:"agent"`
	State        *Ref   `json:"state"`
	Store        *Ref   `json:"store"`
	Project      *Ref   `json:"project"`
	Contract     *Ref   `json:"contract"`
	Owner        *Ref   `json:"owner"`
	Rate         *struct {
		Currency *Ref `json:"currency"`
	} `json:"rate"`
	Description string      `json:"description"`
	Positions   []Position  `json:"positions"`
	Attributes  []Attribute `json:"attributes"`
	SyncID      string      `json:"syncId"`
	// Raw is the whole order object as sent.
	Raw map[string]any `json:"-"`
}

// Fake is a running fake MoySklad.
type Fake struct {
	URL    string
	Faults *crmtest.Faults

	srv            *httptest.Server
	counterparties crmtest.Log[Counterparty]
	orders         crmtest.Log[CustomerOrder]
	requests       crmtest.Log[string]

	mu     sync.Mutex
	bySync map[string]any // syncId → the created entity's JSON view
	cps    []Counterparty
}

// New starts a fake MoySklad; its API root is URL + "/api/remap/1.2".
func New() *Fake {
	f := &Fake{Faults: &crmtest.Faults{}, bySync: map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Counterparties returns the counterparties created through the API.
func (f *Fake) Counterparties() []Counterparty { return f.counterparties.All() }

// Orders returns the customer orders created through the API.
func (f *Fake) Orders() []CustomerOrder { return f.orders.All() }

// Requests returns "METHOD /path?query" of every request, in order.
func (f *Fake) Requests() []string { return f.requests.All() }

// AddCounterparty makes a counterparty exist, as if made in the UI.
func (f *Fake) AddCounterparty(c Counterparty) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.ID == "" {
		c.ID = newID()
	}
	f.cps = append(f.cps, c)
	return c.ID
}

// Caddyfile returns the option lines that point a moysklad destination here.
func (f *Fake) Caddyfile() string {
	return "base_url " + f.URL + "\ntoken " + Token + "\norganization " + Organization
}

// apiError is one element of MoySklad's "errors" array.
type apiError struct {
	Error     string `json:"error"`
	Parameter string `json:"parameter,omitempty"`
	Code      int    `json:"code,omitempty"`
	MoreInfo  string `json:"moreInfo,omitempty"`
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(r.Method + " " + r.URL.RequestURI())
	// Read the body first: the server notices a client that gives up on a
	// Slow fault only once the body is consumed.
	body, _ := io.ReadAll(r.Body)
	if f.fault(w, r) {
		return
	}
	if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token {
		authFail(w)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, apiRoot)
	if !ok {
		fail(w, http.StatusNotFound, apiError{Error: "Неопознанный путь: " + r.URL.Path, Code: 1002})
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "/entity/counterparty":
		f.findCounterparty(w, r)
	case r.Method == http.MethodGet && path == "/entity/employee":
		f.findEmployee(w, r)
	case r.Method == http.MethodPost && (path == "/entity/counterparty" || path == "/entity/customerorder"):
		obj, ok := decodeObject(w, r, body)
		if !ok {
			return
		}
		if path == "/entity/counterparty" {
			f.createCounterparty(w, body, obj)
		} else {
			f.createOrder(w, body, obj)
		}
	default:
		fail(w, http.StatusMethodNotAllowed, apiError{Error: "Операция " + r.Method + " не поддерживается для данного ресурса", Code: 1039})
	}
}

func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		coding, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(coding, "gzip") {
			return true
		}
	}
	return false
}

func authFail(w http.ResponseWriter) {
	w.Header().Set("X-Lognex-Auth", "1056")
	w.Header().Set("X-Lognex-Auth-Message", "Неверный токен доступа")
	fail(w, http.StatusUnauthorized, apiError{Error: "Ошибка аутентификации: Неверный токен доступа", Code: 1056})
}

// decodeObject checks the content type and that the body is one JSON object.
func decodeObject(w http.ResponseWriter, r *http.Request, body []byte) (map[string]any, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		fail(w, http.StatusUnsupportedMediaType, apiError{Error: "Неверно указан Content-Type запроса", Code: 1037})
		return nil, false
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		fail(w, http.StatusBadRequest, apiError{Error: "Ошибка формата: входящий запрос не соответствует формату JSON", Code: 2001})
		return nil, false
	}
	return obj, true
}

// filterValue returns the value of "<field>=<value>" in ?filter=, the only
// form the adapter uses.
func filterValue(w http.ResponseWriter, r *http.Request, allowed ...string) (field, value string, ok bool) {
	field, value, found := strings.Cut(r.URL.Query().Get("filter"), "=")
	for _, a := range allowed {
		if found && field == a {
			return field, value, true
		}
	}
	fail(w, http.StatusBadRequest, apiError{Error: "Ошибка фильтрации: " + r.URL.Query().Get("filter"), Code: 1034})
	return "", "", false
}

func (f *Fake) findCounterparty(w http.ResponseWriter, r *http.Request) {
	field, value, ok := filterValue(w, r, "phone", "email")
	if !ok {
		return
	}
	var rows []any
	f.mu.Lock()
	for _, c := range f.cps {
		if (field == "phone" && c.Phone == value) || (field == "email" && c.Email == value) {
			rows = append(rows, view("counterparty", c.ID, map[string]any{"name": c.Name}))
		}
	}
	f.mu.Unlock()
	writeList(w, "counterparty", rows)
}

func (f *Fake) findEmployee(w http.ResponseWriter, r *http.Request) {
	_, value, ok := filterValue(w, r, "uid")
	if !ok {
		return
	}
	var rows []any
	if value == Employee {
		rows = append(rows, view("employee", EmployeeID, map[string]any{"uid": Employee}))
	}
	writeList(w, "employee", rows)
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// replay answers a create whose syncId is known with the first entity.
// The caller holds f.mu from here until it has stored what it creates, so
// two creates with one syncId make one entity.
func (f *Fake) replay(w http.ResponseWriter, syncID string) bool {
	v, ok := f.bySync[syncID]
	if ok && syncID != "" {
		writeJSON(w, http.StatusOK, v)
	}
	return ok && syncID != ""
}

func checkSyncID(obj map[string]any) *apiError {
	s, present := obj["syncId"]
	if !present {
		return nil
	}
	if str, ok := s.(string); !ok || !uuidRe.MatchString(str) {
		return &apiError{Error: "Неверный формат UUID", Parameter: "syncId", Code: 1052}
	}
	return nil
}

func (f *Fake) createCounterparty(w http.ResponseWriter, body []byte, obj map[string]any) {
	var c Counterparty
	json.Unmarshal(body, &c)
	if e := checkSyncID(obj); e != nil {
		fail(w, http.StatusBadRequest, *e)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replay(w, c.SyncID) {
		return
	}
	var errs []apiError
	if strings.TrimSpace(c.Name) == "" {
		errs = append(errs, required("name"))
	}
	switch c.CompanyType {
	case "", "legal", "entrepreneur", "individual":
	default:
		errs = append(errs, apiError{Error: fmt.Sprintf("Ошибка сохранения объекта: неверное значение '%s' поля 'companyType'. Допустимые значения: [legal, entrepreneur, individual]", c.CompanyType), Parameter: "companyType", Code: 3005})
	}
	if c.Email != "" && !emailRe.MatchString(c.Email) {
		errs = append(errs, apiError{Error: fmt.Sprintf("Ошибка валидации: некорректный адрес E-mail: '%s'", c.Email), Parameter: "email", Code: 3015})
	}
	if len(errs) > 0 {
		fail(w, http.StatusPreconditionFailed, errs...)
		return
	}
	c.ID = newID()
	v := view("counterparty", c.ID, map[string]any{"name": c.Name, "companyType": c.CompanyType, "phone": c.Phone, "email": c.Email, "syncId": c.SyncID})
	f.cps = append(f.cps, c)
	if c.SyncID != "" {
		f.bySync[c.SyncID] = v
	}
	f.counterparties.Add(c)
	writeJSON(w, http.StatusOK, v)
}

var emailRe = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

func required(field string) apiError {
	return apiError{Error: fmt.Sprintf("Ошибка сохранения объекта: поле '%s' не может быть пустым или отсутствовать", field),
		Parameter: field, Code: 3000, MoreInfo: hrefBase + "/doc#обработка-ошибок-3000"}
}

// refRule says where a reference field must point.
type refRule struct {
	path  string // href path after the API root, before the id
	typ   string
	multi bool // id may be "<dictionary>/<entry>" (custom directory)
}

func entityRule(typ string) refRule { return refRule{path: "/entity/" + typ + "/", typ: typ} }

var orderRefs = map[string]refRule{
	"organization": entityRule("organization"),
	"agent":        entityRule("counterparty"),
	"state":        {path: "/entity/customerorder/metadata/states/", typ: "state"},
	"store":        entityRule("store"),
	"project":      entityRule("project"),
	"contract":     entityRule("contract"),
	"owner":        entityRule("employee"),
}

// checkMeta validates a meta as MoySklad does: href on api.moysklad.ru
// (1059), of the expected type (1060/2024), ending in a UUID (1052).
func checkMeta(field string, m Meta, rule refRule) *apiError {
	switch {
	case m.Href == "":
		return &apiError{Error: "Ошибка формата: отсутствует href для meta поля '" + field + "'", Parameter: field, Code: 2010}
	case m.Type == "":
		return &apiError{Error: "Ошибка формата: отсутствует type для meta поля '" + field + "'", Parameter: field, Code: 2011}
	case !strings.HasPrefix(m.Href, "https://api.moysklad.ru/"):
		return &apiError{Error: "Некорректный сервер в идентификаторе объекта: '" + m.Href + "'", Parameter: field, Code: 1059}
	case m.Type != rule.typ:
		return &apiError{Error: "Некорректный тип данных в meta сущности, поле type", Parameter: field, Code: 1060}
	}
	id, ok := strings.CutPrefix(m.Href, hrefBase+rule.path)
	if !ok {
		return &apiError{Error: fmt.Sprintf("Ошибка формата: href указывает на сущность неправильного типа, требуется '%s'", rule.typ), Parameter: field, Code: 2024}
	}
	ids := []string{id}
	if rule.multi {
		ids = strings.Split(id, "/")
		if len(ids) != 2 {
			return &apiError{Error: "Ошибка формата: неправильное значение href для meta поля '" + field + "'", Parameter: field, Code: 2013}
		}
	}
	for _, id := range ids {
		if !uuidRe.MatchString(id) {
			return &apiError{Error: "Неверный формат UUID", Parameter: field, Code: 1052}
		}
	}
	return nil
}

// assortment types a position may point to.
var assortment = map[string]bool{"product": true, "service": true, "variant": true, "bundle": true, "consignment": true}

// attribute value JSON types by attribute type; others are directories.
var scalarAttr = map[string]string{"string": "string", "text": "string", "link": "string", "time": "string", "file": "string",
	"long": "integer", "double": "number", "boolean": "boolean"}

// AttributeTypes maps attribute ids to their type in the fake account, so
// the fake can check values; ids not listed accept any value.
var AttributeTypes = map[string]string{
	"5290a290-0313-11e6-9464-e4de00000020": "string",
	"5290a290-0313-11e6-9464-e4de00000021": "long",
	"5290a290-0313-11e6-9464-e4de00000022": "double",
	"5290a290-0313-11e6-9464-e4de00000023": "boolean",
	"5290a290-0313-11e6-9464-e4de00000024": "customentity",
	"5290a290-0313-11e6-9464-e4de00000025": "counterparty",
}

func checkAttribute(i int, a Attribute) *apiError {
	field := fmt.Sprintf("attributes[%d]", i)
	if e := checkMeta(field, a.Meta, refRule{path: "/entity/customerorder/metadata/attributes/", typ: "attributemetadata"}); e != nil {
		return e
	}
	id := strings.TrimPrefix(a.Meta.Href, hrefBase+"/entity/customerorder/metadata/attributes/")
	typ, known := AttributeTypes[id]
	if !known {
		return nil
	}
	bad := &apiError{Error: fmt.Sprintf("Ошибка формата: значение поля '%s' не соответствует типу %s", field, typ), Parameter: field, Code: 2016}
	want, scalar := scalarAttr[typ]
	if !scalar {
		b, _ := json.Marshal(a.Value)
		var r Ref
		if json.Unmarshal(b, &r) != nil {
			return bad
		}
		if e := checkMeta(field+".value", r.Meta, refRule{path: "/entity/" + typ + "/", typ: typ, multi: typ == "customentity"}); e != nil {
			return e
		}
		return nil
	}
	ok := false
	switch v := a.Value.(type) {
	case string:
		ok = want == "string"
	case float64:
		ok = want == "number" || (want == "integer" && v == float64(int64(v)))
	case bool:
		ok = want == "boolean"
	}
	if !ok {
		return bad
	}
	return nil
}

func (f *Fake) createOrder(w http.ResponseWriter, body []byte, obj map[string]any) {
	var o CustomerOrder
	if err := json.Unmarshal(body, &o); err != nil {
		fail(w, http.StatusBadRequest, apiError{Error: "Ошибка формата: " + err.Error(), Code: 2017})
		return
	}
	o.Raw = obj
	if e := checkSyncID(obj); e != nil {
		fail(w, http.StatusBadRequest, *e)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replay(w, o.SyncID) {
		return
	}
	var errs []apiError
	refs := map[string]*Ref{"organization": o.Organization, "agent": o.Agent, "state": o.State, "store": o.Store,
		"project": o.Project, "contract": o.Contract, "owner": o.Owner}
	for _, field := range []string{"organization", "agent", "state", "store", "project", "contract", "owner"} {
		r := refs[field]
		if r == nil {
			if field == "organization" || field == "agent" {
				errs = append(errs, required(field))
			}
			continue
		}
		if e := checkMeta(field, r.Meta, orderRefs[field]); e != nil {
			errs = append(errs, *e)
		}
	}
	if o.Rate != nil {
		if o.Rate.Currency == nil {
			errs = append(errs, required("rate.currency"))
		} else if e := checkMeta("rate.currency", o.Rate.Currency.Meta, entityRule("currency")); e != nil {
			errs = append(errs, *e)
		}
	}
	if len([]rune(o.Description)) > 4096 {
		errs = append(errs, apiError{Error: "Ошибка сохранения объекта: значение поля 'description' слишком длинное", Parameter: "description", Code: 3008})
	}
	for i, p := range o.Positions {
		field := fmt.Sprintf("positions[%d].assortment", i)
		if p.Assortment == nil {
			errs = append(errs, required(field))
			continue
		}
		typ := p.Assortment.Meta.Type
		if !assortment[typ] {
			errs = append(errs, apiError{Error: "Ошибка формата: неизвестный type для meta поля '" + field + "'", Parameter: field, Code: 2012})
		} else if e := checkMeta(field, p.Assortment.Meta, entityRule(typ)); e != nil {
			errs = append(errs, *e)
		}
		if p.Quantity <= 0 {
			errs = append(errs, apiError{Error: fmt.Sprintf("Ошибка сохранения объекта: поле 'positions[%d].quantity' должно быть больше нуля", i), Code: 3003})
		}
	}
	for i, a := range o.Attributes {
		if e := checkAttribute(i, a); e != nil {
			errs = append(errs, *e)
		}
	}
	if len(errs) > 0 {
		fail(w, http.StatusPreconditionFailed, errs...)
		return
	}
	o.ID = newID()
	o.Name = fmt.Sprintf("%05d", f.orders.Len()+1)
	v := view("customerorder", o.ID, map[string]any{"name": o.Name, "syncId": o.SyncID, "description": o.Description})
	if o.SyncID != "" {
		f.bySync[o.SyncID] = v
	}
	f.orders.Add(o)
	writeJSON(w, http.StatusOK, v)
}

// view is an entity as MoySklad returns it (a subset of the fields).
func view(typ, id string, fields map[string]any) map[string]any {
	v := map[string]any{"id": id, "meta": Meta{Href: hrefBase + "/entity/" + typ + "/" + id, Type: typ, MediaType: "application/json"},
		"accountId": "84e60e93-f504-11e5-8a84-bae500000008"}
	for k, x := range fields {
		v[k] = x
	}
	return v
}

func writeList(w http.ResponseWriter, typ string, rows []any) {
	if rows == nil {
		rows = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"context": map[string]any{"employee": map[string]any{"meta": Meta{Href: hrefBase + "/context/employee", Type: "employee", MediaType: "application/json"}}},
		"meta":    map[string]any{"href": hrefBase + "/entity/" + typ, "type": typ, "mediaType": "application/json", "size": len(rows), "limit": 1000, "offset": 0},
		"rows":    rows,
	})
}

// fault answers the armed fault, if any, as MoySklad does. It reports
// whether the request was answered.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request) bool {
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		authFail(w)
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Аккаунт заблокирован")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "403 Forbidden")
	case crmtest.RateJSON:
		h := w.Header()
		h.Set("X-RateLimit-Limit", "45")
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-Lognex-Retry-TimeInterval", "3000")
		h.Set("X-Lognex-Reset", "2500")
		h.Set("X-Lognex-Retry-After", "1500")
		fail(w, http.StatusTooManyRequests, apiError{Error: "Превышено ограничение на количество запросов в единицу времени", Code: 1049})
	case Parallel:
		fail(w, http.StatusTooManyRequests, apiError{Error: "Превышено ограничение на одновременное количество запросов", Code: 1073})
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
	case crmtest.QueryLimit: // maintenance: MoySklad's own "come back later" 503
		fail(w, http.StatusServiceUnavailable, apiError{Error: "Сервис временно недоступен, ведутся технические работы", Code: 1074})
	case crmtest.ServerError:
		fail(w, http.StatusInternalServerError, apiError{Error: "Неизвестная ошибка", Code: 1999})
	case crmtest.Slow:
		f.Faults.Wait(r)
		return false
	case crmtest.Garbage:
		writeGzip(w, http.StatusOK, []byte("<html><body>upstream error</body></html>"))
	case crmtest.Validation:
		fail(w, http.StatusPreconditionFailed, required("name"))
	case crmtest.Unavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		fail(w, http.StatusInternalServerError, apiError{Error: "unknown fault", Code: 1999})
	}
	return true
}

func fail(w http.ResponseWriter, status int, errs ...apiError) {
	writeJSON(w, status, map[string]any{"errors": errs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	writeGzip(w, status, b)
}

// writeGzip answers compressed, as MoySklad does for a client that asked.
func writeGzip(w http.ResponseWriter, status int, b []byte) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
