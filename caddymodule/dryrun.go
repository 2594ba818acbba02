package caddymodule

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// The dry run (`dry_run` in a site block or a form): such a lead is
// captured and checked as any other and stored with its deliveries held
// (queue.AddDryRun), each with a preview of the exact requests it would
// send (crm.Previewer). A resend (POST /leadproxy/leads/{id}/retry) after a
// reload turned dry_run off sends it; while still in dry run it refreshes
// the previews and sends nothing.

// heldStore is what the dry run needs of the lead store: *queue.Store, or
// any store behind the admin API that keeps held deliveries.
type heldStore interface {
	Get(id string) (*lead.Lead, error)
	Retry(id string) error
	SetPreview(ctx context.Context, id, dest string, preview []lead.Request, errMsg string) error
	SendDryRun(id string) (int, error)
}

var _ heldStore = (*queue.Store)(nil)

// dryRunTotal counts dry-run leads apart from leadproxy_leads_captured_total.
var dryRunTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "leadproxy_leads_dry_run_total", Help: "Leads captured under dry_run (held, not sent), by form.",
}, []string{"form"})

func countDryRun(form string) { dryRunTotal.WithLabelValues(form).Inc() }

// previewTimeout bounds the previews of one lead (no network: a guard
// against a destination that blocks).
const previewTimeout = 10 * time.Second

// dryRunFor tells whether a lead of rule (nil: auto or the API) is held:
// the form's own dry_run when it sets one, else the site's.
func (hd *Handler) dryRunFor(rule *intercept.Rule) bool {
	if rule != nil && rule.DryRun != nil {
		return *rule.DryRun
	}
	return hd.DryRun
}

// CaptureDryRun stores a lead as Capture does, its deliveries held, and
// records each destination's preview in the background: the post goes on
// once the lead is stored, as a real one does (a preview may wait, for
// one, on a token renewal in progress). The store stays open until the
// previews are written (pooledStore.hold).
func (a *App) CaptureDryRun(ctx context.Context, l *lead.Lead, dests []string) (*lead.Lead, bool, error) {
	stored, dup, st, err := a.capture(ctx, l, dests, true)
	if err != nil || dup || len(stored.Deliveries) == 0 {
		return stored, dup, err
	}
	release := a.holdCapture(ctx)
	pctx := context.WithoutCancel(ctx) // the visitor may go: the lead is stored
	go func() {
		defer release()
		a.preview(pctx, st, stored)
	}()
	return stored, dup, nil
}

// preview records, for each held delivery of l, what its destination would
// send. A destination that cannot preview, or fails to, says so in the
// delivery's last error.
func (a *App) preview(ctx context.Context, st heldStore, l *lead.Lead) {
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	in := *l
	in.Deliveries = nil // the lead as the engine hands it to Send
	for _, d := range l.Deliveries {
		if d.Status != lead.StatusDryRun {
			continue
		}
		reqs, err := a.previewOne(ctx, d.Destination, &in)
		msg := ""
		if err != nil {
			msg = "preview: " + err.Error()
		}
		if err := st.SetPreview(ctx, l.ID, d.Destination, reqs, msg); err != nil {
			a.log().Error("dry run: saving a preview failed", zap.String("lead", l.ID), zap.String("destination", d.Destination), zap.Error(err))
		}
	}
}

func (a *App) previewOne(ctx context.Context, dest string, l *lead.Lead) (reqs []crm.PreviewRequest, err error) {
	s, ok := a.senders[dest]
	if !ok {
		return nil, fmt.Errorf("destination %q is not configured", dest)
	}
	p, ok := s.(crm.Previewer)
	if !ok {
		return nil, fmt.Errorf("destination type %T cannot show its requests", s)
	}
	defer func() {
		if r := recover(); r != nil {
			a.log().Error("destination preview panicked", zap.String("destination", dest), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			reqs, err = nil, fmt.Errorf("internal error: the preview panicked")
		}
	}()
	return p.Preview(ctx, l)
}

func (a *App) log() *zap.Logger {
	if a.logger == nil {
		return zap.NewNop()
	}
	return a.logger
}

// currentApp is the most recently started app: the admin API's resend
// previews with its destinations.
var currentApp atomic.Pointer[App]

// Live handlers, for the resend's question "is this lead's form still in
// dry run?": registered at Provision, gone at Cleanup (a reload provisions
// the new config first).
var liveHandlers struct {
	sync.Mutex
	set map[*Handler]bool
}

func registerHandler(hd *Handler) {
	liveHandlers.Lock()
	defer liveHandlers.Unlock()
	if liveHandlers.set == nil {
		liveHandlers.set = map[*Handler]bool{}
	}
	liveHandlers.set[hd] = true
}

func unregisterHandler(hd *Handler) {
	liveHandlers.Lock()
	defer liveHandlers.Unlock()
	delete(liveHandlers.set, hd)
}

// maxSitesSeen bounds the sites a handler remembers capturing for.
const maxSitesSeen = 256

// sitesSeen is the sites a handler captured for, at most maxSitesSeen.
type sitesSeen struct {
	m sync.Map
	n atomic.Int64
}

// sawSite remembers that hd captured a lead for site.
func (hd *Handler) sawSite(site string) {
	s := hd.sites
	if s == nil {
		return
	}
	if _, ok := s.m.Load(site); ok || s.n.Load() >= maxSitesSeen {
		return
	}
	if _, loaded := s.m.LoadOrStore(site, true); !loaded {
		s.n.Add(1)
	}
}

func (hd *Handler) capturedFor(site string) bool {
	if hd.sites == nil {
		return false
	}
	_, ok := hd.sites.m.Load(site)
	return ok
}

// ruleOf is the rule of hd that a lead was captured by, and whether hd
// would capture such a lead at all (its form, auto, or the API).
func (hd *Handler) ruleOf(l *lead.Lead) (*intercept.Rule, bool) {
	switch {
	case l.Mechanism == lead.MechAPI:
		return nil, hd.APIKey != ""
	case l.Mechanism == lead.MechAuto:
		return nil, hd.Auto
	}
	for _, r := range hd.Forms {
		if r.Title == l.Form {
			return r, true
		}
	}
	return nil, false
}

// stillDryRun tells whether the current config would hold l: a live
// handler with its form (one that captured for its site, when any did)
// is in dry run for it. A lead whose form left the config is not held.
func stillDryRun(l *lead.Lead) bool {
	liveHandlers.Lock()
	var all, onSite []*Handler
	for hd := range liveHandlers.set {
		if _, ok := hd.ruleOf(l); ok {
			all = append(all, hd)
			if hd.capturedFor(l.Site) {
				onSite = append(onSite, hd)
			}
		}
	}
	liveHandlers.Unlock()
	if len(onSite) > 0 {
		all = onSite
	}
	for _, hd := range all {
		rule, _ := hd.ruleOf(l)
		if hd.dryRunFor(rule) {
			return true
		}
	}
	return false
}

// resendLead is the resend of the admin API and the dashboard: a lead
// still in dry run gets its previews again (held: nothing sent); else its
// held deliveries are released and every undelivered one is due now.
func resendLead(ctx context.Context, st heldStore, id string) (held bool, err error) {
	l, err := st.Get(id)
	if err != nil {
		return false, err
	}
	if held, err = resendDryRun(ctx, st, l); held || err != nil {
		return held, err
	}
	if err := st.Retry(id); err != nil {
		return false, err
	}
	if p := current.Load(); p != nil {
		p.engine.Notify()
	}
	return false, nil
}

// resendDryRun handles the resend of a lead with held deliveries: still
// in dry run, its previews are made again with the current destinations
// (held is true: nothing is sent); else its deliveries are released to the
// engine.
func resendDryRun(ctx context.Context, st heldStore, l *lead.Lead) (held bool, err error) {
	hasHeld := false
	for _, d := range l.Deliveries {
		hasHeld = hasHeld || d.Status == lead.StatusDryRun
	}
	if !hasHeld {
		return false, nil
	}
	if stillDryRun(l) {
		if a := currentApp.Load(); a != nil {
			a.preview(ctx, st, l)
		}
		return true, nil
	}
	_, err = st.SendDryRun(l.ID)
	return false, err
}
