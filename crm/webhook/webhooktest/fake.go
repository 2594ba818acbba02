// Package webhooktest is a Standard Webhooks receiver for tests: it checks
// each request's signature the way a receiver does, answers with the id it
// stores the lead under, and renders crmtest faults as a receiver behind a
// typical proxy would.
package webhooktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/crm/webhook"
)

// Secret is the signing secret the receiver verifies with.
const Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// Fake is the receiver.
type Fake struct {
	URL    string // the hook's address, with a path
	Faults *crmtest.Faults

	srv      *httptest.Server
	key      []byte
	next     atomic.Int64
	Received crmtest.Log[webhook.Envelope]
}

// New starts a receiver.
func New() *Fake {
	key, err := webhook.DecodeSecret(Secret)
	if err != nil {
		panic(err)
	}
	f := &Fake{Faults: &crmtest.Faults{}, key: key}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL + "/hooks/leads"
	return f
}

// Close stops the receiver.
func (f *Fake) Close() { f.srv.Close() }

// Caddyfile is the destination block's lines for this receiver.
func (f *Fake) Caddyfile() string { return "url " + f.URL + "\nsecret " + Secret }

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	// Read first: the server notices a client that gave up (Slow) only
	// once the body is consumed.
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	switch f.Faults.Next() {
	case crmtest.Unauthorized:
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	case crmtest.Validation:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, `{"error":"data.phone: required"}`)
		return
	case crmtest.RateJSON:
		w.Header().Set("Retry-After", "30")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":"rate limited"}`)
		return
	case crmtest.RateHTML:
		crmtest.HTML(w, http.StatusTooManyRequests, "429 Too Many Requests")
		return
	case crmtest.ServerError:
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case crmtest.Unavailable, crmtest.QueryLimit:
		crmtest.HTML(w, http.StatusServiceUnavailable, "503 Service Unavailable")
		return
	case crmtest.Slow:
		f.Faults.Wait(r)
	case crmtest.Reset:
		crmtest.ResetConn(w)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/hooks/leads" {
		http.NotFound(w, r)
		return
	}
	if err := webhook.Verify(f.key, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var env webhook.Envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Data == nil {
		http.Error(w, "not a lead.created envelope", http.StatusBadRequest)
		return
	}
	f.Received.Add(env)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":%d}`, f.next.Add(1))
}
