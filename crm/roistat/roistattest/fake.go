// Package roistattest is a fake of Roistat's proxy-lead API:
// GET /api/proxy/1.0/leads/add?key=...&roistat=...&fields[...]=...
//
// The answer is undocumented ([U]). The fake answers
// {"status":"success","data":{"id":"<n>"}} unless Reply says otherwise, so
// tests can try the other shapes the adapter accepts; errors follow the
// shape of Roistat's /api/v1 ({"status":"error","error":...,"description":...}).
// It also takes a form POST ([U]: no sample uses one) and refuses request
// lines over 8 KB with 414, as nginx does.
package roistattest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/leadproxy/leadproxy/crm/crmtest"
)

// Key is the integration key the fake accepts.
const Key = "dGVzdC1rZXk="

// Path is the proxy-lead method.
const Path = "/api/proxy/1.0/leads/add"

// ErrorIn200 answers 200 with {"status":"error",...} ([U]: a plausible way
// for Roistat to refuse a lead).
const ErrorIn200 crmtest.Fault = "200-error"

// Lead is an accepted request, decoded.
type Lead struct {
	ID      string
	Method  string
	Roistat string
	Title   string
	Name    string
	Phone   string
	Email   string
	Comment string
	Fields  map[string]string // fields[<key>] without the brackets
	Params  url.Values        // every parameter as sent
}

// Fake is a running fake server.
type Fake struct {
	URL    string
	Faults *crmtest.Faults

	srv   *httptest.Server
	leads crmtest.Log[Lead]
	seq   atomic.Int64
	hits  atomic.Int64
	mu    sync.Mutex
	reply string
}

// New starts a fake.
func New() *Fake {
	f := &Fake{Faults: &crmtest.Faults{}}
	f.seq.Store(500)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	return f
}

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// Caddyfile returns the option lines that point a roistat destination at
// this fake.
func (f *Fake) Caddyfile() string {
	return fmt.Sprintf("base_url %s\nkey %s", f.URL, Key)
}

// Reply sets the success body; "{id}" in it becomes the new lead's id. An
// empty body restores the default.
func (f *Fake) Reply(body string) {
	f.mu.Lock()
	f.reply = body
	f.mu.Unlock()
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
		crmtest.HTML(w, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large")
		return
	}
	if f.fault(w, r) {
		return
	}
	if len(r.RequestURI) > 8192 {
		crmtest.HTML(w, http.StatusRequestURITooLong, "414 Request-URI Too Large")
		return
	}
	if r.URL.Path != Path {
		crmtest.HTML(w, http.StatusNotFound, "404 Not Found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "request_error", "Method not allowed")
		return
	}
	p, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil && r.Method == http.MethodPost {
		var post url.Values
		if post, err = url.ParseQuery(string(raw)); err == nil {
			for k, vs := range post {
				p[k] = append(p[k], vs...)
			}
		}
	}
	if err != nil {
		fail(w, http.StatusBadRequest, "request_error", "Malformed parameters")
		return
	}
	if p.Get("key") != Key {
		fail(w, http.StatusUnauthorized, "authentication_failed", "Invalid integration key")
		return
	}
	if p.Get("roistat") == "" {
		fail(w, http.StatusBadRequest, "request_error", "Parameter roistat is required")
		return
	}
	l := Lead{Method: r.Method, Roistat: p.Get("roistat"), Title: p.Get("title"), Name: p.Get("name"),
		Phone: p.Get("phone"), Email: p.Get("email"), Comment: p.Get("comment"), Fields: map[string]string{}, Params: p}
	for k, vs := range p {
		inner, ok := strings.CutPrefix(k, "fields[")
		if !ok {
			continue
		}
		name, ok := strings.CutSuffix(inner, "]")
		if !ok || name == "" || len(vs) != 1 {
			fail(w, http.StatusBadRequest, "request_error", "Malformed parameter "+k)
			return
		}
		l.Fields[name] = vs[0]
	}
	l.ID = strconv.FormatInt(f.seq.Add(1), 10)
	f.leads.Add(l)
	f.mu.Lock()
	body := f.reply
	f.mu.Unlock()
	if body == "" {
		body = `{"status":"success","data":{"id":"{id}"}}`
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, strings.ReplaceAll(body, "{id}", l.ID))
}

// fault answers the next armed fault, if any.
func (f *Fake) fault(w http.ResponseWriter, r *http.Request) bool {
	switch f.Faults.Next() {
	case crmtest.None:
		return false
	case crmtest.Unauthorized:
		fail(w, http.StatusUnauthorized, "authentication_failed", "Invalid integration key")
	case crmtest.PaymentHTML:
		crmtest.HTML(w, http.StatusPaymentRequired, "Проект заблокирован: пополните баланс Roistat")
	case crmtest.ForbiddenHTML:
		crmtest.HTML(w, http.StatusForbidden, "403 Forbidden")
	case crmtest.RateJSON:
		w.Header().Set("Retry-After", "5")
		fail(w, http.StatusTooManyRequests, "too_many_requests", "Request limit exceeded")
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
	case crmtest.QueryLimit:
		fail(w, http.StatusServiceUnavailable, "service_unavailable", "Try again later")
	case crmtest.ServerError:
		fail(w, http.StatusInternalServerError, "internal_error", "")
	case crmtest.Slow:
		f.Faults.Wait(r)
		w.Write([]byte(`{"status":"success"}`))
	case crmtest.Garbage:
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Roistat: техническое обслуживание</body></html>"))
	case crmtest.Validation:
		fail(w, http.StatusBadRequest, "request_error", "Parameter roistat is required")
	case ErrorIn200:
		fail(w, http.StatusOK, "project_blocked", "Project is blocked")
	case crmtest.Unavailable:
		crmtest.HTML(w, http.StatusServiceUnavailable, "503 Service Temporarily Unavailable")
	case crmtest.Reset:
		crmtest.ResetConn(w)
	default:
		return false
	}
	return true
}

func fail(w http.ResponseWriter, status int, code, description string) {
	body := map[string]string{"status": "error", "error": code}
	if description != "" {
		body["description"] = description
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
