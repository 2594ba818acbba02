package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the handler's options.
const (
	DefaultPrefix    = "/_leadproxy"
	DefaultMaxBody   = 1 << 20  // 1 MiB: far above any contact form
	DefaultMaxUpload = 32 << 20 // multipart with attachments, spooled to disk
	memBody          = 256 << 10
)

// Handler captures the site's form submissions as leads, injects the
// capture script into HTML pages, and serves the script and endpoints
// under Prefix. The visitor's request reaches the upstream unchanged.
type Handler struct {
	// Prefix is where the script and endpoints live. Default /_leadproxy.
	Prefix string `json:"prefix,omitempty"`
	// SendTo names the destinations of this site's leads. Default: every
	// destination of the app.
	SendTo []string `json:"send_to,omitempty"`
	// Inject turns the script tag injection on or off. Default on.
	Inject *bool `json:"inject,omitempty"`
	// APIKey enables the Roistat-compatible API for this site. Use a
	// placeholder ({env.LEADPROXY_API_KEY}).
	APIKey string `json:"api_key,omitempty"`
	// Auto captures every form with an email or phone field, with no rule.
	Auto bool `json:"auto,omitempty"`
	// Forms are the capture rules, one per form.
	Forms []*intercept.Rule `json:"forms,omitempty"`
	// MaxBody is the largest urlencoded/JSON body captured; larger ones
	// pass through uncaptured, bytes intact. Default 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`
	// MaxUpload is the largest multipart body captured (file parts are
	// skipped; the body is spooled to a temporary file). Default 32 MiB.
	MaxUpload int64 `json:"max_upload,omitempty"`
	// PhoneRegion is the country assumed for phone numbers without a
	// country code. Default RU.
	PhoneRegion string `json:"phone_region,omitempty"`
	// Charset decodes form bodies that are not UTF-8 when the page's
	// charset is unknown. Default windows-1251.
	Charset string `json:"charset,omitempty"`
	// Audit tunes the form audit: sampled pages are checked for every
	// submit, click and selector of the rules. Default: on, one sample per
	// path a minute, flagged after 24h of traffic without a match.
	Audit *AuditOptions `json:"audit,omitempty"`
	// Visits turns the proxy's own visit recording on or off (visits.go).
	// Default on.
	Visits *bool `json:"visits,omitempty"`
	// DryRun captures and lists this site's leads with what each
	// destination would be sent, and sends nothing (dryrun.go). A form's
	// own dry_run wins over it.
	DryRun bool `json:"dry_run,omitempty"`

	app    *App
	logger *zap.Logger
	rules  map[string]*intercept.Rule
	inject *intercept.InjectConfig
	// scriptConfig builds the capture script, which is served with the
	// site's marker tokens baked in (marker.go).
	scriptConfig intercept.ScriptConfig
	scripts      *scriptCache
	apiKey       string
	tmpDir       string // where large multipart bodies spool (os.TempDir at Provision)
	collect      *intercept.Limiter
	keyGuesses   *intercept.GuessGuard // Roistat API keys
	auditor      *intercept.Auditor
	knownDests   map[string]bool // Caddyfile parsing only
	sites        *sitesSeen      // sites this handler captured for (dryrun.go)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.leadproxy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision compiles the rules and builds the script.
func (hd *Handler) Provision(ctx caddy.Context) error {
	hd.tmpDir = os.TempDir()
	hd.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	appIface, err := ctx.App("leadproxy")
	if err != nil {
		return fmt.Errorf("leadproxy app: %v", err)
	}
	hd.app = appIface.(*App)
	if hd.Prefix == "" {
		hd.Prefix = DefaultPrefix
	}
	if hd.MaxBody <= 0 {
		hd.MaxBody = DefaultMaxBody
	}
	if hd.MaxUpload <= 0 {
		hd.MaxUpload = DefaultMaxUpload
	}
	if hd.PhoneRegion == "" {
		hd.PhoneRegion = lead.DefaultRegion
	}
	hd.PhoneRegion = strings.ToUpper(hd.PhoneRegion)
	if err := lead.CheckRegion(hd.PhoneRegion); err != nil {
		return err
	}
	if hd.Charset != "" {
		if err := intercept.CheckCharset(hd.Charset); err != nil {
			return err
		}
	}
	hd.apiKey = caddy.NewReplacer().ReplaceAll(hd.APIKey, "")
	hd.rules = map[string]*intercept.Rule{}
	for _, r := range hd.Forms {
		if err := r.Validate(); err != nil {
			return err
		}
		if prev, dup := hd.rules[r.ID()]; dup {
			return fmt.Errorf("form %q and form %q share an id; titles must differ", prev.Title, r.Title)
		}
		hd.rules[r.ID()] = r
	}
	hd.scriptConfig = intercept.ScriptConfig{Prefix: hd.Prefix, Rules: hd.Forms, Auto: hd.Auto}
	hd.scripts = &scriptCache{}
	if _, _, err = intercept.BuildScript(hd.scriptConfig); err != nil {
		return fmt.Errorf("building capture script: %v", err)
	}
	if hd.Inject == nil || *hd.Inject {
		hd.inject = &intercept.InjectConfig{ScriptSrc: hd.Prefix + "/c.js", OnResult: countInject,
			Verdicts: intercept.NewVerdictCache(), Encoded: intercept.NewEncodedCache(), OnScan: countScan}
	}
	hd.collect = newCollectLimiter()
	hd.keyGuesses = intercept.NewGuessGuard(apiKeyFreeGuesses, apiKeyMaxWait)
	if hd.auditor = newAuditor(hd.Forms, hd.Audit, hd.logger); hd.auditor != nil {
		registerAuditor(hd.auditor)
	}
	hd.sites = new(sitesSeen)
	registerHandler(hd)
	return nil
}

// Cleanup stops this config's form audit.
func (hd *Handler) Cleanup() error {
	unregisterHandler(hd)
	if hd.auditor != nil {
		unregisterAuditor(hd.auditor)
	}
	return nil
}

// Validate checks send_to names against the app's destinations.
func (hd *Handler) Validate() error {
	check := func(where string, names []string) error {
		for _, n := range names {
			if !hd.app.HasDestination(n) {
				return fmt.Errorf("%ssend_to: unknown destination %q (defined: %s)", where, n, strings.Join(hd.app.Destinations(), ", "))
			}
		}
		return nil
	}
	if err := check("", hd.SendTo); err != nil {
		return err
	}
	for _, r := range hd.Forms {
		if err := check(fmt.Sprintf("form %q: ", r.Title), r.SendTo); err != nil {
			return err
		}
	}
	return nil
}

// ServeHTTP serves the endpoints under Prefix, captures form posts, and
// injects the script into HTML responses.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	hd.observeVisit(w, r)
	if rest, ok := strings.CutPrefix(r.URL.Path, hd.Prefix+"/"); ok {
		if handled, err := hd.serveEndpoint(w, r, rest); handled {
			return err
		}
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		hd.captureSafely(w, r)
	}
	if r.Method == http.MethodGet && hd.auditor.Want(r.URL.Path) {
		s := &sampler{ResponseWriter: w, a: hd.auditor, path: r.Host + r.URL.Path}
		defer s.finish()
		w = s
	}
	if hd.inject == nil {
		return next.ServeHTTP(w, r)
	}
	ww, finish := intercept.Wrap(w, r, hd.inject)
	err := next.ServeHTTP(ww, r)
	if ferr := finish(); err == nil && ferr != nil {
		hd.logger.Debug("injection finish", zap.Error(ferr))
	}
	return err
}

func (hd *Handler) serveEndpoint(w http.ResponseWriter, r *http.Request, rest string) (bool, error) {
	switch rest {
	case "c.js":
		hd.serveScript(w, r)
		return true, nil
	case "collect":
		hd.serveCollect(w, r)
		return true, nil
	case "api/proxy/1.0/leads/add":
		if hd.apiKey == "" {
			return false, nil
		}
		hd.serveRoistatAPI(w, r)
		return true, nil
	}
	return false, nil
}

func (hd *Handler) serveScript(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd.app.waitStarted(r.Context()) // first boot: the store's key, if it is the one
	s, err := hd.scriptFor(siteOf(r), time.Now())
	if err != nil { // BuildScript took this config at Provision
		hd.logger.Error("capture script not built", zap.Error(err))
		http.Error(w, "capture script unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	// Five minutes: the tokens in it change every hour and live a day. A
	// script without tokens (the store did not open) is not kept: the
	// next page after the store is back gets signed markers.
	if s.unsigned {
		h.Set("Cache-Control", "no-store")
	} else {
		h.Set("Cache-Control", "public, max-age=300")
	}
	h.Set("ETag", s.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, s.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(s.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(s.body)
	}
}

// captureSafely captures a lead from a form post if a rule says so. It
// never fails the request: a panic or a store error is logged and counted
// and the visitor's request goes on to the site.
func (hd *Handler) captureSafely(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			hd.logger.Error("capture panicked; request passed on", zap.Any("panic", p))
			countCaptureFailure("panic")
		}
	}()
	hd.capture(w, r)
}

// match finds the rule a post belongs to: the script's marker first, then
// the server-side post rules.
func (hd *Handler) match(r *http.Request) (rule *intercept.Rule, mech string, m *intercept.Marker, candidates []*intercept.Rule) {
	m, _ = intercept.ReadMarker(r)
	m = hd.verifyMarker(r, m)
	// A marker names the path its form posts to; only a click rule's may
	// name none (the button's request URL is unknown), so a forged marker
	// with an empty path cannot make every POST of a submit rule's site a lead.
	if m != nil && (m.Action == r.URL.Path || m.Action == "") {
		if m.Rule == "auto" && hd.Auto && m.Action != "" {
			return nil, lead.MechAuto, m, nil
		}
		if rule := hd.rules[m.Rule]; rule != nil && (m.Action != "" || rule.Mechanism() == lead.MechClick) {
			return rule, rule.Mechanism(), m, nil
		}
	}
	for _, rule := range hd.Forms {
		if rule.Post != "" && rule.MatchPath(r.URL.Path) {
			candidates = append(candidates, rule)
		}
	}
	return nil, "", nil, candidates
}

func (hd *Handler) capture(w http.ResponseWriter, r *http.Request) {
	if ablation == "nocapture" {
		return
	}
	rule, mech, marker, candidates := hd.match(r)
	if marker != nil {
		intercept.ExpireMarker(w, r) // one marker, one post
	}
	if mech == "" && len(candidates) == 0 {
		return
	}
	defer hd.app.holdCapture(r.Context())() // the store stays open until this lead is in it
	ct := r.Header.Get("Content-Type")
	max := hd.MaxBody
	if strings.HasPrefix(strings.ToLower(ct), "multipart/") {
		max = hd.MaxUpload
	}
	if r.ContentLength > max {
		countCaptureFailure("too_large")
		return // streamed through untouched
	}
	body, err := intercept.ReadBody(r.Body, r.ContentLength, memBody, max, hd.tmpDir)
	r.Body = body.Replay(r.Body)
	if err != nil {
		var he caddyhttp.HandlerError
		var disk *os.PathError // the temporary file: disk full, read-only, ...
		switch {
		case errors.As(err, &he):
			countCaptureFailure("too_large")
		case errors.As(err, &disk):
			countCaptureFailure("spool")
			hd.logger.Error("form post not captured: its body could not be spooled to disk; request passed on", zap.Error(err))
		default:
			countCaptureFailure("read")
		}
		return
	}
	if !body.Complete() {
		countCaptureFailure("too_large")
		return
	}
	charset := ""
	if marker != nil {
		charset = marker.Charset
	}
	fields, err := intercept.ParseBody(ct, body.Reader(), charset, hd.Charset)
	fields = marker.Drop(fields) // what the script saw was a password, card or file field
	if err != nil && len(fields) == 0 {
		if !errors.Is(err, intercept.ErrUnsupportedBody) {
			countCaptureFailure("parse")
			hd.logger.Debug("form body not parsed", zap.Error(err))
		}
		if mech == "" {
			return
		}
	}
	if mech == "" {
		for _, c := range candidates {
			if fields.HasAll(c.Require) {
				rule, mech = c, lead.MechPost
				break
			}
		}
		if rule == nil {
			return
		}
	}
	in := intercept.Input{Fields: fields}
	sid := ""
	if marker != nil {
		in.Values, sid = marker.Values, marker.SID
	}
	l := intercept.Extract(rule, in, hd.PhoneRegion)
	l.Mechanism, l.SubmissionID = mech, sid
	if rule == nil {
		l.Form, l.Title = "auto", "Заявка с сайта"
	}
	l.Visit = intercept.Visit(r, clientAddr(r), intercept.ReadVisit(r), r.Referer())
	if rule != nil && !rule.AllowNoContact && !intercept.HasContact(l) {
		countCaptureFailure("no_contact")
		return
	}
	if rule == nil && !intercept.HasContact(l) {
		countCaptureFailure("no_contact")
		return
	}
	injectFault(r) // a no-op unless built with -tags leadproxy_faults (faults.go)
	hd.store(r.Context(), r, l, rule)
}

// store saves the lead for its rule's destinations; the request waits for the fsync.
func (hd *Handler) store(ctx context.Context, r *http.Request, l *lead.Lead, rule *intercept.Rule) (*lead.Lead, bool, error) {
	hd.attribute(r, l, rule) // its visit, and the placeholders of the rule's static values
	return hd.storeFor(ctx, r, l, hd.destinationsFor(rule), hd.dryRunFor(rule))
}

// storeFor saves the lead for dests (none: kept, not sent); with dry its
// deliveries are held with a preview (the dry run).
func (hd *Handler) storeFor(ctx context.Context, r *http.Request, l *lead.Lead, dests []string, dry bool) (*lead.Lead, bool, error) {
	l.Site = siteOf(r)
	scrubLead(l)
	if err := hd.app.budget.admit(l.Site, clientNetAddr(r), time.Now()); err != nil {
		return nil, false, err // counted and logged by the budget
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx, end := startCaptureSpan(ctx, r, l)
	var stored *lead.Lead
	var dup bool
	var err error
	if ablation == "nostore" {
		l.ID, stored = lead.NewID(time.Now()), l
	} else if dry {
		stored, dup, err = hd.app.CaptureDryRun(ctx, l, dests)
	} else {
		stored, dup, err = hd.app.Capture(ctx, l, dests)
	}
	end(err)
	if err != nil {
		countCaptureFailure("store")
		hd.logger.Error("lead not stored; request passed on", zap.String("form", l.Form), zap.Error(err))
		return nil, false, err
	}
	hd.app.budget.stored(stored)
	hd.sawSite(l.Site)
	if dry {
		countDryRun(l.Form)
	} else {
		countCaptured(l.Form, l.Mechanism)
	}
	caddyhttp.SetVar(r.Context(), "leadproxy_lead_id", stored.ID)
	hd.logger.Info("lead captured", zap.String("id", stored.ID), zap.String("form", l.Form),
		zap.String("mechanism", l.Mechanism), zap.Bool("duplicate", dup), zap.Strings("destinations", dests), zap.Bool("dry_run", dry))
	return stored, dup, nil
}

func (hd *Handler) destinationsFor(rule *intercept.Rule) []string {
	if rule != nil && len(rule.SendTo) > 0 {
		return rule.SendTo
	}
	if len(hd.SendTo) > 0 {
		return hd.SendTo
	}
	return hd.app.Destinations()
}

func siteOf(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(host)
}

// readLimited reads at most max bytes of a small endpoint body.
func readLimited(r *http.Request, max int64) ([]byte, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil || int64(len(b)) > max {
		return nil, false
	}
	return b, true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
