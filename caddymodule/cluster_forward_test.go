package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap/zaptest"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// fakeFleet is an in-memory cluster engine for the forwarder's own tests
// (the real one runs in the TestClusterE2E* tests): it can be taken down
// and up, and records every forward with the done it came with.
type fakeFleet struct {
	leadBook // unused methods panic
	mu       sync.Mutex
	down     time.Time // zero: up
	forwards map[string]*fallbackDone
	calls    int
	alive    int
}

func newFakeFleet() *fakeFleet { return &fakeFleet{forwards: map[string]*fallbackDone{}, alive: 1} }

func (f *fakeFleet) setUp(up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if up {
		f.down = time.Time{}
	} else if f.down.IsZero() {
		f.down = time.Now()
	}
}

func (f *fakeFleet) Up() bool { return f.DownFor() == 0 }
func (f *fakeFleet) DownFor() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down.IsZero() {
		return 0
	}
	return max(time.Since(f.down), time.Nanosecond)
}
func (f *fakeFleet) Node() string { return "test" }
func (f *fakeFleet) Forward(_ context.Context, l *lead.Lead, dest string, done *fallbackDone) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.down.IsZero() {
		return "", false, errors.New("dial tcp 127.0.0.1:5432: connection refused")
	}
	k := l.ID + "/" + dest
	if _, ok := f.forwards[k]; !ok {
		f.forwards[k] = done
	}
	return l.ID, false, nil
}

// forwardCalls is how many forwards reached the fleet.
func (f *fakeFleet) forwardCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeFleet) forwarded(id, dest string) (done *fallbackDone, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	done, ok = f.forwards[id+"/"+dest]
	return done, ok
}
func (f *fakeFleet) Close() error                                    { return nil }
func (f *fakeFleet) Configure(queue.EngineConfig, map[string]string) {}
func (f *fakeFleet) Start()                                          {}
func (f *fakeFleet) Stop(context.Context) error                      { return nil }
func (f *fakeFleet) ErasedSince(context.Context, int64) ([]string, int64, error) {
	return nil, 0, nil
}
func (f *fakeFleet) SetUnforwarded(func() int)                  {}
func (f *fakeFleet) Nodes(context.Context) ([]nodeState, error) { return nil, nil }
func (f *fakeFleet) AliveNodes() int                            { return f.alive }

// countingSender is a CRM that takes every lead and counts them.
type countingSender struct{ n atomic.Int64 }

func (s *countingSender) Send(_ context.Context, l *lead.Lead) (string, error) {
	return fmt.Sprintf("crm-%d", s.n.Add(1)), nil
}

// forwardNode is one node's local side: its store, its local engine with
// the forwarders, over a fake engine.
func forwardNode(t *testing.T, dir string, fl fleet, crm lead.Sender, fallbackAfter time.Duration) (*pooledStore, *queue.Engine) {
	t.Helper()
	st, err := queue.Open(queue.Options{Dir: dir, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := &pooledStore{dir: dir, store: st, logger: zaptest.NewLogger(t), fleet: fl,
		fbDone: map[string]*fallbackDone{}, limiters: map[string]*nodeShare{}}
	p.book = &fleetBook{fl: fl, local: st}
	a := &App{senders: map[string]lead.Sender{"hook": crm}, cluster: &resolvedCluster{FallbackAfter: fallbackAfter},
		backoff: queue.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}
	eng := queue.NewEngine(st, zaptest.NewLogger(t))
	eng.Configure(a.forwardConfig(p))
	eng.Start()
	t.Cleanup(func() { eng.Stop(context.Background()); st.Close() })
	return p, eng
}

func addLocal(t *testing.T, p *pooledStore, i int) *lead.Lead {
	t.Helper()
	l := &lead.Lead{Site: "example.com", Form: "Заявка", Name: fmt.Sprintf("Иван %d", i), Phone: fmt.Sprintf("+7999%07d", i)}
	got, _, err := p.store.Add(context.Background(), l, p.localDests([]string{"hook"}))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func localStatus(t *testing.T, p *pooledStore, id string) lead.Delivery {
	t.Helper()
	l, err := p.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return l.Deliveries[0]
}

// TestClusterForwardWaitsWithoutFallback: with the engine down and no
// fallback_after, the lead stays on the node (never sent to the CRM) and
// is forwarded, plainly, once the engine is back.
func TestClusterForwardWaitsWithoutFallback(t *testing.T) {
	fl, crm := newFakeFleet(), &countingSender{}
	fl.setUp(false)
	p, _ := forwardNode(t, t.TempDir(), fl, crm, 0)
	l := addLocal(t, p, 1)
	if got := l.Deliveries[0].Destination; got != "cluster:hook" {
		t.Fatalf("stored for %q, want the pseudo destination cluster:hook", got)
	}
	waitFor(t, "forward attempts against the down engine", 30*time.Second, func() bool {
		return localStatus(t, p, l.ID).Attempts >= 3
	})
	if p.unforwarded() != 1 {
		t.Fatalf("unforwarded = %d, want 1", p.unforwarded())
	}
	fl.setUp(true)
	waitFor(t, "the forward", 30*time.Second, func() bool { _, ok := fl.forwarded(l.ID, "hook"); return ok })
	if done, _ := fl.forwarded(l.ID, "hook"); done != nil {
		t.Fatalf("forwarded as delivered by the node (%+v), but no fallback was configured", done)
	}
	if crm.n.Load() != 0 {
		t.Fatalf("the node sent %d leads to the CRM itself", crm.n.Load())
	}
	waitFor(t, "the local delivery recorded", 30*time.Second, func() bool {
		return localStatus(t, p, l.ID).Status == lead.StatusDelivered && p.unforwarded() == 0
	})
}

// TestClusterFallbackDeliversOnceAcrossRestart: past fallback_after the
// node delivers itself, once; the record survives a restart of the node;
// when the engine is back the lead is forwarded as already delivered, with
// the CRM's id, and the CRM saw it once.
func TestClusterFallbackDeliversOnceAcrossRestart(t *testing.T) {
	fl, crm := newFakeFleet(), &countingSender{}
	fl.setUp(false)
	dir := t.TempDir()
	p, eng := forwardNode(t, dir, fl, crm, 50*time.Millisecond)
	l := addLocal(t, p, 2)
	waitFor(t, "the direct delivery", 30*time.Second, func() bool { return crm.n.Load() == 1 })
	waitFor(t, "more forward attempts after it", 30*time.Second, func() bool {
		return localStatus(t, p, l.ID).Attempts >= 3
	})
	eng.Stop(context.Background())
	p.store.Close()

	// The node restarts (nothing in memory) while the engine is still down.
	p, _ = forwardNode(t, dir, fl, crm, 50*time.Millisecond)
	waitFor(t, "forward attempts after the restart", 30*time.Second, func() bool {
		return localStatus(t, p, l.ID).Attempts >= 5
	})
	fl.setUp(true)
	waitFor(t, "the forward", 30*time.Second, func() bool { _, ok := fl.forwarded(l.ID, "hook"); return ok })
	done, _ := fl.forwarded(l.ID, "hook")
	if done == nil || done.CRMID != "crm-1" {
		t.Fatalf("forwarded with done %+v, want the direct delivery's crm-1", done)
	}
	waitFor(t, "the local delivery recorded", 30*time.Second, func() bool {
		return localStatus(t, p, l.ID).Status == lead.StatusDelivered
	})
	if n := crm.n.Load(); n != 1 {
		t.Fatalf("the CRM got %d sends, want 1", n)
	}
	if v, _ := p.store.LoadToken(fallbackKeyPrefix + l.ID + ":hook"); v != "" {
		t.Fatalf("the fallback record outlived the forward: %q", v)
	}
}

// TestClusterNodeShare: a node's share of an account's rate never lets
// the nodes alive exceed it together.
func TestClusterNodeShare(t *testing.T) {
	cases := []struct {
		n      int
		per    time.Duration
		alive  int
		k      int
		window time.Duration
	}{
		{7, time.Second, 1, 7, time.Second},
		{7, time.Second, 3, 2, time.Second},
		{2, time.Second, 3, 1, 1500 * time.Millisecond},
		{1, time.Minute, 2, 1, 2 * time.Minute},
		{7, time.Second, 0, 7, time.Second},
	}
	for _, c := range cases {
		s := &nodeShare{rate: queue.Rate{N: c.n, Per: c.per}}
		k, w := s.share(c.alive)
		if k != c.k || w != c.window {
			t.Errorf("%d/%s over %d nodes: %d per %s, want %d per %s", c.n, c.per, c.alive, k, w, c.k, c.window)
		}
	}
	s := &nodeShare{rate: queue.Rate{N: 7, Per: time.Hour}}
	for i := range 2 { // 7/h over 3 nodes: 2 starts an hour here
		if d := s.take(3); d != 0 {
			t.Fatalf("start %d refused (wait %s)", i+1, d)
		}
	}
	if d := s.take(3); d <= 0 {
		t.Fatal("a third start within the window was allowed")
	}
}

// TestClusterCallHookSpansAndMetrics: each engine call is counted by
// operation and outcome, and is a span under a traced caller (a forward
// under its lead's capture span); background calls without a traced
// caller make no span.
func TestClusterCallHookSpansAndMetrics(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx, capture := tp.Tracer(tracerName).Start(context.Background(), spanCapture)
	l := &lead.Lead{ID: "lead-1", Traceparent: traceparent(ctx)}
	capture.End()
	prev, _ := lastTracerProvider.Load().(tracerProviderBox)
	lastTracerProvider.Store(tracerProviderBox{tp})
	defer lastTracerProvider.Store(prev)

	before := counterValue(clusterCallsTotal.WithLabelValues("forward", "error"))
	fctx, endForward := startForwardSpan(context.Background(), "hook", l)
	_, end := clusterCallHook(fctx, "forward")
	end(errors.New("connection refused"))
	endForward(errors.New("connection refused"))
	if got := counterValue(clusterCallsTotal.WithLabelValues("forward", "error")) - before; got != 1 {
		t.Fatalf("forward errors counted: %v, want 1", got)
	}
	notFound := counterValue(clusterCallsTotal.WithLabelValues("get", "not_found"))
	_, end = clusterCallHook(context.Background(), "get")
	end(fmt.Errorf("wrapped: %w", queue.ErrNotFound))
	if counterValue(clusterCallsTotal.WithLabelValues("get", "not_found")) != notFound+1 {
		t.Fatal("a lead not found is not counted as not_found")
	}
	_, end = clusterCallHook(context.Background(), "heartbeat")
	end(nil)

	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	fwd, call := byName["leadproxy.cluster.forward"], byName["leadproxy.cluster.get"]
	if fwd.Name == "" || call.Name == "" {
		t.Fatalf("spans: %v", exp.GetSpans().Snapshots())
	}
	if fwd.SpanContext.TraceID() != capture.SpanContext().TraceID() {
		t.Error("the forward span is not in the capture's trace")
	}
	if _, ok := byName["leadproxy.cluster.heartbeat"]; ok {
		t.Error("a background call without a traced caller made a span")
	}
	n := 0
	for _, s := range exp.GetSpans() {
		if s.Name == "leadproxy.cluster.forward" {
			n++
		}
	}
	if n != 2 { // the forward, and the engine call under it
		t.Errorf("%d forward spans, want the forward and its engine call", n)
	}
}

// inFlight counts the calls in flight and the most there were at once.
type inFlight struct{ now, most atomic.Int64 }

func (f *inFlight) enter() {
	n := f.now.Add(1)
	for m := f.most.Load(); n > m && !f.most.CompareAndSwap(m, n); m = f.most.Load() {
	}
}

func (f *inFlight) leave() { f.now.Add(-1) }

// gatedFleet is a fake engine whose forwards wait at a gate, counting how
// many wait together (as cluster's batches take them).
type gatedFleet struct {
	*fakeFleet
	inFlight
	gate       chan struct{}
	forwardedN atomic.Int64
}

func (g *gatedFleet) Forward(ctx context.Context, l *lead.Lead, dest string, done *fallbackDone) (string, bool, error) {
	g.enter()
	defer g.leave()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
	defer g.forwardedN.Add(1)
	return g.fakeFleet.Forward(ctx, l, dest, done)
}

// gatedSender is a CRM whose sends wait at a gate, counting the most in
// flight at once.
type gatedSender struct {
	inFlight
	gate chan struct{}
	n    atomic.Int64
}

func (s *gatedSender) Send(ctx context.Context, l *lead.Lead) (string, error) {
	s.enter()
	defer s.leave()
	select {
	case <-s.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return fmt.Sprintf("crm-%d", s.n.Add(1)), nil
}

// TestClusterForwardsOfABurstWaitTogether: a node forwards many leads of
// one destination at once (cluster puts the forwards waiting together
// into one transaction), but its direct deliveries in fallback stay at
// queue.DefaultConcurrency per destination.
func TestClusterForwardsOfABurstWaitTogether(t *testing.T) {
	const leads = 3 * queue.DefaultConcurrency
	g := &gatedFleet{fakeFleet: newFakeFleet(), gate: make(chan struct{})}
	p, _ := forwardNode(t, t.TempDir(), g, &countingSender{}, 0)
	for i := range leads {
		addLocal(t, p, 100+i)
	}
	waitFor(t, "every forward waiting together", 30*time.Second, func() bool { return g.now.Load() == leads })
	close(g.gate)
	waitFor(t, "the forwards", 30*time.Second, func() bool { return g.forwardedN.Load() == leads })

	fl := newFakeFleet()
	fl.setUp(false)
	crm := &gatedSender{gate: make(chan struct{})}
	p, _ = forwardNode(t, t.TempDir(), fl, crm, time.Millisecond)
	for i := range leads {
		addLocal(t, p, 200+i)
	}
	waitFor(t, "direct deliveries in flight", 30*time.Second, func() bool { return crm.now.Load() >= queue.DefaultConcurrency })
	close(crm.gate)
	waitFor(t, "every direct delivery", 30*time.Second, func() bool { return crm.n.Load() == leads })
	if most := crm.most.Load(); most > queue.DefaultConcurrency {
		t.Fatalf("%d direct deliveries to one destination at once; want at most %d", most, queue.DefaultConcurrency)
	}
}

// TestClusterForwardYieldsToCaptures: a forward waits, while captures
// arrive fast, for the round's tick (the same for every forward then
// waiting), and goes at once when no capture started within forwardQuiet
// or captures come further apart than captureGap.
func TestClusterForwardYieldsToCaptures(t *testing.T) {
	fl := newFakeFleet()
	dir := t.TempDir()
	st, err := queue.Open(queue.Options{Dir: dir, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 3, 12, 0, 0, int(40*time.Millisecond), time.UTC)
	var clockMu sync.Mutex
	tick := make(chan time.Time)
	waits := make(chan time.Duration, 8)
	p := &pooledStore{dir: dir, store: st, logger: zaptest.NewLogger(t), fleet: fl,
		fbDone: map[string]*fallbackDone{}, limiters: map[string]*nodeShare{},
		paceNow:   func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now },
		paceAfter: func(d time.Duration) <-chan time.Time { waits <- d; return tick }}
	p.book = &fleetBook{fl: fl, local: st}
	a := &App{senders: map[string]lead.Sender{"hook": &countingSender{}}, cluster: &resolvedCluster{},
		backoff: queue.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}
	eng := queue.NewEngine(st, zaptest.NewLogger(t))
	eng.Configure(a.forwardConfig(p))

	p.hold()() // two captures at 12:00:00.040: they arrive fast
	p.hold()()
	for i := range 3 {
		addLocal(t, p, 300+i)
	}
	eng.Start()
	defer eng.Stop(context.Background())
	waitFor(t, "three forwards waiting for the tick", 30*time.Second, func() bool { return len(waits) == 3 || fl.forwardCalls() > 0 })
	if n := fl.forwardCalls(); n != 0 {
		t.Fatalf("%d leads forwarded while captures arrive, before the tick", n)
	}
	for range 3 {
		if d := <-waits; d != forwardRound-40*time.Millisecond {
			t.Fatalf("a forward waits %v; want until the round's tick, %v", d, forwardRound-40*time.Millisecond)
		}
	}
	close(tick)
	waitFor(t, "the round's forwards", 30*time.Second, func() bool { return fl.forwardCalls() == 3 })

	// Captures paused: no wait.
	clockMu.Lock()
	now = now.Add(forwardQuiet)
	clockMu.Unlock()
	addLocal(t, p, 310)
	eng.Notify()
	waitFor(t, "a forward after captures paused", 30*time.Second, func() bool { return fl.forwardCalls() == 4 })
	// Captures at a site's pace (further apart than captureGap): no wait.
	for range 2 {
		clockMu.Lock()
		now = now.Add(captureGap)
		clockMu.Unlock()
		p.hold()()
	}
	addLocal(t, p, 311)
	eng.Notify()
	waitFor(t, "a forward between captures at a site's pace", 30*time.Second, func() bool { return fl.forwardCalls() == 5 })
	if len(waits) != 0 {
		t.Fatalf("a forward waited %v while captures did not arrive fast", <-waits)
	}
}
