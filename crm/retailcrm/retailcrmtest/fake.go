// Package retailcrmtest is a fake retailCRM API v5 for tests: it checks
// requests the way retailCRM does (API key in X-API-KEY or apiKey, a known
// site, a form-encoded order JSON, directory codes, unique externalId) and
// answers in retailCRM's shapes, or with the fault a test armed.
//
// Where the vendor's behaviour is unconfirmed (the text of the duplicate
// externalId error, the wrong-site error) the fake picks a plausible answer
// and stays lenient about what it accepts.
package retailcrmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strconv"
	"sync"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Values the fake account knows.
const (
	APIKey = "test-key"
	Site   = "main-site"
	// OtherSite is a second store under the same key, so "site" is required.
	OtherSite = "second-site"
)

// OrderMethods, Statuses and OrderTypes are the fake account's directories:
// any other code fails validation, as in retailCRM.
var (
	OrderMethods = []string{"shopping-cart", "phone", "callback-request", "landing-page"}
	Statuses     = []string{"new", "in-work", "complete"}
	OrderTypes   = []string{"eshop-individual", "eshop-legal"}
)

// Order is an order the fake accepted, decoded.
type Order struct {
	ID              int            `json:"-"`
	Number          string         `json:"-"`
	Site            string         `json:"-"`
	ExternalID      string         `json:"externalId"`
	OrderMethod     string         `json:"orderMethod"`
	OrderType       string         `json:"orderType"`
	Status          string         `json:"status"`
	FirstName       string         `json:"firstName"`
	Patronymic      string         `json:"patronymic"`
	LastName        string         `json:"lastName"`
	Phone           string         `json:"phone"`
	Email           string         `json:"email"`
	CustomerComment string         `json:"customerComment"`
	ManagerComment  string         `json:"managerComment"`
	ManagerID       any            `json:"managerId"`
	Source          *Source        `json:"source"`
	CustomFields    map[string]any `json:"customFields"`
	// Raw is the whole order object as sent.
	Raw map[string]any `json:"-"`
}

// Source is the order's source block.
type Source struct {
	Source   string `json:"source"`
	Medium   string `json:"medium"`
	Campaign string `json:"campaign"`
	Keyword  string `json:"keyword"`
	Content  string `json:"content"`
}

// Fake is a running fake retailCRM.
type Fake struct {
	URL    string
	Faults *crmtest.Faults

	srv    *httptest.Server
	orders crmtest.Log[Order]
	mu     sync.Mutex
	lastID int
	byExt  map[string]Order
}

// New starts a fake retailCRM.
func New() *Fake {
	f := &Fake{Faults: &crmtest.Faults{}, byExt: map[string]Order{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Orders returns the orders created so far, in order.
func (f *Fake) Orders() []Order { return f.orders.All() }

// Caddyfile returns the option lines that point a retailcrm destination here.
func (f *Fake) Caddyfile() string {
	return "base_url " + f.URL + "\napi_key " + APIKey + "\nsite " + Site
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	// ParseForm reads the body only for a form content type, so a JSON body
	// leaves "order" missing, as retailCRM reports it. It runs before the
	// fault so that a Slow fault sees the client leave (the server watches
	// the connection only once the body is read).
	formErr := r.ParseForm()
	if f.fault(w, r) {
		return
	}
	if formErr != nil {
		fail(w, http.StatusBadRequest, "Errors in the entity format", nil)
		return
	}
	key := r.Header.Get("X-API-KEY")
	if key == "" {
		key = r.Form.Get("apiKey")
	}
	switch {
	case key == "":
		fail(w, http.StatusForbidden, `"apiKey" is missing.`, nil)
		return
	case key != APIKey:
		fail(w, http.StatusForbidden, `Wrong "apiKey" value.`, nil)
		return
	}
	switch {
	case r.URL.Path == "/api/v5/orders/create" && r.Method == http.MethodPost:
		f.create(w, r)
	case r.URL.Path == "/api/v5/orders" && r.Method == http.MethodGet:
		f.list(w, r)
	default:
		fail(w, http.StatusNotFound, "Method not found", nil)
	}
}

func (f *Fake) create(w http.ResponseWriter, r *http.Request) {
	site := r.PostForm.Get("site")
	if site == "" {
		site = r.URL.Query().Get("site")
	}
	switch site {
	case Site, OtherSite:
	case "":
		fail(w, http.StatusBadRequest, "Parameter 'site' is missing", nil)
		return
	default:
		fail(w, http.StatusBadRequest, `Wrong "site" value.`, nil)
		return
	}
	raw := r.PostForm.Get("order")
	if raw == "" {
		fail(w, http.StatusBadRequest, "Parameter 'order' is missing", nil)
		return
	}
	var o Order
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		fail(w, http.StatusBadRequest, "Errors in the entity format", nil)
		return
	}
	json.Unmarshal([]byte(raw), &o.Raw)
	errs := validate(&o)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.byExt[o.ExternalID]; dup && o.ExternalID != "" {
		errs["externalId"] = fmt.Sprintf("Order with externalId %q already exists.", o.ExternalID)
	}
	if len(errs) > 0 {
		fail(w, http.StatusBadRequest, "Order is not loaded", errs)
		return
	}
	f.lastID++
	o.ID, o.Number, o.Site = f.lastID, strconv.Itoa(f.lastID)+"A", site
	if o.Status == "" {
		o.Status = "new"
	}
	if o.ExternalID != "" {
		f.byExt[o.ExternalID] = o
	}
	f.orders.Add(o)
	writeJSON(w, http.StatusCreated, map[string]any{"success": true, "id": o.ID, "order": view(o)})
}

var codeRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// validate checks what retailCRM checks on create; the texts follow the
// ones seen in real logs ("\"OrderType\" with \"code\"=... does not exist.").
func validate(o *Order) map[string]string {
	errs := map[string]string{}
	directory := func(field, entity, code string, known []string) {
		if code == "" {
			return
		}
		for _, k := range known {
			if k == code {
				return
			}
		}
		errs[field] = fmt.Sprintf("%q with \"code\"=%q does not exist.", entity, code)
	}
	directory("orderMethod", "OrderMethod", o.OrderMethod, OrderMethods)
	directory("status", "Status", o.Status, Statuses)
	directory("orderType", "OrderType", o.OrderType, OrderTypes)
	if o.ManagerID != nil {
		n, ok := o.ManagerID.(float64)
		if !ok || n <= 0 || n != float64(int64(n)) {
			errs["managerId"] = "This value should be of type integer."
		}
	}
	if o.Email != "" {
		if a, err := mail.ParseAddress(o.Email); err != nil || a.Address != o.Email {
			errs["email"] = "This value is not a valid email address."
		}
	}
	for code, v := range o.CustomFields {
		if !codeRe.MatchString(code) {
			errs["customFields"] = fmt.Sprintf("Custom field %q does not exist.", code)
		}
		switch v.(type) {
		case string, float64, bool, nil:
		default:
			errs["customFields["+code+"]"] = "This value should be a scalar."
		}
	}
	return errs
}

func (f *Fake) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rows := []map[string]any{}
	f.mu.Lock()
	for _, ext := range q["filter[externalIds][]"] {
		if o, ok := f.byExt[ext]; ok {
			rows = append(rows, view(o))
		}
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"success":    true,
		"pagination": map[string]any{"limit": 20, "totalCount": len(rows), "currentPage": 1, "totalPageCount": 1},
		"orders":     rows,
	})
}

// view is the order as retailCRM returns it (a subset of the real object).
func view(o Order) map[string]any {
	v := map[string]any{"id": o.ID, "number": o.Number, "site": o.Site, "status": o.Status,
		"customer": map[string]any{"id": 1000 + o.ID, "type": "customer"}}
	if o.ExternalID != "" {
		v["externalId"] = o.ExternalID
	}
	return v
}

// fault answers the armed fault, if any, the way retailCRM and its nginx do.
// It reports whether the request was answered.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request) bool {
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized: // retailCRM has no 401: a bad key is a 403
		fail(w, http.StatusForbidden, `Wrong "apiKey" value.`, nil)
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Account is blocked")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "403 Forbidden")
	case crmtest.RateJSON:
		fail(w, http.StatusTooManyRequests, "Rate limit exceeded", nil)
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
	case crmtest.QueryLimit: // the documented over-limit answer
		crmtest.HTML(w, http.StatusServiceUnavailable, "503 Service Temporarily Unavailable")
	case crmtest.ServerError:
		fail(w, http.StatusInternalServerError, "Internal Server Error", nil)
	case crmtest.Slow:
		f.Faults.Wait(r)
		return false
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `<html><body>Bad Gateway</body></html>`)
	case crmtest.Validation:
		fail(w, http.StatusBadRequest, "Order is not loaded",
			map[string]string{"orderType": `"OrderType" with "code"="eshop-individual" does not exist.`})
	case crmtest.Unavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		fail(w, http.StatusInternalServerError, "unknown fault", nil)
	}
	return true
}

func fail(w http.ResponseWriter, status int, msg string, errs map[string]string) {
	body := map[string]any{"success": false, "errorMsg": msg}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
