// Package megaplantest is a fake Megaplan API v3 account for tests: the
// password/refresh token endpoint, contractor search and creation, and deal
// creation, validated and answered in the {"meta","data"} envelope, and
// every crmtest.Fault rendered as Megaplan (or a proxy in front of it) would.
//
// Where the reference marks a detail unconfirmed the fake is lenient: it
// takes the token request as urlencoded or multipart, any contactInfo type,
// ids as numbers or strings, and deal keys it does not know.
package megaplantest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// The account the fake serves.
const (
	Login       = "robot@example.com"
	Password    = "test-password"
	StaticToken = "test-long-lived-token" // accepted as a configured token
	Program     = 8                       // the only deal scheme
	Manager     = 1000003                 // the only employee
)

// Meta422 answers HTTP 200 whose body says meta.status 422, as Megaplan's
// envelope allows: the adapter must not take it for success.
const Meta422 crmtest.Fault = "200-meta-422"

// Fake is a running fake Megaplan.
type Fake struct {
	URL string
	// Faults answer API requests (search, contractor, deal) in order.
	Faults *crmtest.Faults
	// TokenFaults answer the token endpoint.
	TokenFaults *crmtest.Faults
	// ExpiresIn is the expires_in of issued tokens, seconds (default 3600).
	ExpiresIn int

	srv         *httptest.Server
	mu          sync.Mutex
	access      map[string]bool
	refresh     map[string]bool
	grants      map[string]int
	people      []map[string]any
	nextID      int
	rejected    int
	deals       crmtest.Log[map[string]any]
	dealIDs     crmtest.Log[string]
	contractors crmtest.Log[map[string]any]
	searches    crmtest.Log[string]
}

// New starts a fake Megaplan.
func New() *Fake {
	f := &Fake{
		Faults:      &crmtest.Faults{},
		TokenFaults: &crmtest.Faults{},
		ExpiresIn:   3600,
		access:      map[string]bool{StaticToken: true},
		refresh:     map[string]bool{},
		grants:      map[string]int{},
		nextID:      1000100,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v3/auth/access_token", f.token)
	mux.HandleFunc("GET /api/v3/contractor", f.api(f.search))
	mux.HandleFunc("POST /api/v3/contractorHuman", f.api(f.createContractor))
	mux.HandleFunc("POST /api/v3/deal", f.api(f.createDeal))
	mux.HandleFunc("/", f.api(func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, nil, apiError{Message: "Not found: " + r.Method + " " + r.URL.Path})
	}))
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Caddyfile returns the option lines that point a megaplan destination here.
func (f *Fake) Caddyfile() string {
	return fmt.Sprintf("base_url %s\nlogin %s\npassword %s\nprogram %d", f.URL, Login, Password, Program)
}

// Deals returns the accepted deal create requests, decoded.
func (f *Fake) Deals() []map[string]any { return f.deals.All() }

// DealIDs returns the ids the fake gave the accepted deals, in order.
func (f *Fake) DealIDs() []string { return f.dealIDs.All() }

// Rejected returns how many API requests were refused for their token.
func (f *Fake) Rejected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

// Contractors returns the accepted contractorHuman create requests, decoded.
func (f *Fake) Contractors() []map[string]any { return f.contractors.All() }

// Searches returns the q of each contractor search.
func (f *Fake) Searches() []string { return f.searches.All() }

// Grants returns how many tokens were issued with grant_type g.
func (f *Fake) Grants(g string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.grants[g]
}

// ExpireAccess invalidates every issued access token (not the static one),
// as an expiry the client did not foresee.
func (f *Fake) ExpireAccess() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access = map[string]bool{StaticToken: true}
}

// RevokeRefresh invalidates every refresh token too.
func (f *Fake) RevokeRefresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh = map[string]bool{}
}

// RevokeStatic stops accepting StaticToken.
func (f *Fake) RevokeStatic() {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.access, StaticToken)
}

type apiError struct {
	Field   string `json:"field,omitempty"`
	Type    string `json:"type,omitempty"`
	Message string `json:"message"`
}

// reply writes the envelope with meta.status equal to the HTTP status.
func reply(w http.ResponseWriter, status int, data any, errs ...apiError) {
	replyMeta(w, status, status, data, errs...)
}

func replyMeta(w http.ResponseWriter, httpStatus, metaStatus int, data any, errs ...apiError) {
	if errs == nil {
		errs = []apiError{}
	}
	if data == nil {
		data = map[string]any{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	json.NewEncoder(w).Encode(map[string]any{
		"meta": map[string]any{"status": metaStatus, "errors": errs},
		"data": data,
	})
}

func validation(field, msg string) apiError {
	return apiError{Field: field, Type: "ValidationException", Message: msg}
}

// fault answers f the way Megaplan or a proxy in front of it does; it
// reports whether it answered.
func fault(w http.ResponseWriter, r *http.Request, faults *crmtest.Faults, fl crmtest.Fault) bool {
	switch fl {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		reply(w, http.StatusUnauthorized, nil, apiError{Message: "Invalid access token"})
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Аккаунт заблокирован: истёк оплаченный период")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "403 Forbidden")
	case crmtest.RateJSON:
		w.Header().Set("Retry-After", "7")
		reply(w, http.StatusTooManyRequests, nil, apiError{Message: "Too many requests"})
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
	case crmtest.QueryLimit:
		reply(w, http.StatusServiceUnavailable, nil, apiError{Message: "Service temporarily unavailable, try later"})
	case crmtest.ServerError:
		reply(w, http.StatusInternalServerError, nil, apiError{Type: "InternalException", Message: "Internal server error"})
	case crmtest.Unavailable:
		crmtest.HTML(w, http.StatusServiceUnavailable, "Ведутся технические работы")
	case crmtest.Slow:
		io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
		faults.Wait(r)
		reply(w, http.StatusInternalServerError, nil, apiError{Message: "too late"})
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Bad gateway, retry</body>"))
	case crmtest.Validation:
		reply(w, http.StatusUnprocessableEntity, nil, validation("program", "Поле обязательно"))
	case Meta422:
		replyMeta(w, http.StatusOK, http.StatusUnprocessableEntity, nil, validation("contractor", "Контрагент не найден"))
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		panic("megaplantest: unknown fault " + string(fl))
	}
	return true
}

func (f *Fake) newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// token is POST /api/v3/auth/access_token: form or multipart fields.
func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	if fault(w, r, f.TokenFaults, f.TokenFaults.Next()) {
		return
	}
	oauthErr := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc, "message": desc})
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded":
		r.ParseForm()
	case "multipart/form-data":
		r.ParseMultipartForm(1 << 20)
	default:
		oauthErr(http.StatusBadRequest, "invalid_request", "The request is missing a required parameter: grant_type")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch g := r.PostFormValue("grant_type"); g {
	case "password":
		if r.PostFormValue("username") != Login || r.PostFormValue("password") != Password {
			oauthErr(http.StatusBadRequest, "invalid_grant", "The user credentials were incorrect.")
			return
		}
	case "refresh_token":
		rt := r.PostFormValue("refresh_token")
		if !f.refresh[rt] {
			oauthErr(http.StatusBadRequest, "invalid_grant", "The refresh token is invalid.")
			return
		}
		delete(f.refresh, rt) // rotated: each refresh token works once
	case "":
		oauthErr(http.StatusBadRequest, "invalid_request", "The request is missing a required parameter: grant_type")
		return
	default:
		oauthErr(http.StatusBadRequest, "unsupported_grant_type", "The authorization grant type is not supported.")
		return
	}
	f.grants[r.PostFormValue("grant_type")]++
	at, rt := f.newToken(), f.newToken()
	f.access[at], f.refresh[rt] = true, true
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": at, "expires_in": f.ExpiresIn, "token_type": "bearer", "scope": nil, "refresh_token": rt,
	})
}

// api checks the access token (Authorization: Bearer, or access_token in the
// JSON query) and the armed fault before h.
func (f *Fake) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			tok, _ = query(r)["access_token"].(string)
		}
		f.mu.Lock()
		valid := f.access[tok]
		if !valid {
			f.rejected++
		}
		f.mu.Unlock()
		if !valid {
			reply(w, http.StatusUnauthorized, nil, apiError{Message: "Invalid access token"})
			return
		}
		if fault(w, r, f.Faults, f.Faults.Next()) {
			return
		}
		h(w, r)
	}
}

// query decodes the URL-encoded JSON object after "?".
func query(r *http.Request) map[string]any {
	raw, err := url.QueryUnescape(r.URL.RawQuery)
	if err != nil || raw == "" {
		return nil
	}
	var q map[string]any
	json.Unmarshal([]byte(raw), &q)
	return q
}

// body decodes a JSON object body, answering 422 itself when it cannot.
func body(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		reply(w, http.StatusUnprocessableEntity, nil, apiError{Message: "Request body must be JSON"})
		return nil, false
	}
	var m map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		reply(w, http.StatusUnprocessableEntity, nil, apiError{Message: "Invalid JSON"})
		return nil, false
	}
	return m, true
}

// refID returns a link entity's id when it has the wanted contentType
// prefix; ids come as numbers or numeric strings.
func refID(v any, contentType string) (int, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return 0, false
	}
	if ct, _ := m["contentType"].(string); !strings.HasPrefix(ct, contentType) {
		return 0, false
	}
	switch id := m["id"].(type) {
	case json.Number:
		n, err := strconv.Atoi(id.String())
		return n, err == nil
	case string:
		n, err := strconv.Atoi(id)
		return n, err == nil
	}
	return 0, false
}

func (f *Fake) search(w http.ResponseWriter, r *http.Request) {
	q, _ := query(r)["q"].(string)
	f.searches.Add(q)
	f.mu.Lock()
	defer f.mu.Unlock()
	found := []map[string]any{}
	for _, p := range f.people {
		infos, _ := p["contactInfo"].([]any)
		for _, ci := range infos {
			if v, _ := ci.(map[string]any)["value"].(string); q != "" && v == q {
				found = append(found, map[string]any{"contentType": "ContractorHuman", "id": p["id"], "name": p["firstName"]})
				break
			}
		}
	}
	reply(w, http.StatusOK, found)
}

func (f *Fake) createContractor(w http.ResponseWriter, r *http.Request) {
	c, ok := body(w, r)
	if !ok {
		return
	}
	if c["contentType"] != "ContractorHuman" {
		reply(w, http.StatusUnprocessableEntity, nil, validation("contentType", "Неверный тип сущности"))
		return
	}
	first, _ := c["firstName"].(string)
	last, _ := c["lastName"].(string)
	if first == "" && last == "" {
		reply(w, http.StatusUnprocessableEntity, nil, validation("firstName", "Поле обязательно"))
		return
	}
	if infos, present := c["contactInfo"]; present {
		list, ok := infos.([]any)
		if !ok {
			reply(w, http.StatusUnprocessableEntity, nil, validation("contactInfo", "Ожидается коллекция"))
			return
		}
		for _, x := range list {
			ci, _ := x.(map[string]any)
			typ, _ := ci["type"].(string)
			val, _ := ci["value"].(string)
			if ci["contentType"] != "ContactInfo" || typ == "" || val == "" {
				reply(w, http.StatusUnprocessableEntity, nil, validation("contactInfo", "Неверная контактная информация"))
				return
			}
		}
	}
	f.contractors.Add(c)
	f.mu.Lock()
	f.nextID++
	id := strconv.Itoa(f.nextID)
	stored := map[string]any{"id": id}
	for k, v := range c {
		stored[k] = v
	}
	f.people = append(f.people, stored)
	f.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{"contentType": "ContractorHuman", "id": id, "firstName": first, "lastName": last})
}

var customField = regexp.MustCompile(`^Category\d+CustomField\w+$`)

func (f *Fake) createDeal(w http.ResponseWriter, r *http.Request) {
	d, ok := body(w, r)
	if !ok {
		return
	}
	if d["contentType"] != "Deal" {
		reply(w, http.StatusUnprocessableEntity, nil, validation("contentType", "Неверный тип сущности"))
		return
	}
	if _, present := d["program"]; !present {
		reply(w, http.StatusUnprocessableEntity, nil, validation("program", "Поле обязательно"))
		return
	}
	if id, ok := refID(d["program"], "Program"); !ok || id != Program {
		reply(w, http.StatusUnprocessableEntity, nil, validation("program", "Схема сделки не найдена"))
		return
	}
	if v, present := d["manager"]; present {
		if id, ok := refID(v, "Employee"); !ok || id != Manager {
			reply(w, http.StatusUnprocessableEntity, nil, validation("manager", "Сотрудник не найден"))
			return
		}
	}
	if v, present := d["contractor"]; present {
		id, ok := refID(v, "Contractor")
		if !ok || !f.hasPerson(strconv.Itoa(id)) {
			reply(w, http.StatusUnprocessableEntity, nil, validation("contractor", "Контрагент не найден"))
			return
		}
	}
	if v, present := d["cost"]; present {
		money, _ := v.(map[string]any)
		if _, isNum := money["value"].(json.Number); money["contentType"] != "Money" || !isNum {
			reply(w, http.StatusUnprocessableEntity, nil, validation("cost", "Ожидается Money"))
			return
		}
	}
	for k, v := range d {
		if _, isText := v.(string); customField.MatchString(k) && !isText {
			reply(w, http.StatusUnprocessableEntity, nil, validation(k, "Ожидается строка"))
			return
		}
	}
	f.mu.Lock()
	f.nextID++
	id := strconv.Itoa(f.nextID)
	f.deals.Add(d) // under f.mu, so Deals and DealIDs stay in step
	f.dealIDs.Add(id)
	f.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{"contentType": "Deal", "id": id, "number": id, "program": d["program"]})
}

func (f *Fake) hasPerson(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.people {
		if p["id"] == id {
			return true
		}
	}
	return false
}
