package caddymodule

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

func init() {
	caddy.RegisterModule(Dashboard{})
	httpcaddyfile.RegisterHandlerDirective("leadproxy_dashboard", parseDashboard)
	// A terminal handler, like respond: after basic_auth and forward_auth,
	// so `handle /leads* { basic_auth {...} leadproxy_dashboard }` needs no
	// order line.
	httpcaddyfile.RegisterDirectiveOrder("leadproxy_dashboard", httpcaddyfile.Before, "respond")
}

// DefaultPageSize is how many leads a dashboard page lists.
const DefaultPageSize = 50

// Dashboard serves the "list of sent leads" as HTML: each lead's title,
// time, contact, a status icon per destination, the CRM's deal id and the
// last error; filters by status, form and text; a page per lead with every
// delivery and attempt; retry and delete buttons. It has no auth of its
// own: put it behind basic_auth or forward_auth.
//
// Every view is a query on the path the handler is mounted at (?lead=<id>,
// ?status=failed, ?asset=app.css), so it works under handle and
// handle_path alike and needs no prefix option.
type Dashboard struct {
	// PageSize is how many leads a page lists. Default 50, at most 500.
	PageSize int `json:"page_size,omitempty"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Dashboard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.leadproxy_dashboard",
		New: func() caddy.Module { return new(Dashboard) },
	}
}

// Provision finds the leadproxy app.
func (d *Dashboard) Provision(ctx caddy.Context) error {
	d.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	appIface, err := ctx.App("leadproxy")
	if err != nil {
		return fmt.Errorf("leadproxy app: %v", err)
	}
	d.app = appIface.(*App)
	if d.PageSize == 0 {
		d.PageSize = DefaultPageSize
	}
	return nil
}

// Validate checks the page size.
func (d *Dashboard) Validate() error {
	if d.PageSize < 1 || d.PageSize > queue.MaxListLimit {
		return fmt.Errorf("page_size %d: want 1 to %d", d.PageSize, queue.MaxListLimit)
	}
	return nil
}

// parseDashboard parses
//
//	leadproxy_dashboard {
//		page_size <n>
//	}
func parseDashboard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := new(Dashboard)
	err := d.UnmarshalCaddyfile(h.Dispenser)
	return d, err
}

// UnmarshalCaddyfile parses the directive.
func (d *Dashboard) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // "leadproxy_dashboard"
	if disp.NextArg() {
		return disp.ArgErr()
	}
	for disp.NextBlock(0) {
		switch opt := disp.Val(); opt {
		case "page_size":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			n, err := strconv.Atoi(disp.Val())
			if err != nil || n < 1 || n > queue.MaxListLimit {
				return disp.Errf("page_size %q: want a number from 1 to %d", disp.Val(), queue.MaxListLimit)
			}
			d.PageSize = n
			if disp.NextArg() {
				return disp.ArgErr()
			}
		default:
			return disp.Errf("leadproxy_dashboard: unknown option %q (want page_size)", opt)
		}
	}
	return nil
}

//go:embed dashboard
var dashboardFS embed.FS

// dashboardTmpl is parsed once; render clones it per request with the
// request's language and the site's time zone (dashFuncs).
var dashboardTmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"truncate": truncateRunes,
	"duration": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"leadLink": leadLink,
	"pct":      percent,
	"dict":     dict,
}).Funcs(dashFuncs("en", time.UTC, &http.Request{URL: &url.URL{}})).ParseFS(dashboardFS, "dashboard/*.html"))

// dashboardAsset is an embedded file served at ?asset=<name>&v=<hash>.
type dashboardAsset struct {
	body  []byte
	ctype string
	hash  string
}

var dashboardAssets = func() map[string]dashboardAsset {
	out := map[string]dashboardAsset{}
	for name, ctype := range map[string]string{"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"} {
		b, err := dashboardFS.ReadFile("dashboard/" + name)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		out[name] = dashboardAsset{body: b, ctype: ctype, hash: hex.EncodeToString(sum[:6])}
	}
	return out
}()

func assetURL(name string) string {
	return "?asset=" + name + "&v=" + dashboardAssets[name].hash
}

// Statuses, in the order the dashboard lists them.
var dashboardStatuses = []string{lead.StatusFailed, lead.StatusRetrying, lead.StatusPending, lead.StatusDelivered, lead.StatusSkipped, lead.StatusDryRun}

func statusLabel(s string) string {
	switch s {
	case lead.StatusDelivered:
		return "Delivered"
	case lead.StatusPending:
		return "Pending"
	case lead.StatusRetrying:
		return "Retrying"
	case lead.StatusFailed:
		return "Failed"
	case lead.StatusSkipped:
		return "Not sent"
	case lead.StatusDryRun:
		return "Dry run"
	}
	return s
}

func truncateRunes(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

func leadLink(id string) string { return "?lead=" + url.QueryEscape(id) }

// page is what every view has.
type page struct {
	Title, CSS, JS, Flash string
}

type actionsView struct {
	ID, CSRF, Return string
	Retryable        bool
}

type leadRow struct {
	*lead.Lead
	Link, LastError string
	Actions         actionsView
}

type chip struct {
	Status, Label, Link string
	Count               int
	On                  bool
}

type listView struct {
	page
	Filter        queue.Filter
	Statuses      []string
	Forms         []string
	Chips         []chip
	QueueDepth    int
	OldestPending string
	Leads         []leadRow
	First, Next   string
	Export        string // the CSV of this filter
}

type leadView struct {
	page
	Lead     *lead.Lead
	Status   string
	Actions  actionsView
	Attempts []attemptView
}

type errorView struct {
	page
	Message string
}

// ServeHTTP serves the dashboard; it never calls next.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if name := q.Get("asset"); name != "" {
			d.serveAsset(w, r, name)
			return nil
		}
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		if id := q.Get("lead"); id != "" {
			d.serveLead(w, r, id)
			return nil
		}
		if q.Get("view") == "forms" { // form discovery: caddymodule/discovery.go
			d.serveForms(w, r)
			return nil
		}
		if q.Get("export") == "csv" {
			d.serveCSV(w, r)
			return nil
		}
		if q.Get("view") == "report" {
			d.serveReport(w, r)
			return nil
		}
		d.serveList(w, r)
		return nil
	case http.MethodPost:
		d.serveAction(w, r)
		return nil
	}
	h.Set("Allow", "GET, HEAD, POST")
	d.serveError(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST.")
	return nil
}

func (d *Dashboard) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := dashboardAssets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", `"`+a.hash+`"`)
	if r.URL.Query().Get("v") == a.hash {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "private, no-cache")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}

func (d *Dashboard) newPage(title string, q url.Values) page {
	p := page{Title: title, CSS: assetURL("app.css"), JS: assetURL("app.js")}
	switch q.Get("done") {
	case "retry":
		p.Flash = "Queued for sending now."
	case "preview":
		p.Flash = "Still in dry run: the previews were made again and nothing was sent."
	case "delete":
		p.Flash = "Lead deleted."
	}
	return p
}

func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, v any) {
	var buf bytes.Buffer
	tmpl, err := dashboardTmpl.Clone()
	if err == nil {
		err = tmpl.Funcs(dashFuncs(dashLang(w, r), d.app.location(), r)).ExecuteTemplate(&buf, name, v)
	}
	if err != nil {
		d.logger.Error("dashboard template", zap.String("template", name), zap.Error(err))
		http.Error(w, "dashboard error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// no-transform: the leadproxy handler, if it wraps this one, leaves the page alone.
	h.Set("Cache-Control", "no-store, no-transform")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func (d *Dashboard) serveError(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	d.render(w, r, status, "error", errorView{page: d.newPage(title, nil), Message: msg})
}

// serveEngineDown: in cluster mode, the fleet's list is out of reach.
func (d *Dashboard) serveEngineDown(w http.ResponseWriter, r *http.Request) {
	d.serveError(w, r, http.StatusServiceUnavailable, "Unavailable", "The cluster engine (PostgreSQL) is unreachable: leads are still captured on this node; reload in a moment.")
}

func (d *Dashboard) store(w http.ResponseWriter, r *http.Request) leadBook {
	st := d.app.book()
	if st == nil {
		d.serveError(w, r, http.StatusServiceUnavailable, "Starting", "The lead store is not open yet; reload in a moment.")
	}
	return st
}

func (d *Dashboard) serveList(w http.ResponseWriter, r *http.Request) {
	st := d.store(w, r)
	if st == nil {
		return
	}
	q := r.URL.Query()
	if q.Get("q") != "" {
		// Search terms are personal data and ride in the URI, which the
		// site's access log (when it has one) writes: skip that line.
		caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
	}
	f := queue.Filter{Status: q.Get("status"), Form: q.Get("form"), Query: strings.TrimSpace(q.Get("q")), Cursor: q.Get("cursor"), Limit: d.PageSize}
	leads, next, err := st.List(f)
	if isEngineDown(err) {
		d.serveEngineDown(w, r)
		return
	}
	if errors.Is(err, queue.ErrBadStatus) {
		d.serveError(w, r, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	if err != nil {
		d.serveError(w, r, http.StatusBadRequest, "Leads", "This page link is no longer valid.")
		return
	}
	csrf := csrfFor(w, r)
	v := listView{page: d.newPage("Leads", q), Filter: f, Statuses: dashboardStatuses, Export: exportLink(f)}
	here := filterQuery(f)
	if f.Cursor != "" {
		here.Set("cursor", f.Cursor)
	}
	for _, l := range leads {
		row := leadRow{Lead: l, Link: leadLink(l.ID),
			Actions: actionsView{ID: l.ID, CSRF: csrf, Return: "?" + here.Encode(), Retryable: retryable(l)}}
		for _, dl := range l.Deliveries {
			if dl.LastError != "" && dl.Status != lead.StatusDelivered {
				row.LastError = dl.LastError
			}
		}
		v.Leads = append(v.Leads, row)
	}
	if next != "" {
		nq := filterQuery(f)
		nq.Set("cursor", next)
		v.Next = "?" + nq.Encode()
	}
	if f.Cursor != "" {
		v.First = "?" + filterQuery(f).Encode()
	}
	v.Forms = formNames(f.Form, leads)
	if s, err := st.Stats(); err == nil {
		v.QueueDepth = s.QueueDepth
		if s.OldestPendingSeconds > 0 {
			v.OldestPending = (time.Duration(s.OldestPendingSeconds) * time.Second).String()
		}
		all := chip{Status: "all", Label: "All", Link: "?", Count: s.Leads, On: f.Status == ""}
		v.Chips = append(v.Chips, all)
		for _, status := range dashboardStatuses {
			v.Chips = append(v.Chips, chip{Status: status, Label: statusLabel(status), Count: s.ByStatus[status],
				Link: "?" + url.Values{"status": {status}}.Encode(), On: f.Status == status})
		}
	}
	d.render(w, r, http.StatusOK, "list", v)
}

// filterQuery is the list's filter as a query, without the cursor.
func filterQuery(f queue.Filter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"status": f.Status, "form": f.Form, "q": f.Query} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// formNames lists the forms to filter by: those of the form rules in the
// config, the API's and auto capture's, and those on the page.
func formNames(current string, leads []*lead.Lead) []string {
	set := map[string]bool{"api": true}
	for _, s := range formsReport() {
		set[s.Form] = true
	}
	for _, l := range leads {
		set[l.Form] = true
	}
	if current != "" {
		set[current] = true
	}
	delete(set, "")
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func retryable(l *lead.Lead) bool {
	for _, dl := range l.Deliveries {
		if dl.Status != lead.StatusDelivered {
			return true
		}
	}
	return false
}

func (d *Dashboard) serveLead(w http.ResponseWriter, r *http.Request, id string) {
	st := d.store(w, r)
	if st == nil {
		return
	}
	l, err := st.Get(id)
	if errors.Is(err, queue.ErrNotFound) {
		d.serveError(w, r, http.StatusNotFound, "Not found", "No such lead: it may have been deleted or purged after the retention period.")
		return
	}
	if err != nil {
		d.logger.Error("dashboard: reading a lead", zap.String("lead", id), zap.Error(err))
		d.serveError(w, r, http.StatusInternalServerError, "Error", "The lead could not be read; see Caddy's log.")
		return
	}
	v := leadView{page: d.newPage(l.Title, r.URL.Query()), Lead: l, Status: l.Status(), Attempts: attemptsOf(l),
		Actions: actionsView{ID: l.ID, CSRF: csrfFor(w, r), Return: leadLink(l.ID), Retryable: retryable(l)}}
	d.render(w, r, http.StatusOK, "lead", v)
}

// attemptView is one row of the detail view's attempt list.
type attemptView struct {
	Destination string
	lead.Attempt
}

// attemptsOf lists every destination's stored attempts, newest first.
func attemptsOf(l *lead.Lead) []attemptView {
	var out []attemptView
	for _, d := range l.Deliveries {
		for _, a := range d.History {
			out = append(out, attemptView{Destination: d.Destination, Attempt: a})
		}
	}
	slices.SortStableFunc(out, func(a, b attemptView) int { return b.At.Compare(a.At) })
	return out
}

// dashboardCOP rejects cross-origin POSTs (Sec-Fetch-Site, else Origin);
// the CSRF token covers browsers that send neither.
var dashboardCOP = http.NewCrossOriginProtection()

// serveAction runs a retry or delete button, then sends the browser back
// to the view it came from (post, redirect, get).
func (d *Dashboard) serveAction(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := dashboardCOP.Check(r); err != nil {
		d.serveError(w, r, http.StatusForbidden, "Forbidden", "Cross-site request refused.")
		return
	}
	if err := r.ParseForm(); err != nil {
		d.serveError(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	if !csrfValid(r) {
		d.serveError(w, r, http.StatusForbidden, "Expired form", "The page was too old (or Caddy restarted). Go back, reload it and try again.")
		return
	}
	st := d.store(w, r)
	if st == nil {
		return
	}
	id, action := r.PostForm.Get("lead"), r.PostForm.Get("action")
	back := r.URL.Query()
	back.Del("done")
	var err error
	switch action {
	case "retry":
		var held bool
		if held, err = resendLead(r.Context(), st, id); held {
			action = "preview"
		}
	case "delete":
		err = st.Delete(id)
		if err == nil {
			back.Del("lead")
		}
	default:
		d.serveError(w, r, http.StatusBadRequest, "Bad request", "Unknown action.")
		return
	}
	if errors.Is(err, queue.ErrNotFound) {
		d.serveError(w, r, http.StatusNotFound, "Not found", "No such lead: it may have been deleted already.")
		return
	}
	if err != nil {
		d.logger.Error("dashboard: "+action, zap.String("lead", id), zap.Error(err))
		d.serveError(w, r, http.StatusInternalServerError, "Error", "That did not work; see Caddy's log.")
		return
	}
	d.logger.Info("dashboard: lead "+map[string]string{"retry": "retried", "preview": "previewed again (dry run)", "delete": "deleted"}[action], zap.String("lead", id))
	back.Set("done", action)
	// A relative reference: the browser keeps the path it posted to, which
	// handle_path may have stripped from r.URL.
	w.Header().Set("Location", "?"+back.Encode())
	w.WriteHeader(http.StatusSeeOther)
}

// CSRF: a signed double-submit token. The cookie holds a random nonce; the
// forms carry HMAC(key, nonce) under a per-process key, so a cookie planted
// from a sibling subdomain is useless without a page rendered by this
// Caddy. A restart changes the key and old pages get "expired form".
const csrfCookie = "leadproxy_dashboard_csrf"

var csrfKey = func() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}()

func csrfToken(nonce string) string {
	m := hmac.New(sha256.New, csrfKey)
	m.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfFor returns the token for this browser's forms, setting its cookie
// the first time.
func csrfFor(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return csrfToken(c.Value)
	}
	b := make([]byte, 32)
	rand.Read(b)
	nonce := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: nonce, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return csrfToken(nonce)
}

func csrfValid(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	return hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(csrfToken(c.Value)))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Dashboard)(nil)
	_ caddy.Validator             = (*Dashboard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Dashboard)(nil)
	_ caddyfile.Unmarshaler       = (*Dashboard)(nil)
)
