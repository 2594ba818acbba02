package caddymodule

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/leadproxy/leadproxy/report"
	"github.com/leadproxy/leadproxy/visit"
)

// siteLocation is the running config's time zone, for the admin API,
// which is provisioned before (and apart from) the app.
var siteLocation atomic.Pointer[time.Location]

// publishSettings makes this config's time zone the admin API's.
func (a *App) publishSettings() { siteLocation.Store(a.location()) }

func adminLocation() *time.Location {
	if loc := siteLocation.Load(); loc != nil {
		return loc
	}
	return time.Local
}

// buildReport answers a report query from the open stores. Visits
// confirmed a moment ago are written first, so they count.
func buildReport(p *pooledStore, q report.Query) (*report.Report, error) {
	if p.visits != nil {
		p.visits.rec.Flush()
	}
	return report.Build(q, p.visitDB(), p.book)
}

// visitDB is the visit store, or nil (a nil *visit.DB in the interface
// would not be nil).
func (p *pooledStore) visitDB() visit.Store {
	if p.visits == nil {
		return nil
	}
	return p.visits.db
}

// GET /leadproxy/report?by=source|utm_source|utm_campaign|landing|form|day&from=&to=
func handleReport(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodErr("GET")
	}
	p := current.Load()
	if p == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errStoreNotReady}
	}
	q, err := report.ParseQuery(r.URL.Query(), adminLocation(), time.Now())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	rep, err := buildReport(p, q)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return writeJSON(w, http.StatusOK, rep)
}
