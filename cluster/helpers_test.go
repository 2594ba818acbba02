package cluster

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/leadproxy/leadproxy/internal/pgtest"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// wait bounds every wait for an event: it only turns a hang into a
// failure, it measures nothing.
const wait = 90 * time.Second

// testTiming keeps the engine's clocks short so tests end soon; no test
// asserts on them.
func testTiming() timing {
	return timing{
		heartbeat:      200 * time.Millisecond,
		aliveFor:       5 * time.Second,
		poll:           500 * time.Millisecond,
		attemptTimeout: 10 * time.Second,
		leaseFor:       30 * time.Second,
		retention:      100 * time.Millisecond,
		retryMax:       200 * time.Millisecond,
	}
}

type nodeOpt func(*Config, *timing)

// node opens a Cluster on dsn as a node of the fleet and waits until it
// is ready.
func node(t testing.TB, dsn, name string, opts ...nodeOpt) *Cluster {
	t.Helper()
	cfg := Config{DSN: dsn, Node: name}
	tm := testTiming()
	for _, o := range opts {
		o(&cfg, &tm)
	}
	c, err := open(cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(name), tm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func newDB(t testing.TB) string {
	return pgtest.Start(t).NewDB(t)
}

// signal is a broadcast: waiters re-check their condition on every change.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// until waits for cond, re-checked on every fire of s.
func (s *signal) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		ch := s.changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// send is one request the fake CRM received.
type send struct {
	lead, dest, node string
	at               time.Time // when it arrived (Send started)
}

// fakeCRM records every request, fleet-wide; answer decides each reply
// (default: delivered, crm id "crm-<lead>").
type fakeCRM struct {
	signal
	mu     sync.Mutex
	sends  []send
	answer func(s send, n int) (string, error) // n: this lead's sends so far, this one included
}

func (f *fakeCRM) sender(dest, node string) lead.Sender {
	return senderFunc(func(ctx context.Context, l *lead.Lead) (string, error) {
		s := send{lead: l.ID, dest: dest, node: node, at: time.Now()}
		f.mu.Lock()
		f.sends = append(f.sends, s)
		n := 0
		for _, x := range f.sends {
			if x.lead == s.lead && x.dest == s.dest {
				n++
			}
		}
		answer := f.answer
		f.mu.Unlock()
		defer f.fire()
		if answer != nil {
			return answer(s, n)
		}
		return "crm-" + l.ID, nil
	})
}

func (f *fakeCRM) all() []send {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]send(nil), f.sends...)
}

func (f *fakeCRM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sends)
}

// perLead counts the requests per "lead/dest".
func (f *fakeCRM) perLead() map[string]int {
	out := map[string]int{}
	for _, s := range f.all() {
		out[s.lead+"/"+s.dest]++
	}
	return out
}

type senderFunc func(ctx context.Context, l *lead.Lead) (string, error)

func (f senderFunc) Send(ctx context.Context, l *lead.Lead) (string, error) { return f(ctx, l) }

// recorder counts the outcomes a node's engine writes.
type recorder struct {
	signal
	mu   sync.Mutex
	outs []recorded
}

type recorded struct {
	lead, dest, status string
	lost               bool
	err                error
}

func (r *recorder) hook(cl *claim, lost bool, status string, err error) {
	r.mu.Lock()
	r.outs = append(r.outs, recorded{cl.id, cl.dest, status, lost, err})
	r.mu.Unlock()
	r.fire()
}

func (r *recorder) count(match func(recorded) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range r.outs {
		if match == nil || match(o) {
			n++
		}
	}
	return n
}

// engineOn configures and starts c's engine with senders to crm, its
// outcomes counted by rec (shared by the fleet's nodes).
func engineOn(c *Cluster, crm *fakeCRM, rec *recorder, cfg queue.EngineConfig, accounts map[string]string, dests ...string) {
	if cfg.Senders == nil {
		cfg.Senders = map[string]lead.Sender{}
	}
	for _, d := range dests {
		cfg.Senders[d] = crm.sender(d, c.Node())
	}
	if rec != nil {
		c.eng.onRecord = rec.hook
	}
	c.Configure(cfg, accounts)
	c.Start()
}

var leadSeq struct {
	sync.Mutex
	n int
}

// newLead is a lead as capture makes it, with a contact of its own.
func newLead() *lead.Lead {
	leadSeq.Lock()
	leadSeq.n++
	n := leadSeq.n
	leadSeq.Unlock()
	now := time.Now().UTC()
	return &lead.Lead{
		ID:        lead.NewID(now),
		CreatedAt: now,
		Site:      "example.com",
		Form:      "callback",
		Name:      fmt.Sprintf("Visitor %d", n),
		Phone:     fmt.Sprintf("+7912%07d", n),
	}
}

func forward(t *testing.T, c *Cluster, l *lead.Lead, dest string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	id, dup, err := c.Forward(ctx, l, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id, dup
}

func get(t *testing.T, c *Cluster, id string) *lead.Lead {
	t.Helper()
	l, err := c.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return l
}

// maxInWindow is the most sends that started within any window of length
// per (half-open: [t, t+per)).
func maxInWindow(at []time.Time, per time.Duration) (most int, from time.Time) {
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	j := 0
	for i := range at {
		for j < len(at) && at[j].Sub(at[i]) < per {
			j++
		}
		if j-i > most {
			most, from = j-i, at[i]
		}
	}
	return most, from
}

// statsExact checks the counts Stats reads against the tables, both read
// in one snapshot (the engine may record an attempt meanwhile), after a
// Stats call (which folds the counts).
func statsExact(t *testing.T, c *Cluster) {
	t.Helper()
	if _, err := c.Stats(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func(tx pgx.Tx, sql string) map[string]int {
		rows, err := tx.Query(ctx, c.q(sql))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			out[k] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var got, want map[string]int
	err := pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		got = read(tx, "SELECT kind || '/' || dest || '/' || status, sum(n) FROM {s}.counts GROUP BY 1 HAVING sum(n) <> 0")
		want = read(tx, `SELECT 'lead//' || status, count(*) FROM {s}.leads GROUP BY 1
UNION ALL SELECT 'delivery/' || dest || '/' || status, count(*) FROM {s}.deliveries GROUP BY 1`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v; the tables say %v", got, want)
	}
}
