package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

func TestOutcomes(t *testing.T) {
	s := openStore(t, "", nil)
	permanent := mustAdd(t, s, testLead(1), "amo")
	flaky := mustAdd(t, s, testLead(2), "amo")
	limited := mustAdd(t, s, testLead(3), "amo")
	plain := mustAdd(t, s, testLead(4), "amo")
	f := newFake(func(n int, l *lead.Lead) (string, error) {
		switch l.ID {
		case permanent.ID:
			return "", lead.Permanent(422, "Поле phone заполнено неверно")
		case flaky.ID:
			if n <= 2 {
				return "", lead.Retryable(503, "maintenance", 0)
			}
		case limited.ID:
			return "", lead.Retryable(429, "too many requests", time.Hour)
		case plain.ID:
			if n == 1 {
				return "", errors.New("connection reset") // not a SendError: retryable
			}
		}
		return "deal-" + l.ID, nil
	})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}})

	waitFor(t, "permanent failure recorded", statusIs(t, s, permanent.ID, "amo", lead.StatusFailed))
	d := deliveryOf(t, s, permanent.ID, "amo")
	if d.Attempts != 1 || !strings.Contains(d.LastError, "Поле phone заполнено неверно") || d.NextAt != nil {
		t.Errorf("permanent: %+v, want failed after one attempt with the CRM's message and nothing scheduled", d)
	}

	waitFor(t, "flaky delivered", statusIs(t, s, flaky.ID, "amo", lead.StatusDelivered))
	d = deliveryOf(t, s, flaky.ID, "amo")
	if d.Attempts != 3 || d.CRMID != "deal-"+flaky.ID || d.LastError != "" || d.DeliveredAt == nil || f.count(flaky.ID) != 3 {
		t.Errorf("flaky: %+v after %d sends, want delivered on the 3rd attempt", d, f.count(flaky.ID))
	}

	waitFor(t, "plain delivered", statusIs(t, s, plain.ID, "amo", lead.StatusDelivered))

	waitFor(t, "429 recorded", func() bool { return deliveryOf(t, s, limited.ID, "amo").Attempts == 1 })
	d = deliveryOf(t, s, limited.ID, "amo")
	// Backoff is at most 20ms here: only Retry-After explains an hour.
	if d.Status != lead.StatusRetrying || d.NextAt == nil || time.Until(*d.NextAt) < 59*time.Minute ||
		!strings.Contains(d.LastError, "too many requests") {
		t.Errorf("retry-after: %+v, want retrying no sooner than an hour from now", d)
	}
	if f.count(permanent.ID) != 1 {
		t.Errorf("permanent failure sent %d times", f.count(permanent.ID))
	}
}

func TestRetryForExhausted(t *testing.T) {
	s := openStore(t, "", nil)
	l := mustAdd(t, s, testLead(1), "amo")
	f := newFake(func(int, *lead.Lead) (string, error) { return "", lead.Retryable(500, "down", 0) })
	e := startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}, RetryFor: 50 * time.Millisecond,
		Backoff: Backoff{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond}})
	waitFor(t, "failed", statusIs(t, s, l.ID, "amo", lead.StatusFailed))
	d := deliveryOf(t, s, l.ID, "amo")
	if !strings.Contains(d.LastError, "gave up after retry_for") || !strings.Contains(d.LastError, "down") || d.Attempts < 1 {
		t.Fatalf("%+v", d)
	}
	if d.Attempts != f.count(l.ID) {
		t.Fatalf("attempts %d, sends %d", d.Attempts, f.count(l.ID))
	}

	// Retry makes it due at once and restarts retry_for: it fails again,
	// after more attempts; then, once the CRM is back, a Retry delivers it.
	sent := f.count(l.ID)
	if err := s.Retry(l.ID); err != nil {
		t.Fatal(err)
	}
	if d := deliveryOf(t, s, l.ID, "amo"); d.Status == lead.StatusFailed {
		t.Fatalf("after Retry: %+v", d)
	}
	waitFor(t, "failed again", func() bool {
		return f.count(l.ID) > sent && deliveryOf(t, s, l.ID, "amo").Status == lead.StatusFailed
	})
	f.mu.Lock()
	f.fn = nil
	f.mu.Unlock()
	e.Notify()
	if err := s.Retry(l.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
}

func TestRetryFailedDelivery(t *testing.T) {
	s := openStore(t, "", nil)
	l := mustAdd(t, s, testLead(1), "amo", "bitrix")
	fixed := false
	var mu sync.Mutex
	f := newFake(func(int, *lead.Lead) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if !fixed {
			return "", lead.Permanent(401, "token expired")
		}
		return "42", nil
	})
	ok := newFake(nil)
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f, "bitrix": ok}})
	waitFor(t, "amo failed, bitrix delivered", func() bool {
		g, _ := s.Get(l.ID)
		return g.Delivery("amo").Status == lead.StatusFailed && g.Delivery("bitrix").Status == lead.StatusDelivered
	})
	if g, _ := s.Get(l.ID); g.Status() != lead.StatusFailed {
		t.Fatalf("lead status %s", g.Status())
	}
	mu.Lock()
	fixed = true
	mu.Unlock()
	if err := s.Retry(l.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "amo delivered", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
	d := deliveryOf(t, s, l.ID, "amo")
	if d.Attempts != 2 || d.CRMID != "42" || d.LastError != "" {
		t.Fatalf("%+v", d)
	}
	if ok.count(l.ID) != 1 {
		t.Fatalf("Retry re-sent a delivered delivery: %d sends", ok.count(l.ID))
	}
	if err := s.Retry("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Retry of an unknown lead: %v", err)
	}
}

// Every lead fails three times and then goes through: each is accepted by
// the CRM exactly once, and its delivery says so.
func TestExactlyOnceAfterFailures(t *testing.T) {
	s := openStore(t, "", nil)
	const leads, failures = 50, 3
	var accepted sync.Map
	f := newFake(func(n int, l *lead.Lead) (string, error) {
		if n <= failures {
			return "", lead.Retryable(502, "bad gateway", 0)
		}
		if _, dup := accepted.LoadOrStore(l.ID, true); dup {
			return "", fmt.Errorf("lead %s accepted twice", l.ID)
		}
		return "deal-" + l.ID, nil
	})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}, Concurrency: 8})
	var ids []string
	for i := range leads {
		ids = append(ids, mustAdd(t, s, testLead(i), "amo").ID)
	}
	waitFor(t, "all delivered", func() bool {
		st, _ := s.Stats()
		return st.ByDestination["amo"][lead.StatusDelivered] == leads
	})
	for _, id := range ids {
		d := deliveryOf(t, s, id, "amo")
		if d.Attempts != failures+1 || d.CRMID != "deal-"+id || f.count(id) != failures+1 {
			t.Fatalf("lead %s: %+v after %d sends", id, d, f.count(id))
		}
	}
	if f.overlaps != 0 {
		t.Fatalf("%d sends overlapped for the same lead", f.overlaps)
	}
}

// A destination whose CRM hangs holds only its own slots: the other
// destination delivers everything while every hung send is still stuck.
func TestHungDestinationDoesNotDelayHealthy(t *testing.T) {
	s := openStore(t, "", nil)
	stuck := make(chan struct{})
	defer close(stuck)
	down := newFake(func(int, *lead.Lead) (string, error) { <-stuck; return "", errors.New("never") })
	up := newFake(nil)
	startEngineNoWait(t, s, EngineConfig{Senders: map[string]lead.Sender{"down": down, "up": up}, Concurrency: 2})
	const n = 30
	for i := range n {
		mustAdd(t, s, testLead(i), "down", "up")
	}
	waitFor(t, "healthy destination drained", func() bool {
		st, _ := s.Stats()
		return st.ByDestination["up"][lead.StatusDelivered] == n
	})
	waitFor(t, "both slots of the hung destination taken", func() bool { return down.total() == 2 })
	if st, _ := s.Stats(); st.ByDestination["down"][lead.StatusPending] != n || down.total() != 2 {
		t.Fatalf("hung destination: %d sends, %+v; want its 2 slots busy, all pending", down.total(), st.ByDestination["down"])
	}
}

// A destination that fails fast backs off and does not hold up another.
func TestFailingDestinationDoesNotDelayHealthy(t *testing.T) {
	s := openStore(t, "", nil)
	down := newFake(func(int, *lead.Lead) (string, error) { return "", lead.Retryable(503, "down", 0) })
	up := newFake(nil)
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"down": down, "up": up}})
	const n = 30
	for i := range n {
		mustAdd(t, s, testLead(i), "down", "up")
	}
	waitFor(t, "healthy destination drained", func() bool {
		st, _ := s.Stats()
		return st.ByDestination["up"][lead.StatusDelivered] == n
	})
	st, _ := s.Stats()
	if st.ByDestination["down"][lead.StatusDelivered] != 0 || st.QueueDepth != n {
		t.Fatalf("%+v", st)
	}
}

// startEngineNoWait is startEngine for tests whose senders never return:
// cleanup stops the engine with a short grace, releasing their leases.
func startEngineNoWait(t *testing.T, s *Store, cfg EngineConfig) *Engine {
	e := NewEngine(s, nil)
	e.Configure(cfg)
	e.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e
}

// No window of Per ever sees more than N sends start, even with more
// concurrency than the rate allows and a backlog to drain.
func TestRateNeverExceeded(t *testing.T) {
	s := openStore(t, "", nil)
	const n, per, leads = 3, 200 * time.Millisecond, 24
	f := newFake(nil)
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}, Rates: map[string]Rate{"amo": {N: n, Per: per}}, Concurrency: 16})
	// Leads keep arriving, so the dispatcher is woken often and at odd
	// times: the limit must hold on every wake, not just on its own timer.
	for i := range leads {
		mustAdd(t, s, testLead(i), "amo")
		time.Sleep(per / 20)
	}
	waitFor(t, "all delivered", func() bool {
		st, _ := s.Stats()
		return st.ByDestination["amo"][lead.StatusDelivered] == leads
	})
	f.mu.Lock()
	starts := slices.Clone(f.starts)
	f.mu.Unlock()
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	// The engine stamps a token right before calling Send and the fake reads
	// the clock right after; slack covers a preemption between the two.
	const slack = 15 * time.Millisecond
	for i := n; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-n]); gap < per-slack {
			t.Fatalf("sends %d..%d started within %v: more than %d per %v", i-n, i, gap, n, per)
		}
	}
}

type ratedSender struct{ *fakeSender }

func (*ratedSender) DefaultRate() (int, time.Duration) { return 7, time.Second }

// A destination's documented limit applies when the config sets none; a
// configured rate wins; a reload keeps the window when the rate is the same.
func TestRateDefaultsAndReload(t *testing.T) {
	s := openStore(t, "", nil)
	e := NewEngine(s, nil)
	rated := &ratedSender{newFake(nil)}
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": rated, "hook": newFake(nil), "slow": rated},
		Rates: map[string]Rate{"slow": {N: 1, Per: time.Minute}}})
	if got := e.dests["amo"].rate; got != (Rate{7, time.Second}) {
		t.Fatalf("amo rate %+v, want the sender's 7/1s", got)
	}
	if got := e.dests["slow"].rate; got != (Rate{1, time.Minute}) {
		t.Fatalf("slow rate %+v, want the configured 1/1m", got)
	}
	if e.dests["hook"].rate.Limited() {
		t.Fatal("a sender without a documented limit got one")
	}
	w := e.dests["amo"].window
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": rated}})
	if e.dests["amo"].window != w {
		t.Fatal("a reload with the same rate reset the window: a fresh burst")
	}
	if e.dests["hook"].sender != nil {
		t.Fatal("a destination removed from the config kept its sender")
	}
}

// Two engines on one store (two processes' worth of dispatchers, or a
// stale generation) never hold the same delivery at once.
func TestTwoEnginesNeverShareADelivery(t *testing.T) {
	s := openStore(t, "", nil)
	shared := newFake(func(n int, l *lead.Lead) (string, error) {
		time.Sleep(time.Millisecond) // widen the window in which a double claim would overlap
		if n == 1 && l.Name[len(l.Name)-1]%2 == 0 {
			return "", lead.Retryable(503, "again", 0) // re-claimed later, maybe by the other engine
		}
		return "ok", nil
	})
	a := &countingSender{inner: shared}
	b := &countingSender{inner: shared}
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": a}})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": b}})
	const leads = 200
	var ids []string
	for i := range leads {
		ids = append(ids, mustAdd(t, s, testLead(i), "amo").ID)
	}
	waitFor(t, "all delivered", func() bool {
		st, _ := s.Stats()
		return st.ByDestination["amo"][lead.StatusDelivered] == leads
	})
	shared.mu.Lock()
	overlaps := shared.overlaps
	shared.mu.Unlock()
	if overlaps != 0 {
		t.Fatalf("%d sends of a lead started while another send of it was running", overlaps)
	}
	for _, id := range ids {
		if d := deliveryOf(t, s, id, "amo"); d.Attempts != shared.count(id) {
			t.Fatalf("lead %s: %d attempts recorded, %d sends", id, d.Attempts, shared.count(id))
		}
	}
	if a.n.Load() == 0 || b.n.Load() == 0 {
		t.Fatalf("one engine did all the work (%d/%d): the test proves nothing", a.n.Load(), b.n.Load())
	}
	t.Logf("engine A sent %d, engine B %d", a.n.Load(), b.n.Load())
}

// An attempt that outlives its lease (a sender ignoring its context) is
// reaped, the delivery goes to another engine, and the stale attempt's
// result is dropped: only the lease holder records.
func TestStaleAttemptCannotRecord(t *testing.T) {
	s := openStore(t, "", nil)
	l := mustAdd(t, s, testLead(1), "amo")
	release := make(chan struct{})
	hung := newFake(func(int, *lead.Lead) (string, error) { <-release; return "stale", nil })
	a := NewEngine(s, nil)
	a.leaseFor, a.attemptTimeout = 50*time.Millisecond, 20*time.Millisecond
	a.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": hung}})
	a.Start()
	waitFor(t, "engine A holds the lead", func() bool { return hung.count(l.ID) == 1 })
	a.mu.Lock()
	a.running = false // A keeps its attempt but stops dispatching, as a stale generation would
	close(a.stop)
	a.mu.Unlock()
	s.register(a, false)
	<-a.done

	fresh := newFake(nil)
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": fresh}})
	waitFor(t, "engine B delivered after the lease expired", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
	close(release)
	a.attempts.Wait()
	a.cancel()
	d := deliveryOf(t, s, l.ID, "amo")
	if d.CRMID != "crm-"+l.ID || d.Attempts != 1 {
		t.Fatalf("%+v: the stale attempt's result was recorded", d)
	}
}

func TestPanickingSenderDoesNotWedgeEngine(t *testing.T) {
	s := openStore(t, "", nil)
	f := newFake(func(n int, l *lead.Lead) (string, error) {
		if n == 1 {
			panic("nil map in destination")
		}
		return "ok", nil
	})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}, Concurrency: 1})
	var ids []string
	for i := range 5 {
		ids = append(ids, mustAdd(t, s, testLead(i), "amo").ID)
	}
	for _, id := range ids {
		waitFor(t, "delivered after a panic", statusIs(t, s, id, "amo", lead.StatusDelivered))
		if d := deliveryOf(t, s, id, "amo"); d.Attempts != 2 {
			t.Fatalf("%+v", d)
		}
	}
}

func TestObserveWrapsEachAttempt(t *testing.T) {
	s := openStore(t, "", nil)
	type seen struct{ dest, crmID string }
	var mu sync.Mutex
	var got []seen
	key := struct{ name string }{"span"}
	f := newFake(func(n int, l *lead.Lead) (string, error) { return "77", nil })
	checked := make(chan bool, 1)
	sender := senderFunc(func(ctx context.Context, l *lead.Lead) (string, error) {
		checked <- ctx.Value(key) == "attempt"
		return f.Send(ctx, l)
	})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": sender},
		Observe: func(ctx context.Context, dest string, l *lead.Lead) (context.Context, func(string, error)) {
			return context.WithValue(ctx, key, "attempt"), func(crmID string, err error) {
				mu.Lock()
				got = append(got, seen{dest, crmID})
				mu.Unlock()
			}
		}})
	l := mustAdd(t, s, testLead(1), "amo")
	waitFor(t, "delivered", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
	if !<-checked {
		t.Fatal("Send did not get the observer's context")
	}
	waitFor(t, "observed", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	if got[0] != (seen{"amo", "77"}) {
		t.Fatalf("%+v", got)
	}
}

type senderFunc func(context.Context, *lead.Lead) (string, error)

func (f senderFunc) Send(ctx context.Context, l *lead.Lead) (string, error) { return f(ctx, l) }

// A destination that leaves the config keeps its deliveries, marked; they
// go out when it comes back.
func TestUnconfiguredDestination(t *testing.T) {
	s := openStore(t, "", nil)
	e := startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": newFake(nil)}})
	l := mustAdd(t, s, testLead(1), "amo", "bitrix")
	waitFor(t, "marked not configured", func() bool {
		return deliveryOf(t, s, l.ID, "bitrix").LastError == errNotConfigured
	})
	// The queue depth counts amo's delivery until it is done: wait for that
	// event, or the check below races it.
	waitFor(t, "amo delivered", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
	d := deliveryOf(t, s, l.ID, "bitrix")
	if d.Status != lead.StatusPending || d.Attempts != 0 || d.NextAt != nil {
		t.Fatalf("%+v", d)
	}
	if st, _ := s.Stats(); st.QueueDepth != 1 {
		t.Fatalf("parked delivery not counted in the queue: %+v", st)
	}
	bitrix := newFake(nil)
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": newFake(nil), "bitrix": bitrix}})
	waitFor(t, "delivered after Configure", statusIs(t, s, l.ID, "bitrix", lead.StatusDelivered))
	if d := deliveryOf(t, s, l.ID, "bitrix"); d.LastError != "" || d.Attempts != 1 {
		t.Fatalf("%+v", d)
	}
}

// Stop waits for sends in flight; when its context ends first it returns
// their leases instead, counting no attempt.
func TestStop(t *testing.T) {
	s := openStore(t, "", nil)
	slow := make(chan struct{})
	f := newFake(func(int, *lead.Lead) (string, error) { <-slow; return "ok", nil })
	e := NewEngine(s, nil)
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": f}})
	e.Start()
	e.Start() // idempotent
	l := mustAdd(t, s, testLead(1), "amo")
	waitFor(t, "in flight", func() bool { return f.count(l.ID) == 1 })
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(context.Background()) }()
	close(slow)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if d := deliveryOf(t, s, l.ID, "amo"); d.Status != lead.StatusDelivered {
		t.Fatalf("graceful stop: %+v", d)
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal("second Stop:", err)
	}

	// A sender that ignores cancellation: Stop gives up on it.
	stuck := make(chan struct{})
	defer close(stuck)
	g := newFake(func(int, *lead.Lead) (string, error) { <-stuck; return "late", nil })
	e2 := NewEngine(s, nil)
	e2.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": g}})
	e2.Start()
	l2 := mustAdd(t, s, testLead(2), "amo")
	waitFor(t, "in flight", func() bool { return g.count(l2.ID) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	d := deliveryOf(t, s, l2.ID, "amo")
	if d.Status != lead.StatusPending || d.Attempts != 0 || d.NextAt == nil {
		t.Fatalf("after a forced stop: %+v, want pending and due again", d)
	}
	// Started again, the engine sends it anew.
	e3 := startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": newFake(nil)}})
	_ = e3
	waitFor(t, "re-sent", statusIs(t, s, l2.ID, "amo", lead.StatusDelivered))
}

func TestBackoffFullJitter(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}.Normalized()
	for attempts, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(attempts)
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", attempts, d, ceil)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Fatalf("attempt %d: %d distinct delays in 200: no jitter", attempts, len(seen))
		}
	}
	if d := (Backoff{}).Normalized(); d.Min != DefaultBackoffMin || d.Max != DefaultBackoffMax {
		t.Fatalf("defaults %+v", d)
	}
}

func TestOutcomeRespectsRetryForAndRetryAfter(t *testing.T) {
	cfg := EngineConfig{RetryFor: time.Hour, Backoff: Backoff{Min: time.Second, Max: time.Second}}
	now := time.UnixMilli(1_000_000_000)
	cases := []struct {
		name   string
		since  time.Time
		err    error
		status string
		due    time.Duration // from now; -1: none
	}{
		{"ok", now, nil, lead.StatusDelivered, -1},
		{"permanent", now, lead.Permanent(400, "x"), lead.StatusFailed, -1},
		{"spent", now.Add(-time.Hour), lead.Retryable(500, "x", 0), lead.StatusFailed, -1},
		{"retry-after beyond the deadline still waits", now.Add(-59 * time.Minute), lead.Retryable(429, "x", 2*time.Minute), lead.StatusRetrying, 2 * time.Minute},
		{"last try at the deadline", now.Add(-time.Hour + 500*time.Millisecond), lead.Retryable(500, "x", 0), lead.StatusRetrying, 500 * time.Millisecond},
	}
	for _, c := range cases {
		rec := deliveryRec{Status: lead.StatusPending, Since: c.since.UnixMilli(), Lease: "x", LeaseUntil: 1}
		outcome(&rec, now, "id", c.err, cfg)
		if rec.Status != c.status || rec.Attempts != 1 || rec.Lease != "" {
			t.Errorf("%s: %+v", c.name, rec)
			continue
		}
		switch {
		case c.due < 0 && rec.Due != 0:
			t.Errorf("%s: scheduled at %d", c.name, rec.Due)
		case c.due >= 0 && c.name != "last try at the deadline" && rec.Due < now.Add(c.due).UnixMilli():
			t.Errorf("%s: due %v, want >= %v", c.name, rec.Due-now.UnixMilli(), c.due)
		case c.name == "last try at the deadline" && rec.Due > now.Add(c.due).UnixMilli():
			t.Errorf("%s: due %vms after now, past the deadline", c.name, rec.Due-now.UnixMilli())
		}
	}
}

// Keys that name no delivery (which the invariants rule out, but a bug or a
// damaged record could leave) are cleaned up, not retried forever.
func TestOrphanKeysAreCleaned(t *testing.T) {
	s := openStore(t, "", nil)
	err := s.write(context.Background(), func(tx *nutsdb.Tx) error {
		if err := tx.Put(bDue, dueKey("amo", 1, "ghost"), nil, nutsdb.Persistent); err != nil {
			return err
		}
		return tx.Put(bLease, timedKey(1, "amo", "ghost2"), []byte("someone.1"), nutsdb.Persistent)
	})
	if err != nil {
		t.Fatal(err)
	}
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": newFake(nil)}})
	waitFor(t, "orphans gone", func() bool {
		raw := rawEntries(t, s)
		return len(raw[bDue]) == 0 && len(raw[bLease]) == 0
	})
	l := mustAdd(t, s, testLead(1), "amo")
	waitFor(t, "engine still works", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
}

// Each attempt is kept in the delivery's history (when, outcome, HTTP
// status, CRM id), and the history survives closing and reopening the store.
func TestAttemptHistoryIsStored(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	l := mustAdd(t, s, testLead(1), "amo")
	f := newFake(func(n int, _ *lead.Lead) (string, error) {
		switch n {
		case 1:
			return "", lead.Retryable(503, "maintenance", 0)
		case 2:
			return "", errors.New("connection reset")
		}
		return "deal-9", nil
	})
	e := NewEngine(s, nil)
	e.Configure(EngineConfig{Senders: map[string]lead.Sender{"amo": f}, Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}})
	e.Start()
	waitFor(t, "delivered", statusIs(t, s, l.ID, "amo", lead.StatusDelivered))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	d := deliveryOf(t, openStore(t, dir, nil), l.ID, "amo")
	var got []string
	for _, a := range d.History {
		got = append(got, fmt.Sprintf("%s/%d/%s", a.Outcome, a.HTTPStatus, a.CRMID))
		if a.At.IsZero() || a.At.After(time.Now()) || a.Took < 0 {
			t.Errorf("attempt %+v: bad time", a)
		}
	}
	if want := "retry/503/ retry/0/ delivered/0/deal-9"; strings.Join(got, " ") != want {
		t.Errorf("history %q, want %q", strings.Join(got, " "), want)
	}
	for i := 1; i < len(d.History); i++ {
		if d.History[i].At.Before(d.History[i-1].At) {
			t.Errorf("history not oldest first: %+v", d.History)
		}
	}
}

// A delivery retried for days keeps its last MaxHistory attempts.
func TestAttemptHistoryIsBounded(t *testing.T) {
	var rec deliveryRec
	start := time.UnixMilli(1_700_000_000_000)
	for i := 0; i < MaxHistory+7; i++ {
		rec.Status = lead.StatusRetrying
		at := start.Add(time.Duration(i) * time.Minute)
		addHistory(&rec, at, at.Add(time.Second), "", lead.Retryable(500+i%10, "x", 0))
	}
	if len(rec.History) != MaxHistory {
		t.Fatalf("%d attempts kept, want %d", len(rec.History), MaxHistory)
	}
	if first, last := rec.History[0].At, rec.History[MaxHistory-1].At; first != start.Add(7*time.Minute).UnixMilli() || last != start.Add(time.Duration(MaxHistory+6)*time.Minute).UnixMilli() {
		t.Errorf("kept %v … %v: want the newest %d", first, last, MaxHistory)
	}
}
