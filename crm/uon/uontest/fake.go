// Package uontest is a fake U-ON.Travel API: POST /{key}/lead/create.json
// with a form-encoded body, answering {"result":200,"id":N}.
//
// Error bodies are undocumented ([U]); the fake answers JSON
// {"result":<code>,"message":"..."} with the HTTP status set to the same
// code, and for the Unauthorized fault it echoes the key from the URL, as a
// careless server might, so tests can check that the adapter hides it.
package uontest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Key is the API key the fake accepts.
const Key = "test-key-5f2a"

// Faults U-ON may carry inside an HTTP 200 ([U]).
const (
	ResultInvalid crmtest.Fault = "200-result-400" // {"result":400,...} with HTTP 200
	ResultBusy    crmtest.Fault = "200-result-500" // {"result":500,...} with HTTP 200
)

// Lead is an accepted lead/create request.
type Lead struct {
	ID   string
	Form url.Values
}

// Fake is a running fake server.
type Fake struct {
	URL    string
	Faults *crmtest.Faults

	srv   *httptest.Server
	leads crmtest.Log[Lead]
	seq   atomic.Int64
	hits  atomic.Int64
}

// New starts a fake.
func New() *Fake {
	f := &Fake{Faults: &crmtest.Faults{}}
	f.seq.Store(34143)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Caddyfile returns the option lines that point a uon destination at this
// fake.
func (f *Fake) Caddyfile() string {
	return fmt.Sprintf("base_url %s\nkey %s", f.URL, Key)
}

// Leads returns the accepted leads, in order.
func (f *Fake) Leads() []Lead { return f.leads.All() }

// Hits counts every request the fake answered, faults included.
func (f *Fake) Hits() int { return int(f.hits.Load()) }

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	// Reading the body first lets the server notice a client that gives up
	// during the Slow fault.
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, "Request too large")
		return
	}
	key, method, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if f.fault(w, r, key) {
		return
	}
	if key != Key {
		reply(w, http.StatusUnauthorized, "Invalid key "+key)
		return
	}
	if method != "lead/create.json" {
		reply(w, http.StatusNotFound, "Method not found")
		return
	}
	if r.Method != http.MethodPost {
		reply(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		reply(w, http.StatusBadRequest, "Expected form-encoded parameters")
		return
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		reply(w, http.StatusBadRequest, "Malformed parameters")
		return
	}
	if msg := validate(form); msg != "" {
		reply(w, http.StatusBadRequest, msg)
		return
	}
	id := f.seq.Add(1)
	f.leads.Add(Lead{ID: fmt.Sprint(id), Form: form})
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"result": 200, "id": id})
}

// validate checks what integrations report U-ON enforcing, plus the body's
// encoding (one integrator saw Cyrillic stored as "?").
func validate(form url.Values) string {
	for k, vs := range form {
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return "Parameter " + k + " is not valid UTF-8"
			}
		}
		if inner, ok := strings.CutPrefix(k, "extended_fields["); ok {
			id := strings.TrimSuffix(inner, "]")
			if id == "" || strings.Trim(id, "0123456789") != "" || !strings.HasSuffix(inner, "]") {
				return "Unknown additional field " + k
			}
		}
	}
	if form.Get("u_phone") == "" && form.Get("u_email") == "" {
		return "Не указан телефон или e-mail клиента"
	}
	if d := form.Get("r_dat"); d != "" {
		if _, err := time.Parse(time.DateTime, d); err != nil {
			return "r_dat: expected Y-m-d H:i:s"
		}
	}
	return ""
}

// fault answers the next armed fault, if any.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request, key string) bool {
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		reply(w, http.StatusUnauthorized, "Invalid key "+key)
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Аккаунт U-ON заблокирован: оплатите тариф")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "403 Forbidden")
	case crmtest.RateJSON:
		reply(w, http.StatusTooManyRequests, "Too many requests")
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
	case crmtest.QueryLimit:
		reply(w, http.StatusServiceUnavailable, "Service temporarily overloaded")
	case crmtest.ServerError:
		reply(w, http.StatusInternalServerError, "Internal server error")
	case crmtest.Slow:
		f.Faults.Wait(r)
		reply(w, http.StatusOK, "")
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("Array\n(\n    [result] => 200\n)\n"))
	case crmtest.Validation:
		reply(w, http.StatusBadRequest, "Не указан телефон или e-mail клиента")
	case ResultInvalid:
		replyStatus(w, http.StatusOK, 400, "Неверный status_id")
	case ResultBusy:
		replyStatus(w, http.StatusOK, 500, "Database is busy")
	case crmtest.Unavailable:
		crmtest.HTML(w, http.StatusServiceUnavailable, "503 Service Temporarily Unavailable")
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		return false
	}
	return true
}

func reply(w http.ResponseWriter, status int, msg string) {
	replyStatus(w, status, status, msg)
}

// replyStatus writes {"result":result,"message":msg} with HTTP status.
func replyStatus(w http.ResponseWriter, status, result int, msg string) {
	body := map[string]any{"result": result}
	if msg != "" {
		body["message"] = msg
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
