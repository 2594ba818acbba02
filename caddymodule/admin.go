package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves /leadproxy/ on Caddy's admin endpoint (localhost:2019 by
// default, under Caddy's own access rules).
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.leadproxy",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/leadproxy/leads", Handler: caddy.AdminHandlerFunc(handleLeads)},
		{Pattern: "/leadproxy/leads/", Handler: caddy.AdminHandlerFunc(handleLead)},
		{Pattern: "/leadproxy/stats", Handler: caddy.AdminHandlerFunc(handleStats)},
		{Pattern: "/leadproxy/forms", Handler: caddy.AdminHandlerFunc(handleForms)},
		{Pattern: "/leadproxy/report", Handler: caddy.AdminHandlerFunc(handleReport)},
		{Pattern: "/leadproxy/leads.csv", Handler: caddy.AdminHandlerFunc(handleLeadsCSV)},
	}
}

// The lead book is looked up at request time: the admin module is
// provisioned before the apps start.
func currentBook() (leadBook, error) {
	p := current.Load()
	if p == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errStoreNotReady}
	}
	return p.book, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func methodErr(allowed ...string) error {
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed; use %s", strings.Join(allowed, ", "))}
}

// leadSearch is the body of POST /leadproxy/leads.
type leadSearch struct {
	Status string `json:"status"`
	Form   string `json:"form"`
	Query  string `json:"q"`
	Limit  int    `json:"limit"`
	Cursor string `json:"cursor"`
}

// GET /leadproxy/leads?status=&form=&limit=&cursor=, or POST with those and
// the search terms as JSON ({"q": "+7999"}): Caddy logs every admin
// request's URI at info level, so terms that are personal data (a phone,
// a name) travel in the body only, and a GET with q is refused.
func handleLeads(w http.ResponseWriter, r *http.Request) error {
	st, f, err := listRequest(r)
	if err != nil {
		return err
	}
	leads, next, err := st.List(f)
	if err != nil {
		return listError(err)
	}
	out := map[string]any{"leads": leads}
	if next != "" {
		out["next_cursor"] = next
	}
	if leads == nil {
		out["leads"] = []any{}
	}
	return writeJSON(w, http.StatusOK, out)
}

// listError is a list's failure: the request's fault (a bad status or
// cursor), or in cluster mode the engine unreachable.
func listError(err error) error {
	if isEngineDown(err) {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
}

// GET|DELETE /leadproxy/leads/{id}, POST /leadproxy/leads/{id}/retry (a
// dry-run lead: sent when its form is no longer in dry run, else its
// previews made again and 200 with nothing sent)
func handleLead(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/leadproxy/leads/")
	id, action, _ := strings.Cut(rest, "/")
	if id == "" {
		return handleLeads(w, r)
	}
	st, err := currentBook()
	if err != nil {
		return err
	}
	notFound := func(err error) error {
		if errors.Is(err, queue.ErrNotFound) {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("lead %s not found", id)}
		}
		if isEngineDown(err) {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
		}
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		l, err := st.Get(id)
		if err != nil {
			return notFound(err)
		}
		return writeJSON(w, http.StatusOK, detailOf(l))
	case action == "" && r.Method == http.MethodDelete:
		if err := st.Delete(id); err != nil {
			return notFound(err)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case action == "retry" && r.Method == http.MethodPost:
		held, err := resendLead(r.Context(), st, id) // dryrun.go
		if err != nil {
			return notFound(err)
		}
		l, err := st.Get(id)
		if err != nil {
			return notFound(err)
		}
		if held { // still in dry run: previews made again, nothing sent
			return writeJSON(w, http.StatusOK, l)
		}
		return writeJSON(w, http.StatusAccepted, l)
	case action == "" || action == "retry":
		if action == "retry" {
			return methodErr("POST")
		}
		return methodErr("GET", "DELETE")
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such action %q", action)}
}

// GET /leadproxy/stats
func handleStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodErr("GET")
	}
	p := current.Load()
	if p == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errStoreNotReady}
	}
	s, err := p.stats(r.Context())
	if err != nil && s.Cluster == nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return writeStats(w, s, err)
}

// GET /leadproxy/forms: the form audit (which rules matched served pages);
// with ?all=1 also every form and lead widget discovered on them.
func handleForms(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodErr("GET")
	}
	out := map[string]any{"forms": formsReport()}
	if r.URL.Query().Get("all") == "1" { // form discovery: caddymodule/discovery.go
		out["discovered"] = discoveredReport()
	}
	return writeJSON(w, http.StatusOK, out)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)

// leadDetail is one lead as GET /leadproxy/leads/{id} shows it: the lead
// record (lead.Lead), each delivery with its last attempts added.
type leadDetail struct {
	*lead.Lead
	Deliveries []deliveryDetail `json:"deliveries,omitempty"`
}

type deliveryDetail struct {
	lead.Delivery
	History []attemptJSON `json:"history,omitempty"`
}

// attemptJSON is one attempt: no error text (the delivery's last_error has
// the latest), as in the dashboard.
type attemptJSON struct {
	At         time.Time `json:"at"`
	TookMs     int64     `json:"took_ms"`
	Outcome    string    `json:"outcome"`
	HTTPStatus int       `json:"http_status,omitempty"`
	CRMID      string    `json:"crm_id,omitempty"`
}

func detailOf(l *lead.Lead) leadDetail {
	out := leadDetail{Lead: l}
	for _, d := range l.Deliveries {
		dd := deliveryDetail{Delivery: d}
		for _, a := range d.History {
			dd.History = append(dd.History, attemptJSON{At: a.At, TookMs: a.Took.Milliseconds(), Outcome: a.Outcome, HTTPStatus: a.HTTPStatus, CRMID: a.CRMID})
		}
		out.Deliveries = append(out.Deliveries, dd)
	}
	return out
}
