package caddymodule

import (
	"net/http"

	"github.com/leadproxy/leadproxy/intercept"
)

// serveForms is the dashboard's forms page (?view=forms): discovery, with
// a rule to paste for each form.
func (d *Dashboard) serveForms(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusOK, "forms", map[string]any{
		"page": d.newPage("Forms", r.URL.Query()), "Found": discoveredReport()})
}

// discoveredReport is form discovery over every active handler's audit:
// the forms and lead widgets seen on sampled pages, covered or not, each
// with a ready rule (GET /leadproxy/forms?all=1, the dashboard's forms page).
func discoveredReport() []intercept.Found {
	auditors.Lock()
	list := make([]*intercept.Auditor, 0, len(auditors.set))
	for a := range auditors.set {
		list = append(list, a)
	}
	auditors.Unlock()
	out := []intercept.Found{}
	for _, a := range list {
		out = append(out, a.Discovered()...)
	}
	return out
}
