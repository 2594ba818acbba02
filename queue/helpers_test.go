package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/leadproxy/leadproxy/lead"
)

// deadline is how long a test waits for a condition: generous, because the
// machines are shared and slow; a passing test never waits that long.
const deadline = 60 * time.Second

func openStore(t testing.TB, dir string, mod func(*Options)) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts := Options{Dir: dir, Logger: zaptest.NewLogger(t)}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testLead(i int) *lead.Lead {
	return &lead.Lead{
		Site:  "example.com",
		Form:  "Заявка",
		Title: "Заявка с сайта",
		Name:  fmt.Sprintf("Иван %d", i),
		Phone: fmt.Sprintf("+7999%07d", i),
		Email: fmt.Sprintf("ivan%d@example.com", i),
	}
}

func mustAdd(t testing.TB, s *Store, l *lead.Lead, dests ...string) *lead.Lead {
	t.Helper()
	got, _, err := s.Add(context.Background(), l, dests)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitProgress waits for cond like waitFor, but gives up only when the
// progress it reports has not moved for deadline: a long drain on a starved
// machine is slow, not stuck.
func waitProgress(t testing.TB, what string, cond func() (bool, int)) {
	t.Helper()
	last, since := -1, time.Now()
	for {
		done, progress := cond()
		if done {
			return
		}
		if progress != last {
			last, since = progress, time.Now()
		} else if time.Since(since) > deadline {
			t.Fatalf("timed out waiting for %s (stuck at %d)", what, progress)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func deliveryOf(t testing.TB, s *Store, id, dest string) lead.Delivery {
	t.Helper()
	l, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if d := l.Delivery(dest); d != nil {
		return *d
	}
	t.Fatalf("lead %s has no delivery to %s", id, dest)
	return lead.Delivery{}
}

func statusIs(t testing.TB, s *Store, id, dest, status string) func() bool {
	return func() bool { return deliveryOf(t, s, id, dest).Status == status }
}

// fakeSender records every Send and answers with fn (nil: success).
type fakeSender struct {
	mu       sync.Mutex
	fn       func(n int, l *lead.Lead) (string, error) // n counts calls for this lead, from 1
	calls    map[string]int
	starts   []time.Time
	active   map[string]int // sends in progress per lead
	overlaps int            // a Send started while another for the same lead was running
	crmIDs   map[string]string
}

func newFake(fn func(n int, l *lead.Lead) (string, error)) *fakeSender {
	return &fakeSender{fn: fn, calls: map[string]int{}, active: map[string]int{}, crmIDs: map[string]string{}}
}

func (f *fakeSender) Send(ctx context.Context, l *lead.Lead) (string, error) {
	start := time.Now()
	f.mu.Lock()
	f.calls[l.ID]++
	n := f.calls[l.ID]
	f.starts = append(f.starts, start)
	f.active[l.ID]++
	if f.active[l.ID] > 1 {
		f.overlaps++
	}
	fn := f.fn
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active[l.ID]--
		f.mu.Unlock()
	}()
	id, err := "crm-"+l.ID, error(nil)
	if fn != nil {
		id, err = fn(n, l)
	}
	if err == nil {
		f.mu.Lock()
		f.crmIDs[l.ID] = id
		f.mu.Unlock()
	}
	return id, err
}

func (f *fakeSender) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func (f *fakeSender) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

// startEngine configures and starts an engine on s, stopped at cleanup.
func startEngine(t testing.TB, s *Store, cfg EngineConfig) *Engine {
	t.Helper()
	e := NewEngine(s, zaptest.NewLogger(t))
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond}
	}
	e.Configure(cfg)
	e.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return e
}

// countingSender counts the sends one engine makes through a shared fake.
type countingSender struct {
	inner lead.Sender
	n     atomic.Int64
}

func (c *countingSender) Send(ctx context.Context, l *lead.Lead) (string, error) {
	c.n.Add(1)
	return c.inner.Send(ctx, l)
}
