package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/visit"
)

// VisitOptions bound the visit store (the `visits` block of the global
// leadproxy options).
type VisitOptions struct {
	// Retention is how long a visit is kept, and the visit cookie's
	// lifetime. Default 90 days.
	Retention caddy.Duration `json:"retention,omitempty"`
	// Max is the most visits kept; the oldest go first. Default 1,000,000
	// (about 1 GB of disk at the largest record, a few hundred MB in
	// practice).
	Max int `json:"max,omitempty"`
}

func (a *App) visitRetention() time.Duration {
	if a != nil && a.Visits != nil && a.Visits.Retention > 0 {
		return time.Duration(a.Visits.Retention)
	}
	return visit.DefaultRetention
}

// visitStore is the open visit store and its recorder, pooled with the
// lead store (pooledStore.visits).
type visitStore struct {
	db  *visit.DB
	rec *visit.Recorder
}

// openVisits opens the visit store in {storage}/visits. Without it the
// site and the leads go on: visits are not recorded and leads are not
// joined to one.
func (a *App) openVisits(logger *zap.Logger) *visitStore {
	opts := visit.DBOptions{Dir: filepath.Join(a.dir, "visits"), Retention: a.visitRetention(), Logger: logger}
	if a.Visits != nil {
		opts.Max = a.Visits.Max
	}
	db, err := visit.OpenDB(opts)
	if err != nil {
		logger.Error("visit store unavailable: visits are not recorded", zap.Error(err))
		return nil
	}
	return &visitStore{db: db, rec: visit.NewRecorder(db, logger)}
}

func (vs *visitStore) close() error {
	if vs == nil {
		return nil
	}
	vs.rec.Close()
	return vs.db.Close()
}

// visits returns the open visit store, or nil.
func (a *App) visits() *visitStore {
	if p := a.pooledOrCurrent(); p != nil {
		return p.visits
	}
	return nil
}

func (hd *Handler) visitsOn() bool { return hd.Visits == nil || *hd.Visits }

// observeVisit runs on every request before anything else. A request with
// a visit cookie confirms a visit waiting for it (one map lookup, no
// write otherwise); a navigation of a browser without one gets a new
// visit and its cookie.
func (hd *Handler) observeVisit(w http.ResponseWriter, r *http.Request) {
	vs := hd.app.visits()
	if vs == nil {
		return
	}
	if id := visit.ReadID(r); id != "" {
		vs.rec.Confirm(id)
		return
	}
	if !hd.visitsOn() || r.Method != http.MethodGet || !isNavigation(r) || visit.IsBot(r.UserAgent()) ||
		strings.HasPrefix(r.URL.Path, hd.Prefix+"/") {
		return
	}
	now := time.Now()
	v := visit.FromRequest(r, visit.NewID(now), now)
	visit.SetCookie(w.Header(), v.ID, hd.app.visitRetention(), r.TLS != nil)
	vs.rec.Seen(v)
}

// isNavigation: a browser loading a page (not an image, script or fetch).
func isNavigation(r *http.Request) bool {
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate" && r.Header.Get("Sec-Fetch-Dest") != "iframe" && r.Header.Get("Sec-Purpose") == ""
	}
	return strings.Contains(strings.ToLower(r.Header.Get("Accept")), "text/html")
}

// joinVisit attributes a lead to its visit: the roistat_visit cookie of a
// browser's request, or for the API (whose caller is the site's backend)
// the roistat parameter already in l.Visit.ID. What the capture script
// saw fills what the proxy's record lacks, and the source class is set.
func (hd *Handler) joinVisit(r *http.Request, l *lead.Lead) *visit.Visit {
	id := ""
	if l.Mechanism != lead.MechAPI {
		id = visit.ReadID(r)
	} else if l.Visit != nil {
		id = l.Visit.ID
	}
	var rec *visit.Visit
	if vs := hd.app.visits(); vs != nil && id != "" {
		rec = vs.rec.Lookup(id)
	}
	if l.Visit == nil && (id != "" || rec != nil) {
		l.Visit = &lead.Visit{}
	}
	lv := l.Visit
	if lv == nil {
		return nil
	}
	if id != "" {
		lv.ID = id
	}
	if rec != nil {
		lv.Landing = rec.Landing
		lv.Referrer = rec.Referrer
		lv.Source = rec.Source
		if len(rec.UTM) > 0 {
			lv.UTM = rec.UTM
		}
		lv.Clicks = rec.Clicks
		return rec
	}
	if lv.Landing != "" || lv.Referrer != "" || len(lv.UTM) > 0 {
		// No record of ours (visits off, a visit past retention, the
		// script's data only): the class from what the script kept.
		site := siteOf(r)
		var clicks map[string]string
		if u, err := url.Parse(lv.Landing); err == nil && lv.Landing != "" {
			_, clicks = visit.Tags(u.Query())
		}
		lv.Clicks = clicks
		lv.Source = visit.Classify(site, lv.Referrer, lv.UTM, clicks)
	}
	return &visit.Visit{ID: lv.ID, Landing: lv.Landing, Referrer: lv.Referrer, UTM: lv.UTM, Source: lv.Source}
}

// attribute joins a captured lead (form post or script report) to its
// visit and expands the placeholders of the rule's static values.
func (hd *Handler) attribute(r *http.Request, l *lead.Lead, rule *intercept.Rule) {
	v := hd.joinVisit(r, l)
	if rule == nil {
		return
	}
	vars := visit.Vars{Visit: v, Domain: siteOf(r)}
	l.Title = visit.Expand(rule.Title, vars)
	set := func(dst *string, s *intercept.Source) {
		if s != nil && s.Kind == intercept.SourceStatic && strings.Contains(s.Value, "{") {
			*dst = visit.Expand(s.Value, vars)
		}
	}
	set(&l.Name, rule.Name)
	set(&l.Comment, rule.Comment)
	for _, x := range rule.Extra {
		if v, ok := l.Extra[x.Label]; ok {
			set(&v, &x.Source)
			l.Extra[x.Label] = v
		}
	}
	for _, x := range rule.CRM {
		if v, ok := l.CRM[x.Label]; ok {
			set(&v, &x.Source)
			l.CRM[x.Label] = v
		}
	}
}

// expandAPI expands the placeholders of a Roistat API call's title,
// comment and fields[...] from the visit its roistat parameter names.
func (hd *Handler) expandAPI(r *http.Request, l *lead.Lead) {
	vars := visit.Vars{Visit: hd.joinVisit(r, l), Domain: siteOf(r)}
	l.Title = visit.Expand(l.Title, vars)
	l.Comment = visit.Expand(l.Comment, vars)
	for k, v := range l.CRM {
		l.CRM[k] = visit.Expand(v, vars)
	}
}

// loadTimezone reads the timezone option ("" is the machine's zone, by
// its IANA name where TZ or /etc/localtime gives one, so the report can
// say which zone its days are in).
func loadTimezone(name string) (*time.Location, error) {
	if name == "" {
		name = os.Getenv("TZ")
		if link, err := os.Readlink("/etc/localtime"); name == "" && err == nil {
			if _, zone, ok := strings.Cut(link, "zoneinfo/"); ok {
				name = zone
			}
		}
		if loc, err := time.LoadLocation(strings.TrimPrefix(name, ":")); name != "" && err == nil {
			return loc, nil
		}
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("timezone %q: not a time zone name (like Europe/Moscow): %v", name, err)
	}
	return loc, nil
}

// location is the site's time zone.
func (a *App) location() *time.Location {
	if a != nil && a.loc != nil {
		return a.loc
	}
	return time.Local
}

// parseVisitOptions parses the global `visits { retention <d>; max <n> }`.
func parseVisitOptions(d *caddyfile.Dispenser) (*VisitOptions, error) {
	if d.NextArg() {
		return nil, d.Err("visits: want a block: visits { retention <duration>; max <n> }")
	}
	o := &VisitOptions{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if err := crm.SingleArg(d, &v); err != nil {
			return nil, err
		}
		switch opt {
		case "retention":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("visits: retention %q is not a positive duration (like 90d)", v)
			}
			o.Retention = caddy.Duration(dur)
		case "max":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, d.Errf("visits: max %q is not a positive number", v)
			}
			o.Max = n
		default:
			return nil, d.Errf("visits: unknown option %q (want retention, max)", opt)
		}
	}
	return o, nil
}

// visitCollectors count the recorder's visits (leadproxy_visits_total by
// result: recorded, dropped past a bound, expired with their cookie never
// back) and the visits stored (leadproxy_visits_stored).
var visitCollectors = func() []prometheus.Collector {
	counter := func(result string, read func(*visit.Recorder) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "leadproxy_visits_total",
			Help:        "Visits of browsers without a visit cookie, by result: recorded, dropped (a bound was reached), expired (the cookie never came back: no cookies, a bot).",
			ConstLabels: prometheus.Labels{"result": result}}, func() float64 {
			if p := current.Load(); p != nil && p.visits != nil {
				return float64(read(p.visits.rec))
			}
			return 0
		})
	}
	return []prometheus.Collector{
		counter("recorded", func(r *visit.Recorder) uint64 { return r.Recorded.Load() }),
		counter("dropped", func(r *visit.Recorder) uint64 { return r.Dropped.Load() }),
		counter("expired", func(r *visit.Recorder) uint64 { return r.Expired.Load() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "leadproxy_visits_stored", Help: "Visits in the visit store."}, func() float64 {
			if p := current.Load(); p != nil && p.visits != nil {
				return float64(p.visits.db.Count())
			}
			return 0
		}),
	}
}()
