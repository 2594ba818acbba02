package crmtest_test

// A minimal destination, as docs/destinations.md ("Adding a destination")
// shows it: its option table, its field mapping, and a fake; the
// conformance suite does the rest. Kept compiling and passing here so the
// page stays true.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/crm/crmtest"
	"github.com/leadproxy/leadproxy/lead"
)

// --- the adapter (begin) ---

func init() { caddy.RegisterModule(Example{}) }

// Example creates leads in the (imaginary) Example CRM.
type Example struct {
	crm.Common
	// Token is the API token. Required; use a placeholder.
	Token string `json:"token,omitempty"`
	// Source is the lead's source. Default "website".
	Source string `json:"source,omitempty"`

	token string
}

// CaddyModule returns the Caddy module information.
func (Example) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: crm.Namespace + ".example", New: func() caddy.Module { return new(Example) }}
}

// Spec declares the options of destination <name> example { ... }.
func (e *Example) Spec() crm.Spec {
	return crm.Spec{Type: "example", Common: &e.Common, Options: []crm.Option{
		{Name: "base_url", Required: true, Doc: "https://<account>.example.com"},
		{Name: "token", Kind: crm.SecretText, Target: &e.Token, Into: &e.token, Required: true, Doc: "an API token"},
		{Name: "source", Target: &e.Source, Default: "website"},
	}}
}

// Account is the Example CRM account: the base_url's host (each account
// has its own subdomain), so its rate limit is shared by destinations on
// it (lead.Accounted).
func (e *Example) Account() string { return crm.AccountKey("example", crm.HostOf(e.BaseURL)) }

// UnmarshalCaddyfile parses the block declared by Spec.
func (e *Example) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return e.Spec().Parse(d) }

// Provision resolves placeholders and checks the options.
func (e *Example) Provision(caddy.Context) error {
	if err := e.Spec().Resolve(); err != nil {
		return err
	}
	return e.Common.Provision("")
}

// DefaultRate is the CRM's documented 5 requests a second.
func (e *Example) DefaultRate() (int, time.Duration) { return e.RateOr(5, time.Second, 1) }

// Send creates the lead and returns its id.
func (e *Example) Send(ctx context.Context, l *lead.Lead) (string, error) {
	body := map[string]string{
		"name":    l.Name,
		"phone":   lead.NormalizePhone(l.Phone, ""),
		"email":   l.Email,
		"comment": l.Summary(),
		"source":  crm.FirstNonEmpty(e.Source, "website"),
	}
	resp, err := crm.DoJSON(ctx, e.Client(), http.MethodPost, e.BaseURL+"/v1/leads", body, crm.Bearer(e.token))
	if err == nil {
		var ans struct{ Error string }
		json.Unmarshal(resp.Body, &ans)
		err = crm.Classify(resp, ans.Error)
	}
	if err != nil {
		return "", fmt.Errorf("example: create lead: %w", err)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(resp.Body, &created); err != nil || created.ID == "" {
		return "", fmt.Errorf("example: create lead: %w", crm.Unparsable(resp, err))
	}
	return created.ID, nil
}

// Preview is what Send would send for l, for the dry run: Send itself,
// its request answered with the CRM's documented success instead of sent.
func (e *Example) Preview(ctx context.Context, l *lead.Lead) ([]crm.PreviewRequest, error) {
	return crm.PreviewSend(ctx, e, l, func(*http.Request, []byte) *crm.Response {
		return crm.JSONAnswer(`{"id":"L-1"}`)
	}, e.token)
}

// --- the adapter (end) ---

// exampleFake is Example CRM as its (imaginary) docs describe it.
func exampleFake() (string, *crmtest.Faults, func()) {
	faults := &crmtest.Faults{}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch faults.Next() {
		case crmtest.Unauthorized:
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"bad token"}`)
			return
		case crmtest.Validation:
			w.WriteHeader(422)
			io.WriteString(w, `{"error":"phone: invalid"}`)
			return
		case crmtest.RateJSON:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":"slow down"}`)
			return
		case crmtest.RateHTML:
			crmtest.HTML(w, 429, "Too Many Requests")
			return
		case crmtest.ServerError:
			w.WriteHeader(500)
			return
		case crmtest.Unavailable, crmtest.QueryLimit:
			crmtest.HTML(w, 503, "Service Unavailable")
			return
		case crmtest.Slow:
			faults.Wait(r)
		case crmtest.Garbage:
			io.WriteString(w, "<html>ok</html>")
			return
		case crmtest.Reset:
			crmtest.ResetConn(w)
			return
		}
		var l map[string]string
		if r.URL.Path != "/v1/leads" || r.Header.Get("Authorization") != "Bearer ex-token" || json.Unmarshal(body, &l) != nil {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"bad token"}`)
			return
		}
		n++
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"id":"L%d"}`, n)
	}))
	return "base_url " + srv.URL + "\ntoken ex-token", faults, srv.Close
}

func TestExampleConformance(t *testing.T) {
	crmtest.Run(t, crmtest.Conformance{
		New:  func() crmtest.Destination { return new(Example) },
		Fake: exampleFake,
		Rate: 5, Per: time.Second,
		// Another subdomain is another account; another token of one
		// subdomain is not.
		OtherAccount: func(l string) string { return crmtest.WithOption(l, "base_url", "https://other.example.com") },
		SameAccount:  func(l string) string { return crmtest.WithOption(l, "token", "second-token") },
	})
}
