// Package salesforcetest is a fake Salesforce org for tests: the OAuth
// refresh_token grant at /services/oauth2/token, and Lead create, upsert by
// external id and read at /services/data/vNN.N/sobjects/Lead, validated the
// way Salesforce does (session, content type, field names and lengths,
// required fields, id formats, email) and answered with its bodies and its
// error array; every crmtest.Fault is rendered as Salesforce (or a proxy in
// front of it) would.
//
// Where the reference marks a detail unconfirmed the fake is lenient: the
// DUPLICATES_DETECTED body carries a duplicateResult the adapter need not
// read, and field values may be strings, numbers or booleans.
package salesforcetest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// The connected app and org the fake serves.
const (
	ClientID     = "3MVG9test.client.id"
	ClientSecret = "test-client-secret"
	RefreshToken = "5Aep861test.refresh.token"
	StaticToken  = "00Dxx0000000001!AQtest.session" // accepted as a configured token
	OrgID        = "00Dxx0000000001EAA"
	UserID       = "005xx000001Sv6AAAS" // a valid OwnerId
	ExternalID   = "LeadProxy_ID__c"    // the org's External ID field on Lead
)

// DuplicatesDetected answers as a blocking duplicate rule does.
const DuplicatesDetected crmtest.Fault = "duplicates"

// Fake is a running fake Salesforce org.
type Fake struct {
	URL string
	// Faults answer REST requests in order; TokenFaults the token endpoint.
	Faults      *crmtest.Faults
	TokenFaults *crmtest.Faults
	// Rotate issues a new refresh token with each refresh and retires the
	// used one (refresh token rotation).
	Rotate bool
	// UpsertNoContent answers an upsert that updated with 204 and no body,
	// as API versions before 46.0 do.
	UpsertNoContent bool
	// AlertOnDuplicateEmail is a duplicate rule with an alert: a Lead with
	// the Email of an existing one is refused unless the request says
	// allowSave=true.
	AlertOnDuplicateEmail bool
	// CustomFields are the org's custom Lead fields (API names).
	CustomFields map[string]bool

	srv      *httptest.Server
	mu       sync.Mutex
	access   map[string]bool
	refresh  map[string]bool
	refreshN int
	rejected int
	records  map[string]map[string]any
	external map[string]string // external id value → record id
	nextID   int
	calls    int
	leads    crmtest.Log[map[string]any]
	leadIDs  crmtest.Log[string]
}

// New starts a fake org.
func New() *Fake {
	f := &Fake{
		Faults:      &crmtest.Faults{},
		TokenFaults: &crmtest.Faults{},
		CustomFields: map[string]bool{
			"UTM_Source__c": true, "UTM_Medium__c": true, "UTM_Campaign__c": true,
			"UTM_Term__c": true, "UTM_Content__c": true, "Budget__c": true, ExternalID: true,
		},
		access:   map[string]bool{StaticToken: true},
		refresh:  map[string]bool{RefreshToken: true},
		records:  map[string]map[string]any{},
		external: map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/oauth2/token", f.token)
	mux.HandleFunc("POST /services/data/{ver}/sobjects/Lead", f.rest(f.create))
	mux.HandleFunc("POST /services/data/{ver}/sobjects/Lead/{$}", f.rest(f.create))
	mux.HandleFunc("PATCH /services/data/{ver}/sobjects/Lead/{field}/{value}", f.rest(f.upsert))
	mux.HandleFunc("GET /services/data/{ver}/sobjects/Lead/{field}/{value}", f.rest(f.read))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		errs(w, http.StatusNotFound, apiError{ErrorCode: "NOT_FOUND", Message: "The requested resource does not exist"})
	})
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// TokenURL is the fake's OAuth token endpoint.
func (f *Fake) TokenURL() string { return f.URL + "/services/oauth2/token" }

// Caddyfile returns the option lines that point a salesforce destination
// here, with the refresh flow.
func (f *Fake) Caddyfile() string {
	return fmt.Sprintf("base_url %s\ntoken_url %s\nclient_id %s\nclient_secret %s\nrefresh_token %s",
		f.URL, f.TokenURL(), ClientID, ClientSecret, RefreshToken)
}

// Leads returns the accepted create and upsert bodies, decoded.
func (f *Fake) Leads() []map[string]any { return f.leads.All() }

// LeadIDs returns the record id each accepted request created or updated.
func (f *Fake) LeadIDs() []string { return f.leadIDs.All() }

// Records returns how many Lead records exist.
func (f *Fake) Records() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.records)
}

// Refreshes returns how many access tokens the token endpoint issued.
func (f *Fake) Refreshes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshN
}

// Rejected returns how many REST requests were refused for their session.
func (f *Fake) Rejected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

// ExpireSessions ends every issued session (not the static one), as
// Salesforce's session timeout does.
func (f *Fake) ExpireSessions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.access = map[string]bool{StaticToken: f.access[StaticToken]}
}

// RevokeStatic ends StaticToken's session.
func (f *Fake) RevokeStatic() {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.access, StaticToken)
}

// RevokeRefresh invalidates every refresh token (the app's access revoked).
func (f *Fake) RevokeRefresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh = map[string]bool{}
}

type apiError struct {
	Message         string         `json:"message"`
	ErrorCode       string         `json:"errorCode"`
	Fields          []string       `json:"fields,omitempty"`
	DuplicateResult map[string]any `json:"duplicateResult,omitempty"`
}

// errs writes Salesforce's error array.
func errs(w http.ResponseWriter, status int, e ...apiError) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func duplicates() apiError {
	return apiError{ErrorCode: "DUPLICATES_DETECTED", Message: "Use one of these records?",
		DuplicateResult: map[string]any{"allowSave": false, "duplicateRule": "Standard_Lead_Duplicate_Rule",
			"duplicateRuleEntityType": "Lead", "errorMessage": "Use one of these records?", "matchResults": []any{}}}
}

// fault answers fl as Salesforce or a proxy in front of it does; it reports
// whether it answered.
func fault(w http.ResponseWriter, r *http.Request, faults *crmtest.Faults, fl crmtest.Fault) bool {
	switch fl {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		w.Header().Set("WWW-Authenticate", "Token")
		errs(w, http.StatusUnauthorized, apiError{ErrorCode: "INVALID_SESSION_ID", Message: "Session expired or invalid"})
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Payment Required")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "Forbidden: your IP address is not allowed")
	case crmtest.RateJSON: // Salesforce's limit signal is a 403, not a 429
		errs(w, http.StatusForbidden, apiError{ErrorCode: "REQUEST_LIMIT_EXCEEDED", Message: "TotalRequests Limit exceeded."})
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "Too Many Requests")
	case crmtest.QueryLimit:
		errs(w, http.StatusServiceUnavailable, apiError{ErrorCode: "SERVER_UNAVAILABLE", Message: "The server is temporarily unable to service your request"})
	case crmtest.ServerError:
		errs(w, http.StatusInternalServerError, apiError{ErrorCode: "UNKNOWN_EXCEPTION",
			Message: "An unexpected error occurred. Please include this ErrorId if you contact support: 1418526311-18409 (-1184349950)"})
	case crmtest.Unavailable:
		crmtest.HTML(w, http.StatusServiceUnavailable, "Salesforce is down for maintenance")
	case crmtest.Slow:
		io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
		faults.Wait(r)
		errs(w, http.StatusInternalServerError, apiError{ErrorCode: "UNKNOWN_EXCEPTION", Message: "too late"})
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "<html><body>Redirecting to login…</body></html>")
	case crmtest.Validation:
		errs(w, http.StatusBadRequest, apiError{ErrorCode: "FIELD_CUSTOM_VALIDATION_EXCEPTION",
			Message: "Phone must include the country code", Fields: []string{"Phone"}})
	case DuplicatesDetected:
		errs(w, http.StatusBadRequest, duplicates())
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		panic("salesforcetest: unknown fault " + string(fl))
	}
	return true
}

func newSecret() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// token is the OAuth token endpoint: refresh_token grant, form-encoded.
func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	if fault(w, r, f.TokenFaults, f.TokenFaults.Next()) {
		return
	}
	oauthErr := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		oauthErr("invalid_request", "content type must be application/x-www-form-urlencoded")
		return
	}
	r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	rt := r.PostFormValue("refresh_token")
	switch {
	case r.PostFormValue("grant_type") != "refresh_token":
		oauthErr("unsupported_grant_type", "grant type not supported")
		return
	case r.PostFormValue("client_id") != ClientID:
		oauthErr("invalid_client_id", "client identifier invalid")
		return
	case r.PostFormValue("client_secret") != ClientSecret:
		oauthErr("invalid_client", "invalid client credentials")
		return
	case !f.refresh[rt]:
		oauthErr("invalid_grant", "expired access/refresh token")
		return
	}
	f.refreshN++
	at := OrgID[:15] + "!" + newSecret()
	f.access[at] = true
	ans := map[string]any{
		"access_token": at, "instance_url": f.URL, "id": f.URL + "/id/" + OrgID + "/" + UserID,
		"token_type": "Bearer", "issued_at": strconv.FormatInt(time.Now().UnixMilli(), 10),
		"signature": "dGVzdA==", "scope": "api refresh_token",
	}
	if f.Rotate {
		delete(f.refresh, rt)
		nrt := "5Aep861" + newSecret()
		f.refresh[nrt] = true
		ans["refresh_token"] = nrt
	}
	writeJSON(w, http.StatusOK, ans)
}

var version = regexp.MustCompile(`^v\d{2,3}\.\d$`)

// rest checks the session, the version and the armed fault before h.
func (f *Fake) rest(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		valid := f.access[tok]
		if !valid {
			f.rejected++
		}
		f.calls++
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/15000", f.calls))
		f.mu.Unlock()
		if !valid {
			w.Header().Set("WWW-Authenticate", "Token")
			errs(w, http.StatusUnauthorized, apiError{ErrorCode: "INVALID_SESSION_ID", Message: "Session expired or invalid"})
			return
		}
		if !version.MatchString(r.PathValue("ver")) {
			errs(w, http.StatusNotFound, apiError{ErrorCode: "NOT_FOUND", Message: "The requested resource does not exist"})
			return
		}
		if fault(w, r, f.Faults, f.Faults.Next()) {
			return
		}
		h(w, r)
	}
}

// standard are the Lead fields the fake knows, with their lengths (0: no
// string limit the adapter needs to respect).
var standard = map[string]int{
	"Salutation": 40, "FirstName": 40, "MiddleName": 40, "LastName": 80, "Suffix": 40,
	"Company": 255, "Title": 128, "Phone": 40, "MobilePhone": 40, "Fax": 40, "Email": 80,
	"Website": 255, "Description": 32000, "LeadSource": 255, "Status": 255, "Industry": 255,
	"Rating": 255, "AnnualRevenue": 0, "NumberOfEmployees": 0, "OwnerId": 18,
	"Street": 255, "City": 40, "State": 80, "PostalCode": 20, "Country": 80,
}

var (
	salesforceID = regexp.MustCompile(`^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$`)
	email        = regexp.MustCompile(`^[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)
)

// body decodes and validates a Lead body; it answers the error itself and
// returns nil when the body is refused.
func (f *Fake) body(w http.ResponseWriter, r *http.Request) map[string]any {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		errs(w, http.StatusUnsupportedMediaType, apiError{ErrorCode: "UNSUPPORTED_MEDIA_TYPE",
			Message: "Content-Type header specified in HTTP request is not supported: " + r.Header.Get("Content-Type")})
		return nil
	}
	var fields map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil || fields == nil {
		errs(w, http.StatusBadRequest, apiError{ErrorCode: "JSON_PARSER_ERROR", Message: "Unexpected character: the body is not a JSON object"})
		return nil
	}
	for k, v := range fields {
		max, known := standard[k]
		if !known && !f.CustomFields[k] {
			errs(w, http.StatusBadRequest, apiError{ErrorCode: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on sobject of type Lead", k)})
			return nil
		}
		switch v.(type) {
		case string, json.Number, bool, nil:
		default:
			errs(w, http.StatusBadRequest, apiError{ErrorCode: "JSON_PARSER_ERROR", Message: "Cannot deserialize instance of " + k + " from START_OBJECT value"})
			return nil
		}
		s, _ := v.(string)
		if max > 0 && utf8.RuneCountInString(s) > max {
			errs(w, http.StatusBadRequest, apiError{ErrorCode: "STRING_TOO_LONG",
				Message: fmt.Sprintf("%s: data value too large: %.20s (max length=%d)", k, s, max), Fields: []string{k}})
			return nil
		}
	}
	if owner, ok := fields["OwnerId"]; ok {
		s, _ := owner.(string)
		if !salesforceID.MatchString(s) || !(strings.HasPrefix(s, "005") || strings.HasPrefix(s, "00G")) {
			errs(w, http.StatusBadRequest, apiError{ErrorCode: "MALFORMED_ID", Message: fmt.Sprintf("Owner ID: id value of incorrect type: %v", owner), Fields: []string{"OwnerId"}})
			return nil
		}
	}
	if e, ok := fields["Email"].(string); ok && e != "" && !email.MatchString(e) {
		errs(w, http.StatusBadRequest, apiError{ErrorCode: "INVALID_EMAIL_ADDRESS", Message: "Email: invalid email address: " + e, Fields: []string{"Email"}})
		return nil
	}
	return fields
}

// save applies the duplicate rule and required fields, then stores fields
// as record id (new when id is ""). It answers the error itself.
func (f *Fake) save(w http.ResponseWriter, r *http.Request, id string, fields map[string]any) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	merged := map[string]any{}
	if id != "" {
		for k, v := range f.records[id] {
			merged[k] = v
		}
	}
	for k, v := range fields {
		merged[k] = v
	}
	var missing []string
	for _, req := range []string{"LastName", "Company"} {
		if s, _ := merged[req].(string); strings.TrimSpace(s) == "" {
			missing = append(missing, req)
		}
	}
	if len(missing) > 0 {
		errs(w, http.StatusBadRequest, apiError{ErrorCode: "REQUIRED_FIELD_MISSING",
			Message: "Required fields are missing: [" + strings.Join(missing, ", ") + "]", Fields: missing})
		return "", false
	}
	if e, _ := fields["Email"].(string); f.AlertOnDuplicateEmail && e != "" && !strings.Contains(r.Header.Get("Sforce-Duplicate-Rule-Header"), "allowSave=true") {
		for rid, rec := range f.records {
			if rid != id && rec["Email"] == e {
				errs(w, http.StatusBadRequest, duplicates())
				return "", false
			}
		}
	}
	if id == "" {
		f.nextID++
		id = fmt.Sprintf("00Q5i%010dUAX", f.nextID)
	}
	f.records[id] = merged
	f.leads.Add(fields) // under f.mu, so Leads and LeadIDs stay in step
	f.leadIDs.Add(id)
	return id, true
}

func (f *Fake) create(w http.ResponseWriter, r *http.Request) {
	fields := f.body(w, r)
	if fields == nil {
		return
	}
	if id, ok := f.save(w, r, "", fields); ok {
		writeJSON(w, http.StatusCreated, map[string]any{"id": id, "success": true, "errors": []any{}})
	}
}

// externalField checks the URL's field is the org's External ID field.
func (f *Fake) externalField(w http.ResponseWriter, r *http.Request) bool {
	if field := r.PathValue("field"); field != ExternalID {
		errs(w, http.StatusNotFound, apiError{ErrorCode: "NOT_FOUND",
			Message: "Provided external ID field does not exist or is not accessible: " + field})
		return false
	}
	return true
}

func (f *Fake) upsert(w http.ResponseWriter, r *http.Request) {
	if !f.externalField(w, r) {
		return
	}
	fields := f.body(w, r)
	if fields == nil {
		return
	}
	value := r.PathValue("value")
	f.mu.Lock()
	existing := f.external[value]
	f.mu.Unlock()
	id, ok := f.save(w, r, existing, fields)
	if !ok {
		return
	}
	f.mu.Lock()
	f.records[id][ExternalID] = value
	f.external[value] = id
	f.mu.Unlock()
	switch {
	case existing == "":
		writeJSON(w, http.StatusCreated, map[string]any{"id": id, "success": true, "errors": []any{}, "created": true})
	case f.UpsertNoContent:
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "success": true, "errors": []any{}, "created": false})
	}
}

func (f *Fake) read(w http.ResponseWriter, r *http.Request) {
	if !f.externalField(w, r) {
		return
	}
	f.mu.Lock()
	id := f.external[r.PathValue("value")]
	f.mu.Unlock()
	if id == "" {
		errs(w, http.StatusNotFound, apiError{ErrorCode: "NOT_FOUND", Message: "The requested resource does not exist"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"attributes": map[string]any{"type": "Lead", "url": r.URL.Path},
		"Id":         id,
	})
}
