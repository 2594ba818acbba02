package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/internal/pgtest"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// stuck is a sender that signals when a send starts and returns only when
// released, whatever its context says (a hung node).
type stuck struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	crmID   string
}

func newStuck(crmID string) *stuck {
	return &stuck{entered: make(chan struct{}), release: make(chan struct{}), crmID: crmID}
}

func (s *stuck) Send(ctx context.Context, l *lead.Lead) (string, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.crmID, nil
}

func (s *stuck) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(wait):
		t.Fatal("the send never started")
	}
}

func shortLease(_ *Config, tm *timing) {
	tm.leaseFor = time.Second
	tm.attemptTimeout = 300 * time.Millisecond
}

// A node dies holding a lease (nothing released): another node reaps it
// when it expires and delivers the lead, once.
func TestDeadNodesLeaseIsReapedAndDeliveredOnce(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a", shortLease)
	b := node(t, dsn, "b")
	hung := newStuck("crm-dead-node")
	a.Configure(queue.EngineConfig{Senders: map[string]lead.Sender{"crm": hung}, Concurrency: 1}, nil)
	a.Start()
	l := newLead()
	forward(t, a, l, "crm")
	hung.waitEntered(t)
	a.kill()

	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(b, crm, rec, queue.EngineConfig{}, nil, "crm")
	rec.until(t, "b's attempt recorded", func() bool { return rec.count(nil) >= 1 })
	close(hung.release) // the dead node's send returns into nothing

	if n := crm.perLead()[l.ID+"/crm"]; n != 1 || crm.count() != 1 {
		t.Fatalf("%d requests for the lead (%d in all); want 1", n, crm.count())
	}
	d := get(t, b, l.ID).Deliveries[0]
	if d.Status != lead.StatusDelivered || d.CRMID != "crm-"+l.ID || d.Attempts != 1 || len(d.History) != 1 {
		t.Fatalf("delivery %+v; want delivered once by b", d)
	}
}

// A node whose lease expired while its send hung cannot record its late
// result: the fencing token moved on to the node that took over.
func TestStaleLeaseHolderCannotRecord(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a", shortLease)
	b := node(t, dsn, "b")
	hung := newStuck("crm-stale")
	recA := &recorder{}
	a.eng.onRecord = recA.hook
	a.Configure(queue.EngineConfig{Senders: map[string]lead.Sender{"crm": hung}, Concurrency: 1}, nil)
	a.Start()
	l := newLead()
	forward(t, a, l, "crm")
	hung.waitEntered(t)

	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(b, crm, rec, queue.EngineConfig{}, nil, "crm")
	rec.until(t, "b delivered", func() bool { return rec.count(nil) >= 1 })
	close(hung.release)
	recA.until(t, "a's late result refused", func() bool { return recA.count(nil) >= 1 })
	recA.mu.Lock()
	r := recA.outs[0]
	recA.mu.Unlock()
	if !r.lost || r.err != nil {
		t.Fatalf("a's late result: %+v; want lost", r)
	}
	d := get(t, a, l.ID).Deliveries[0]
	if d.Status != lead.StatusDelivered || d.CRMID != "crm-"+l.ID || d.Attempts != 1 || len(d.History) != 1 {
		t.Fatalf("delivery %+v; want b's result only", d)
	}
}

// The server stopped the hard way in the middle of a run and started
// again: forwards fail meanwhile (the local queue keeps them), the nodes
// say they are down, and afterwards every lead is delivered exactly once.
func TestServerStoppedAndRestartedMidRun(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDB(t)
	var mu sync.Mutex
	callErrs := 0
	calls := func(c *Config, _ *timing) {
		c.Calls = func(ctx context.Context, op string) (context.Context, func(error)) {
			return ctx, func(err error) {
				if err != nil {
					mu.Lock()
					callErrs++
					mu.Unlock()
				}
			}
		}
	}
	a, b := node(t, dsn, "a", calls), node(t, dsn, "b", calls)
	crm := &fakeCRM{}
	rec := &recorder{}
	// A rate keeps deliveries going while the server stops.
	cfg := queue.EngineConfig{Backoff: queue.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, Concurrency: 2,
		Rates: map[string]queue.Rate{"crm": {N: 2, Per: 100 * time.Millisecond}}}
	engineOn(a, crm, rec, cfg, nil, "crm")
	engineOn(b, crm, rec, cfg, nil, "crm")
	var ids []string
	for i := 0; i < 12; i++ {
		l := newLead()
		forward(t, []*Cluster{a, b}[i%2], l, "crm")
		ids = append(ids, l.ID)
	}
	crm.until(t, "the first deliveries", func() bool { return crm.count() >= 3 })
	srv.StopImmediate(t)
	t.Logf("server stopped after %d of %d requests", crm.count(), len(ids))

	var waiting []*lead.Lead
	for i := 0; i < 8; i++ {
		l := newLead()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, _, err := a.Forward(ctx, l, "crm", nil); err == nil {
			t.Fatal("a forward succeeded with the server stopped")
		}
		cancel()
		waiting = append(waiting, l)
		ids = append(ids, l.ID)
	}
	if a.Up() || a.DownFor() <= 0 {
		t.Fatalf("a: up %v, down for %v after failed forwards", a.Up(), a.DownFor())
	}
	srv.Start(t)
	for _, l := range waiting {
		// The local queue retries; each failure drops a dead connection.
		var err error
		for try := 0; try < 50; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			_, _, err = a.Forward(ctx, l, "crm", nil)
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("forward after the restart: %v", err)
		}
	}
	if !a.Up() || a.DownFor() != 0 {
		t.Fatalf("a: up %v, down for %v after a successful forward", a.Up(), a.DownFor())
	}
	rec.until(t, "every lead delivered", func() bool {
		return rec.count(func(r recorded) bool { return r.status == lead.StatusDelivered }) >= len(ids)
	})
	got := crm.perLead()
	for _, id := range ids {
		if got[id+"/crm"] != 1 {
			t.Errorf("lead %s sent %d times", id, got[id+"/crm"])
		}
	}
	if crm.count() != len(ids) {
		t.Errorf("%d requests for %d leads", crm.count(), len(ids))
	}
	mu.Lock()
	defer mu.Unlock()
	if callErrs == 0 {
		t.Error("the Calls hook saw no failed call while the server was down")
	}
}

// Forward after a crash: before the commit nothing is stored; after it,
// forwarding again (from this node or another) is harmless.
func TestForwardAgainAfterACrashIsHarmless(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a")
	l := newLead()
	ctx := context.Background()
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := newWrites(tx)
	if _, _, err := a.forwardTx(ctx, w, l, "crm", nil); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(ctx); err != nil { // every statement but the COMMIT
		t.Fatal(err)
	}
	conn.Conn().Close(ctx) // the node dies before its commit
	conn.Release()
	if _, err := a.Get(l.ID); err != queue.ErrNotFound {
		t.Fatalf("a lead whose forward never committed: %v", err)
	}
	id1, dup1 := forward(t, a, l, "crm")
	b := node(t, dsn, "b") // the node restarted, or another one took its queue over
	id2, dup2 := forward(t, b, l, "crm")
	id3, dup3, err := b.Forward(ctx, l, "crm", &Done{CRMID: "late", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if id1 != l.ID || id2 != id1 || id3 != id1 || dup1 || dup2 || dup3 {
		t.Fatalf("forwards: (%s %v) (%s %v) (%s %v); want the same answer", id1, dup1, id2, dup2, id3, dup3)
	}
	// The last forward came with done: its node delivered the lead itself
	// meanwhile, and the fleet had not tried it yet.
	got := get(t, b, l.ID)
	if len(got.Deliveries) != 1 || got.Deliveries[0].Status != lead.StatusDelivered || got.Deliveries[0].CRMID != "late" {
		t.Fatalf("deliveries %+v; want one, delivered by the node as late", got.Deliveries)
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Leads != 1 || st.QueueDepth != 0 || st.ByStatus[lead.StatusDelivered] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A lead a node delivered itself while the engine was down (fallback) is
// recorded as delivered and never sent by the fleet.
func TestForwardWithDoneIsNeverSent(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a")
	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(a, crm, rec, queue.EngineConfig{Concurrency: 1}, nil, "crm")
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	done := newLead()
	if _, dup, err := a.Forward(context.Background(), done, "crm", &Done{CRMID: "crm-fallback", At: at}); err != nil || dup {
		t.Fatalf("forward with done: %v %v", dup, err)
	}
	// Another lead, forwarded after it, is delivered: the dispatcher has
	// been past the first one.
	other := newLead()
	forward(t, a, other, "crm")
	rec.until(t, "the other lead delivered", func() bool { return rec.count(nil) >= 1 })
	if n := crm.perLead()[done.ID+"/crm"]; n != 0 {
		t.Fatalf("the fallback-delivered lead was sent %d times", n)
	}
	d := get(t, a, done.ID).Deliveries[0]
	if d.Status != lead.StatusDelivered || d.CRMID != "crm-fallback" || d.DeliveredAt == nil || !d.DeliveredAt.Equal(at) || d.Attempts != 1 {
		t.Fatalf("delivery %+v; want delivered at %v as crm-fallback", d, at)
	}
}

// A second report of a submission, delivered by its node in fallback,
// marks the first lead's untried delivery delivered: the CRM has it.
func TestDoneOnAMergedReportMarksTheFirstLead(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	first := newLead()
	first.SubmissionID = "s"
	report := newLead()
	report.SubmissionID = "s"
	forward(t, a, first, "crm")
	id, dup, err := b.Forward(context.Background(), report, "crm", &Done{CRMID: "crm-b", At: time.Now()})
	if err != nil || id != first.ID || !dup {
		t.Fatalf("merged with done: %s %v %v", id, dup, err)
	}
	if d := get(t, a, first.ID).Deliveries[0]; d.Status != lead.StatusDelivered || d.CRMID != "crm-b" {
		t.Fatalf("first lead's delivery %+v; want delivered by b's fallback", d)
	}
}

// Attempts fail, back off and give up exactly as queue.Engine's do.
func TestRetriesBackOffAndGiveUpAsTheQueue(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a")
	crm := &fakeCRM{answer: func(s send, n int) (string, error) {
		return "", lead.Retryable(503, "unavailable", 0)
	}}
	rec := &recorder{}
	cfg := queue.EngineConfig{Backoff: queue.Backoff{Min: 20 * time.Millisecond, Max: 40 * time.Millisecond}, RetryFor: 400 * time.Millisecond}
	engineOn(a, crm, rec, cfg, nil, "crm")
	l := newLead()
	forward(t, a, l, "crm")
	rec.until(t, "the delivery failed", func() bool {
		return rec.count(func(r recorded) bool { return r.status == lead.StatusFailed }) == 1
	})
	got := get(t, a, l.ID)
	d := got.Deliveries[0]
	if got.Status() != lead.StatusFailed || d.Attempts < 2 || d.NextAt != nil {
		t.Fatalf("delivery %+v", d)
	}
	if want := fmt.Sprintf("gave up after retry_for %s: HTTP 503: unavailable", cfg.RetryFor); d.LastError != want {
		t.Fatalf("last error %q; want %q", d.LastError, want)
	}
	if len(d.History) != min(d.Attempts, queue.MaxHistory) || d.History[len(d.History)-1].Outcome != "failed" || d.History[0].Outcome != "retry" || d.History[0].HTTPStatus != 503 {
		t.Fatalf("history %+v", d.History)
	}
	if n := crm.count(); n != d.Attempts {
		t.Fatalf("%d requests, %d attempts recorded", n, d.Attempts)
	}
}

// A Retry while an attempt is in flight restarts its retry_for: the
// attempt's failure is recorded against the new start (retrying), not
// against the start its claim read, past retry_for (failed). A record
// writes the row its claim read in one round trip only while neither
// the lease nor since changed.
func TestRetryDuringAnAttemptRestartsRetryFor(t *testing.T) {
	dsn := newDB(t)
	c := node(t, dsn, "a")
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fail := senderFunc(func(ctx context.Context, l *lead.Lead) (string, error) {
		once.Do(func() { close(entered) })
		<-release
		return "", errors.New("connection reset by peer")
	})
	l := newLead()
	forward(t, c, l, "crm")
	// The delivery has been failing for an hour, past retry_for.
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "UPDATE leadproxy.deliveries SET since = clock_timestamp() - interval '1 hour' WHERE lead_id = $1", l.ID); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	c.eng.onRecord = rec.hook
	c.Configure(queue.EngineConfig{Senders: map[string]lead.Sender{"crm": fail}, RetryFor: 30 * time.Minute, Concurrency: 1}, nil)
	c.Start()
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the send never started")
	}
	if err := c.Retry(l.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	rec.until(t, "the attempt recorded", func() bool { return rec.count(nil) >= 1 })
	rec.mu.Lock()
	r := rec.outs[0]
	rec.mu.Unlock()
	if r.lost || r.err != nil || r.status != lead.StatusRetrying {
		t.Fatalf("recorded %+v; want retrying (retry_for restarted by the Retry)", r)
	}
	if d := get(t, c, l.ID).Deliveries[0]; d.Status != lead.StatusRetrying || d.Attempts != 1 || len(d.History) != 1 {
		t.Fatalf("delivery %+v", d)
	}
}

// A record whose COMMIT the server applied but whose reply never came
// (the connection broke in between) is tried again, finds its own write
// by the fencing token in the history, and neither writes it twice nor
// calls the delivery lost.
func TestRecordRetriedAfterLostReply(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a")
	var once sync.Once
	lostOne := false
	a.eng.replyLost = func(op string) bool {
		hit := false
		if op == "record" {
			once.Do(func() { hit, lostOne = true, true })
		}
		return hit
	}
	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(a, crm, rec, queue.EngineConfig{}, nil, "crm")
	l := newLead()
	forward(t, a, l, "crm")
	rec.until(t, "the attempt recorded", func() bool { return rec.count(nil) >= 1 })
	if !lostOne {
		t.Fatal("no reply was lost")
	}
	rec.mu.Lock()
	r := rec.outs[0]
	rec.mu.Unlock()
	if r.lost || r.err != nil || r.status != lead.StatusDelivered {
		t.Fatalf("record: %+v; want delivered, not lost", r)
	}
	d := get(t, a, l.ID).Deliveries[0]
	if d.Status != lead.StatusDelivered || d.Attempts != 1 || len(d.History) != 1 || crm.count() != 1 {
		t.Fatalf("delivery %+v after %d requests; want delivered once, one attempt recorded", d, crm.count())
	}
}

// A claim whose COMMIT the server applied but whose reply never came
// leased a row no attempt holds. The next dispatch returns it to the
// queue at once, rather than after the lease (here an hour), and the
// lead is delivered once; a claim in flight meanwhile keeps its lease.
func TestClaimAfterLostReply(t *testing.T) {
	dsn := newDB(t)
	a := node(t, dsn, "a", func(_ *Config, tm *timing) { tm.leaseFor = time.Hour })
	var mu sync.Mutex
	armed, lost := false, 0
	a.eng.replyLost = func(op string) bool {
		mu.Lock()
		defer mu.Unlock()
		if op == "claim" && armed && lost == 0 {
			lost++
			return true
		}
		return false
	}
	hung := newStuck("crm-slow")
	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(a, crm, rec, queue.EngineConfig{Senders: map[string]lead.Sender{"slow": hung}}, nil, "crm")
	slow := newLead()
	forward(t, a, slow, "slow")
	hung.waitEntered(t)
	mu.Lock()
	armed = true
	mu.Unlock()
	l := newLead()
	forward(t, a, l, "crm")
	rec.until(t, "the lead delivered", func() bool { return rec.count(nil) >= 1 })
	mu.Lock()
	if lost != 1 {
		t.Fatalf("%d claim replies lost; want 1", lost)
	}
	mu.Unlock()
	d := get(t, a, l.ID).Deliveries[0]
	if d.Status != lead.StatusDelivered || d.Attempts != 1 || crm.count() != 1 {
		t.Fatalf("delivery %+v after %d requests; want delivered once", d, crm.count())
	}
	var leased bool
	if err := a.pool.QueryRow(context.Background(), a.q(`SELECT lease_token IS NOT NULL FROM {s}.deliveries WHERE lead_id = $1`), slow.ID).Scan(&leased); err != nil {
		t.Fatal(err)
	}
	if !leased {
		t.Fatal("the attempt in flight lost its lease to the failed claim's clean-up")
	}
	close(hung.release)
	rec.until(t, "the slow lead delivered", func() bool { return rec.count(nil) >= 2 })
	if d := get(t, a, slow.ID).Deliveries[0]; d.Status != lead.StatusDelivered || d.Attempts != 1 {
		t.Fatalf("slow delivery %+v; want delivered by its one attempt", d)
	}
}
