package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// Stop running out of time cancels the sends in flight and returns their
// leases: due again, no attempt counted, and another node delivers them.
func TestStopReturnsTheLeasesOfCancelledSends(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	entered := make(chan struct{})
	var once sync.Once
	slow := senderFunc(func(ctx context.Context, l *lead.Lead) (string, error) {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return "", ctx.Err()
	})
	a.Configure(queue.EngineConfig{Senders: map[string]lead.Sender{"crm": slow}}, nil)
	a.Start()
	l := newLead()
	forward(t, a, l, "crm")
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the send never started")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	d := get(t, a, l.ID).Deliveries[0]
	if d.Status != lead.StatusPending || d.Attempts != 0 || len(d.History) != 0 {
		t.Fatalf("after Stop: %+v; want pending, no attempt counted", d)
	}
	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(b, crm, rec, queue.EngineConfig{}, nil, "crm")
	rec.until(t, "b delivered", func() bool { return rec.count(nil) >= 1 })
	if d := get(t, b, l.ID).Deliveries[0]; d.Status != lead.StatusDelivered || d.Attempts != 1 {
		t.Fatalf("after b: %+v", d)
	}
}

// An account without a rate is paused by a Retry-After all the same.
func TestRetryAfterPausesAnUnlimitedAccount(t *testing.T) {
	dsn := newDB(t)
	const retryAfter = time.Second
	a := node(t, dsn, "a")
	crm := &fakeCRM{}
	var throttledAt time.Time
	crm.answer = func(s send, n int) (string, error) {
		crm.mu.Lock()
		defer crm.mu.Unlock()
		if throttledAt.IsZero() {
			throttledAt = time.Now()
			return "", lead.Retryable(429, "slow down", retryAfter)
		}
		return "ok", nil
	}
	rec := &recorder{}
	// One attempt at a time: none is under way when the 429 comes.
	engineOn(a, crm, rec, queue.EngineConfig{Concurrency: 1, Backoff: queue.Backoff{Min: time.Millisecond, Max: time.Millisecond}}, nil, "hook")
	for i := 0; i < 3; i++ {
		forward(t, a, newLead(), "hook")
	}
	rec.until(t, "all delivered", func() bool {
		return rec.count(func(r recorded) bool { return r.status == lead.StatusDelivered }) == 3
	})
	crm.mu.Lock()
	t429 := throttledAt
	crm.mu.Unlock()
	for _, s := range crm.all() {
		if s.at.After(t429) && s.at.Sub(t429) < retryAfter {
			t.Fatalf("a request %v after a 429 that asked for %v", s.at.Sub(t429), retryAfter)
		}
	}
}

// A reload that changes an account's rate resizes its slots.
func TestReloadResizesTheAccountsSlots(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a")
	crm := &fakeCRM{}
	rec := &recorder{}
	rate := func(n int) queue.EngineConfig {
		return queue.EngineConfig{Rates: map[string]queue.Rate{"crm": {N: n, Per: 10 * time.Millisecond}}}
	}
	slots := func() (int, int) {
		conn := connect(t, dsn)
		var rows, n int
		if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM leadproxy.rate_slots WHERE account = 'acct'),
	(SELECT n FROM leadproxy.rate_accounts WHERE account = 'acct')`).Scan(&rows, &n); err != nil {
			t.Fatal(err)
		}
		return rows, n
	}
	accounts := map[string]string{"crm": "acct"}
	engineOn(a, crm, rec, rate(2), accounts, "crm")
	forward(t, a, newLead(), "crm")
	rec.until(t, "the first delivery", func() bool { return rec.count(nil) >= 1 })
	if rows, n := slots(); rows != 2 || n != 2 {
		t.Fatalf("%d slots, n %d; want 2", rows, n)
	}
	a.Configure(queue.EngineConfig{Senders: map[string]lead.Sender{"crm": crm.sender("crm", "a")},
		Rates: map[string]queue.Rate{"crm": {N: 5, Per: 10 * time.Millisecond}}}, accounts)
	forward(t, a, newLead(), "crm")
	rec.until(t, "the second delivery", func() bool { return rec.count(nil) >= 2 })
	if rows, n := slots(); rows != 5 || n != 5 {
		t.Fatalf("after the reload: %d slots, n %d; want 5", rows, n)
	}
}

// Config.Calls sees every call to the server by its name, and
// EngineConfig.Observe wraps each attempt as on one node.
func TestCallsHookAndObserve(t *testing.T) {
	dsn := newDB(t)
	var mu sync.Mutex
	ops := map[string]int{}
	a := node(t, dsn, "a", func(c *Config, _ *timing) {
		c.Calls = func(ctx context.Context, op string) (context.Context, func(error)) {
			return ctx, func(err error) {
				mu.Lock()
				ops[op]++
				mu.Unlock()
			}
		}
	})
	observed := map[string]string{}
	cfg := queue.EngineConfig{Observe: func(ctx context.Context, dest string, l *lead.Lead) (context.Context, func(string, error)) {
		return ctx, func(crmID string, err error) {
			mu.Lock()
			observed[dest+"/"+l.ID] = crmID
			mu.Unlock()
		}
	}}
	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(a, crm, rec, cfg, nil, "crm")
	l := newLead()
	forward(t, a, l, "crm")
	rec.until(t, "the delivery", func() bool { return rec.count(nil) >= 1 })
	if _, _, err := a.List(queue.Filter{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, op := range []string{"migrate", "forward", "claim", "record", "reap", "rates", "list"} {
		if ops[op] == 0 {
			t.Errorf("no %q call seen: %v", op, ops)
		}
	}
	known := map[string]bool{}
	for _, op := range Ops {
		known[op] = true
	}
	for op := range ops {
		if !known[op] {
			t.Errorf("call %q is not in Ops", op)
		}
	}
	if observed["crm/"+l.ID] != "crm-"+l.ID {
		t.Errorf("observed %v", observed)
	}
}
