package caddymodule

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// csvColumns are the export's columns, in order.
var csvColumns = []string{"id", "created_at", "status", "form", "title", "name", "phone", "email", "comment",
	"source", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "landing", "referrer", "visit_id",
	"deliveries", "extra"}

// listRequest is what the list and the export share: GET, the store and
// the filter of the query.
func listRequest(r *http.Request) (leadBook, queue.Filter, error) {
	var s leadSearch
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if q.Has("q") {
			return nil, queue.Filter{}, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`search terms go in a POST body ({"q": "..."}): the admin API logs each request's URI`)}
		}
		s = leadSearch{Status: q.Get("status"), Form: q.Get("form"), Cursor: q.Get("cursor")}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, queue.Filter{}, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("limit %q: want a positive number", v)}
			}
			s.Limit = n
		}
	case http.MethodPost:
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&s); err != nil {
			return nil, queue.Filter{}, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("search body: want JSON like {\"q\": \"...\", \"limit\": 50}: %v", err)}
		}
		if s.Limit < 0 {
			return nil, queue.Filter{}, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("limit %d: want a positive number", s.Limit)}
		}
	default:
		return nil, queue.Filter{}, methodErr("GET", "POST")
	}
	st, err := currentBook()
	if err != nil {
		return nil, queue.Filter{}, err
	}
	return st, queue.Filter{Status: s.Status, Form: s.Form, Query: s.Query, Cursor: s.Cursor, Limit: s.Limit}, nil
}

// GET /leadproxy/leads.csv?status=&form= (or POST with the search as
// JSON, as for the list): the list's filters, every page, as CSV.
func handleLeadsCSV(w http.ResponseWriter, r *http.Request) error {
	st, f, err := listRequest(r)
	if err != nil {
		return err
	}
	// The first page before any byte is sent, so a bad filter is a 400.
	f.Limit = queue.MaxListLimit
	leads, next, err := st.List(f)
	if err != nil {
		return listError(err)
	}
	csvHeaders(w, adminLocation())
	return writeLeadsCSV(w, st, f, leads, next, adminLocation())
}

// writeLeadsCSV streams the leads page by page (queue.MaxListLimit at a
// time, flushed after each): the export is never built in memory. It
// starts with a UTF-8 byte order mark, so Excel reads Cyrillic right.
func writeLeadsCSV(w io.Writer, st leadBook, f queue.Filter, leads []*lead.Lead, next string, loc *time.Location) error {
	if _, err := io.WriteString(w, "\uFEFF"); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // RFC 4180, as Excel writes it
	cw.Write(csvColumns)
	for {
		for _, l := range leads {
			cw.Write(csvRow(l, loc))
		}
		cw.Flush()
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		if err := cw.Error(); err != nil {
			return err // the client went away
		}
		if next == "" {
			return nil
		}
		f.Cursor = next
		var err error
		if leads, next, err = st.List(f); err != nil {
			return err
		}
	}
}

func csvRow(l *lead.Lead, loc *time.Location) []string {
	v := l.Visit
	if v == nil {
		v = &lead.Visit{}
	}
	var dests []string
	for _, d := range l.Deliveries {
		s := d.Destination + ": " + d.Status
		if d.CRMID != "" {
			s += " " + d.CRMID
		}
		dests = append(dests, s)
	}
	var extra []string
	for _, k := range lead.SortedKeys(l.Extra) {
		extra = append(extra, k+": "+l.Extra[k])
	}
	row := []string{l.ID, l.CreatedAt.In(loc).Format("2006-01-02 15:04:05"), l.Status(), l.Form, l.Title, l.Name, l.Phone, l.Email, l.Comment,
		v.Source, v.UTM["source"], v.UTM["medium"], v.UTM["campaign"], v.UTM["term"], v.UTM["content"], v.Landing, v.Referrer, v.ID,
		strings.Join(dests, "; "), strings.Join(extra, "; ")}
	for i, s := range row {
		row[i] = csvSafe(s)
	}
	return row
}

// csvSafe defuses a cell a spreadsheet would run as a formula (=, @, tab,
// CR, or + and - but for a phone number), by a leading apostrophe, as
// OWASP advises. Visitors type these cells.
func csvSafe(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '@', '\t', '\r':
		return "'" + s
	case '+', '-':
		if strings.Trim(s[1:], "0123456789 ()-") != "" {
			return "'" + s
		}
	}
	return s
}

// exportLink is the dashboard's CSV link for a list filter.
func exportLink(f queue.Filter) string {
	q := filterQuery(f)
	q.Set("export", "csv")
	return "?" + q.Encode()
}

// serveCSV is the dashboard's export (?export=csv and the list's filters):
// the same CSV as the admin API's, for people without the admin endpoint.
func (d *Dashboard) serveCSV(w http.ResponseWriter, r *http.Request) {
	st := d.store(w, r)
	if st == nil {
		return
	}
	q := r.URL.Query()
	f := queue.Filter{Status: q.Get("status"), Form: q.Get("form"), Query: strings.TrimSpace(q.Get("q")), Limit: queue.MaxListLimit}
	leads, next, err := st.List(f)
	if isEngineDown(err) {
		d.serveEngineDown(w, r)
		return
	}
	if err != nil {
		d.serveError(w, r, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	loc := d.app.location()
	csvHeaders(w, loc)
	if err := writeLeadsCSV(w, st, f, leads, next, loc); err != nil {
		d.logger.Debug("dashboard export ended early", zap.Error(err))
	}
}

func csvHeaders(w http.ResponseWriter, loc *time.Location) {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="leads-`+time.Now().In(loc).Format("2006-01-02")+`.csv"`)
	h.Set("Cache-Control", "no-store")
}
