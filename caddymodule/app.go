// Package caddymodule is the Caddy glue of leadproxy: the app that owns the
// store and the delivery engine, the leadproxy handler, the Caddyfile and
// JSON config, and the admin routes. HTTP logic lives in intercept, the
// queue in queue, CRM destinations in crm.
package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nutsdb/nutsdb"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/intercept"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

func init() {
	caddy.RegisterModule(new(App))
}

// Defaults of the app's options.
const (
	DefaultRetryFor    = 72 * time.Hour
	DefaultRetention   = 30 * 24 * time.Hour
	DefaultDedupWindow = time.Hour
)

// App is the leadproxy app: one per Caddy process. It owns the lead store
// (nutsdb) and the delivery engine, shared across config reloads through a
// caddy.UsagePool keyed by the store's folder, and the CRM destinations of
// the current config.
type App struct {
	// Storage is the nutsdb folder. Default: {caddy data dir}/leadproxy.
	Storage string `json:"storage,omitempty"`
	// RetryFor is how long a failing delivery is retried before it is
	// shown as failed (and can be re-sent by hand). Default 72h: a CRM
	// down over a weekend loses nothing.
	RetryFor caddy.Duration `json:"retry_for,omitempty"`
	// Retention is how long delivered and failed leads stay listed.
	// Default 30 days.
	Retention caddy.Duration `json:"retention,omitempty"`
	// DedupWindow: the same (form, phone or email) inside it is one lead.
	// Default 1h.
	DedupWindow caddy.Duration `json:"dedup_window,omitempty"`
	// MaxStore is the store's disk budget in bytes: past it new captures
	// are refused (counted in leadproxy_capture_failures_total
	// {reason="store_full"} and logged) while the site keeps serving.
	// Default 1 GiB; -1 turns it off.
	MaxStore int64 `json:"max_store,omitempty"`
	// LeadsPerClient is how many leads one client address may leave a
	// minute (as many at once), on every capture path; its IPv4 /24 or
	// IPv6 /64 may leave 6 times as many. Default 10; -1 turns it off.
	LeadsPerClient int `json:"leads_per_client,omitempty"`
	// LeadsPerSite is how many leads one site (host) may take a minute
	// (as many at once). Default 300; -1 turns it off.
	LeadsPerSite int `json:"leads_per_site,omitempty"`
	// Destinations are the CRM accounts, by name. Each is a module in the
	// leadproxy.destinations namespace, its type named by "type".
	DestinationsRaw map[string]json.RawMessage `json:"destinations,omitempty" caddy:"namespace=leadproxy.destinations inline_key=type"`
	// Visits bounds the visit store (retention, most visits kept).
	Visits *VisitOptions `json:"visits,omitempty"`
	// MarkerKey signs the marker cookie's tokens (docs/capture-protocol.md):
	// a placeholder such as {env.LEADPROXY_MARKER_KEY} giving at least 32
	// bytes. Nodes behind one load balancer need one key: set the same one
	// on each. Default: a random key kept in the store.
	MarkerKey string `json:"marker_key,omitempty"`
	// Timezone is the site's time zone (an IANA name, Europe/Moscow) for
	// the dashboard's times and the report's days. Default: the machine's.
	Timezone string `json:"timezone,omitempty"`
	// Cluster makes this node one of a fleet sharing one PostgreSQL: one
	// rate limit per CRM account, one dedup, one lead list
	// (docs/cluster.md). Nil: the single-node leadproxy.
	Cluster *ClusterOptions `json:"cluster,omitempty"`

	senders map[string]lead.Sender
	dir     string
	logger  *zap.Logger
	pooled  atomic.Pointer[pooledStore]
	started bool
	openErr error // why Start went on without a store; read after ready
	// ready is closed when Start has finished (store open, or degraded).
	// On first boot Caddy may start the http app before this one, and a
	// form post in that moment waits for it (startWait at most) instead of
	// losing its lead.
	ready     chan struct{}
	readyOnce sync.Once
	backoff   queue.Backoff // zero: the engine's default; see TestBackoffEnv
	loc       *time.Location
	budget    *captureBudget
	signer    *intercept.MarkerSigner // from MarkerKey; nil: the store's key
	cluster   *resolvedCluster        // nil: single node
}

// TestBackoffEnv names a test-only knob: "<min>,<max>" (Caddy durations,
// like "50ms,500ms") replaces the delivery engine's retry backoff (5s up to
// 1h), so end-to-end tests can watch a CRM go down and come back in
// seconds. It is not a product option and is not in the Caddyfile; unset
// in production.
const TestBackoffEnv = "LEADPROXY_TEST_BACKOFF"

// TestBudgetsEnv names a test-only knob: "off" makes leads_per_client and
// leads_per_site default to off, for end-to-end tests that send hundreds
// of leads from one loopback address to test something else. A budget the
// config sets explicitly still applies (the abuse tests set theirs). It is
// not a product option; unset in production.
const TestBudgetsEnv = "LEADPROXY_TEST_BUDGETS"

// testBackoff parses TestBackoffEnv; zero when unset.
func testBackoff() (queue.Backoff, error) {
	v := os.Getenv(TestBackoffEnv)
	if v == "" {
		return queue.Backoff{}, nil
	}
	lo, hi, ok := strings.Cut(v, ",")
	minD, err1 := caddy.ParseDuration(strings.TrimSpace(lo))
	maxD, err2 := caddy.ParseDuration(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || minD <= 0 || maxD < minD {
		return queue.Backoff{}, fmt.Errorf("%s=%q: want <min>,<max> durations, like 50ms,500ms", TestBackoffEnv, v)
	}
	return queue.Backoff{Min: minD, Max: maxD}, nil
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "leadproxy",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads the destinations. It opens nothing: `caddy validate`
// provisions too, beside a running server that holds the store's lock.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ready = make(chan struct{})
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if a.RetryFor <= 0 {
		a.RetryFor = caddy.Duration(DefaultRetryFor)
	}
	if a.Retention <= 0 {
		a.Retention = caddy.Duration(DefaultRetention)
	}
	if a.DedupWindow <= 0 {
		a.DedupWindow = caddy.Duration(DefaultDedupWindow)
	}
	perClient, perSite := DefaultLeadsPerClient, DefaultLeadsPerSite
	if os.Getenv(TestBudgetsEnv) == "off" {
		perClient, perSite = -1, -1
	}
	a.budget = newCaptureBudget(orDefault(a.LeadsPerClient, perClient), orDefault(a.LeadsPerSite, perSite),
		int64(orDefault(int(a.MaxStore), DefaultMaxStore)), a.logger)
	a.budget.usage = func() int64 {
		if st := a.store(); st != nil {
			return st.DiskUsage()
		}
		return 0
	}
	a.dir = a.Storage
	if a.dir == "" {
		a.dir = filepath.Join(caddy.AppDataDir(), "leadproxy")
	}
	abs, err := filepath.Abs(a.dir)
	if err != nil {
		return fmt.Errorf("storage %q: %v", a.dir, err)
	}
	a.dir = abs
	if a.backoff, err = testBackoff(); err != nil {
		return err
	}
	if a.loc, err = loadTimezone(a.Timezone); err != nil {
		return err
	}
	if err := a.provisionMarkerKey(); err != nil {
		return err
	}
	if a.Cluster != nil {
		if a.cluster, err = a.Cluster.resolve(); err != nil {
			return err
		}
		if err := registerCollectors(ctx.GetMetricsRegistry(), clusterCollectors); err != nil {
			return err
		}
	}
	// Refused here, not only in Start: Caddy starts a config's apps in no
	// set order, and a listener the HTTP app opened before this app's
	// Start failed closes with the connections it was about to accept.
	if p := openStore(a.dir); p != nil && p.clusterKey != a.cluster.key() {
		return a.errClusterChange()
	}
	a.senders = map[string]lead.Sender{}
	if a.DestinationsRaw != nil {
		mods, err := ctx.LoadModule(a, "DestinationsRaw")
		if err != nil {
			return fmt.Errorf("loading destinations: %v", err)
		}
		for name, m := range mods.(map[string]any) {
			s, ok := m.(lead.Sender)
			if !ok {
				return fmt.Errorf("destination %q: module %T cannot send leads", name, m)
			}
			a.senders[name] = s
		}
	}
	return nil
}

// Validate checks destination names.
func (a *App) Validate() error {
	for name := range a.senders {
		if name == "" {
			return fmt.Errorf("destination with an empty name")
		}
	}
	return nil
}

// Destinations returns the configured destination names, sorted.
func (a *App) Destinations() []string {
	names := make([]string, 0, len(a.senders))
	for n := range a.senders {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HasDestination reports whether name is configured.
func (a *App) HasDestination(name string) bool {
	_, ok := a.senders[name]
	return ok
}

// Start opens (or shares) the store and points the engine at this
// config's destinations. On a reload the new config starts before the old
// one stops, so the pooled store is already open and only reconfigured.
func (a *App) Start() error {
	defer a.markReady()
	val, loaded, err := stores.LoadOrNew(a.dir, func() (caddy.Destructor, error) {
		st, err := queue.Open(queue.Options{
			Dir:         a.dir,
			DedupWindow: time.Duration(a.DedupWindow),
			Retention:   time.Duration(a.Retention),
			Logger:      a.logger.Named("queue"),
		})
		if err != nil {
			return nil, fmt.Errorf("opening lead store %s: %w (if another Caddy process holds it, use 'caddy reload')", a.dir, err)
		}
		// The store's marker key, made on first start and kept: a token
		// served before a restart or a reload still verifies after it.
		key, err := st.Secret("marker")
		var signer *intercept.MarkerSigner
		if err == nil {
			signer, err = intercept.NewMarkerSigner(key)
		}
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("lead store %s: marker key: %w", a.dir, err)
		}
		eng := queue.NewEngine(st, a.logger.Named("delivery"))
		p := &pooledStore{dir: a.dir, store: st, book: st, engine: eng, signer: signer, logger: a.logger.Named("queue")}
		if a.cluster != nil {
			if err := p.openFleet(a); err != nil {
				st.Close()
				return nil, err
			}
		}
		p.visits = a.openVisits(a.logger.Named("visits"))
		return p, nil
	})
	if err != nil {
		// The site must not go down with its lead store (README, "Guarantees"): start
		// without it, unless another process holds the folder (a second
		// caddy, a config error) or an older config still captures into an
		// open store (a reload: failing keeps that one working). Captures
		// then fail, logged and counted, and requests go on; a reload
		// tries the store again.
		if errors.Is(err, nutsdb.ErrDirLocked) || current.Load() != nil {
			return err
		}
		a.logger.Error("lead store unavailable: the site is served but form posts are NOT captured; fix the folder, then reload",
			zap.String("dir", a.dir), zap.Error(err))
		a.openErr = err
		return nil
	}
	p := val.(*pooledStore)
	if loaded && p.clusterKey != a.cluster.key() {
		// The store (and its cluster connection) is shared with the running
		// config; refusing keeps that one working.
		stores.Delete(a.dir)
		return a.errClusterChange()
	}
	a.pooled.Store(p)
	a.started = true
	for name, s := range a.senders {
		if tk, ok := s.(crm.TokenKeeper); ok {
			tk.SetTokenStore(name, p.book) // in cluster mode, the fleet's
		}
	}
	initDeliveryMetrics(a.Destinations())
	a.publishSettings()
	if p.fleet != nil {
		p.engine.Configure(a.forwardConfig(p))
		p.fleet.Configure(a.engineConfig(), a.accounts())
		p.startFleet()
	} else {
		p.engine.Configure(a.engineConfig())
	}
	p.engine.Start()
	current.Store(p)
	currentApp.Store(a)
	a.logger.Info("lead store ready", zap.String("dir", a.dir), zap.Bool("shared", loaded),
		zap.Strings("destinations", a.Destinations()))
	return nil
}

func (a *App) errClusterChange() error {
	return fmt.Errorf("cluster: a reload cannot turn cluster mode on or off or change its dsn, node or schema (the lead store %s is open with the old ones); restart Caddy for that", a.dir)
}

// openStore returns the store a running config holds open in dir, or nil.
func openStore(dir string) *pooledStore {
	var found *pooledStore
	stores.Range(func(key, value any) bool {
		if key == dir {
			found, _ = value.(*pooledStore)
			return false
		}
		return true
	})
	return found
}

// Stop releases this config's hold on the store; the last holder closes it.
func (a *App) Stop() error {
	a.markReady()
	if !a.started {
		return nil
	}
	a.started = false
	_, err := stores.Delete(a.dir)
	return err
}

func (a *App) engineConfig() queue.EngineConfig {
	cfg := queue.EngineConfig{
		Senders:  a.senders,
		Rates:    map[string]queue.Rate{},
		RetryFor: time.Duration(a.RetryFor),
		Observe:  observeDelivery, // metrics, spans, the dashboard's attempts
		Backoff:  a.backoff,
	}
	for name, s := range a.senders {
		if r, ok := s.(lead.Rated); ok {
			n, per := r.DefaultRate()
			cfg.Rates[name] = queue.Rate{N: n, Per: per}
		}
	}
	return cfg
}

// startWait bounds how long a form post waits for the app's Start.
const startWait = 10 * time.Second

func (a *App) markReady() {
	if a.ready != nil {
		a.readyOnce.Do(func() { close(a.ready) })
	}
}

// waitStarted waits until Start has finished (at most startWait, or until
// ctx ends) and reports whether it has.
func (a *App) waitStarted(ctx context.Context) bool {
	if a == nil || a.ready == nil {
		return true // not provisioned by Caddy (unit tests)
	}
	select {
	case <-a.ready:
		return true
	default:
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-a.ready:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// book returns the lead book (the store, or the cluster), or nil when
// there is none.
func (a *App) book() leadBook {
	if p := a.pooledOrCurrent(); p != nil {
		return p.book
	}
	return nil
}

// store returns the open local store, or nil when there is none.
func (a *App) store() *queue.Store {
	if p := a.pooledOrCurrent(); p != nil {
		return p.store
	}
	return nil
}

// Capture stores a lead for dests, durably, and wakes the engine.
func (a *App) Capture(ctx context.Context, l *lead.Lead, dests []string) (*lead.Lead, bool, error) {
	stored, dup, _, err := a.capture(ctx, l, dests, false)
	return stored, dup, err
}

// capture is Capture, or with dry the dry run's store (CaptureDryRun); it
// also returns the store that took the lead.
func (a *App) capture(ctx context.Context, l *lead.Lead, dests []string, dry bool) (*lead.Lead, bool, *queue.Store, error) {
	add := (*queue.Store).Add
	if dry {
		add = (*queue.Store).AddDryRun
	}
	if !a.waitStarted(ctx) {
		return nil, false, nil, fmt.Errorf("%w: the leadproxy app did not start within %s", errStoreNotReady, startWait)
	}
	st := a.store()
	if st == nil {
		if a != nil && a.openErr != nil {
			return nil, false, nil, fmt.Errorf("%w: %v", errStoreNotReady, a.openErr)
		}
		return nil, false, nil, errStoreNotReady
	}
	ctx, end := startStoreSpan(ctx, dests)
	// In cluster mode a lead's deliveries are stored as cluster:<d>, which
	// the forwarder moves to the engine; a dry run's stay under their own
	// names (their previews are per destination), and the forwarder takes
	// those too once resend releases them.
	local := func(p *pooledStore) []string {
		if dry {
			return dests
		}
		return p.localDests(dests)
	}
	p := a.pooledOrCurrent()
	stored, dup, err := add(st, ctx, l, local(p))
	if errors.Is(err, queue.ErrClosed) {
		// This config's store closed under a request in flight (a reload
		// moved the store to another folder): the newest store takes it.
		if cur := current.Load(); cur != nil && cur.store != st {
			p, st = cur, cur.store
			stored, dup, err = add(st, ctx, l, local(p))
		}
	}
	end(stored, dup, err)
	if err == nil && p != nil {
		p.engine.Notify()
	}
	return stored, dup, st, err
}

// holdCapture marks a form post on its way to this config's store, so the
// store is not closed under it (pooledStore.hold); call the result when
// done.
func (a *App) holdCapture(ctx context.Context) (release func()) {
	a.waitStarted(ctx)
	if p := a.pooledOrCurrent(); p != nil {
		return p.hold()
	}
	return func() {}
}

func (a *App) pooledOrCurrent() *pooledStore {
	if a != nil {
		if p := a.pooled.Load(); p != nil {
			return p
		}
	}
	return current.Load()
}

var errStoreNotReady = fmt.Errorf("lead store not ready")

// stores shares open stores across config generations, keyed by folder.
var stores = caddy.NewUsagePool()

// current is the most recently started store, for the admin API (which
// is provisioned before the apps) and the rare first-boot request that
// arrives before the app's Start.
var current atomic.Pointer[pooledStore]

type pooledStore struct {
	dir    string
	store  *queue.Store
	signer *intercept.MarkerSigner // the store's marker key
	book   leadBook                // the store, or in cluster mode the fleet's
	engine *queue.Engine
	visits *visitStore // nil when its folder could not be opened
	logger *zap.Logger
	once   sync.Once

	// Cluster mode (cluster.go); fleet is nil on a single node.
	fleet      fleet
	clusterKey string // resolvedCluster.key() of what fleet was opened with
	fleetOnce  sync.Once
	eraseStop  chan struct{}
	eraseDone  chan struct{}
	fbMu       sync.Mutex
	fbDone     map[string]*fallbackDone // direct deliveries not yet in the cluster
	limiters   map[string]*nodeShare    // by account

	// Form posts between the start of capture and their lead's store.
	// Caddy stops its apps in no fixed order, so when it exits this store
	// may close while the http server still finishes posts: Destruct waits
	// for them, up to captureDrain.
	mu       sync.Mutex
	inflight int
	closed   bool
	idle     chan struct{} // signalled when inflight drops to 0

	// When the last capture started (cluster_pace.go), and the clock and
	// timer the forwarder's pacing uses (tests set them; nil: time's).
	lastCapture atomic.Int64
	prevCapture atomic.Int64 // the one before
	paceNow     func() time.Time
	paceAfter   func(time.Duration) <-chan time.Time
}

// captureDrain bounds how long closing the store waits for form posts in
// flight: as long as one capture may wait for its fsync.
const captureDrain = 10 * time.Second

// hold marks a capture in flight; release it once the lead is stored (or
// not). Holds are refused once the store is closed.
func (p *pooledStore) hold() (release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return func() {}
	}
	p.noteCapture()
	p.inflight++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.inflight--; p.inflight == 0 && p.idle != nil {
			select {
			case p.idle <- struct{}{}:
			default:
			}
		}
	}
}

// drainCaptures waits until no capture holds the store, up to captureDrain,
// then refuses new holds. After a reload that moved the store elsewhere it
// does not wait: App.Capture sends such leads to the new store.
func (p *pooledStore) drainCaptures() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = make(chan struct{}, 1)
	deadline := time.After(captureDrain)
	for p.inflight > 0 {
		if cur := current.Load(); cur != nil && cur != p {
			break
		}
		p.logger.Info("lead store closing: waiting for form posts in flight", zap.Int("captures", p.inflight))
		p.mu.Unlock()
		select {
		case <-p.idle:
		case <-deadline:
			p.mu.Lock()
			p.logger.Warn("lead store closed with form posts in flight; their leads are not stored", zap.Int("captures", p.inflight))
			p.closed = true
			return
		}
		p.mu.Lock()
	}
	p.closed = true
}

// Destruct waits for captures in flight, stops the engine (in-flight sends
// finish or are released) and closes the store. Called when the last
// config using it stops.
func (p *pooledStore) Destruct() error {
	var err error
	p.once.Do(func() {
		p.drainCaptures()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.engine.Stop(ctx)
		current.CompareAndSwap(p, nil)
		err = errors.Join(p.closeFleet(ctx), p.visits.close(), p.store.Close())
	})
	return err
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
