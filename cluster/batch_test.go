package cluster

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/leadproxy/leadproxy/lead"
)

// Forwards waiting together go into one batch transaction, and a batch
// decides as forwards one by one would: new leads stored with a delivery
// each and their dedup keys; a double submit, a second report of a
// submission, a lead's second destination and a resend of a lead already
// forwarded are decided on their own after the batch, exactly once; and
// forwarding the whole batch again changes nothing.
func TestBatchedForwardsKeepDedupAndIdempotence(t *testing.T) {
	dsn := newDB(t)
	c := node(t, dsn, "a")
	var sig signal
	var mu sync.Mutex
	var batches []int
	queued := 0
	c.onQueued = func() { mu.Lock(); queued++; mu.Unlock(); sig.fire() }
	c.onBatch = func(n int) { mu.Lock(); batches = append(batches, n); mu.Unlock(); sig.fire() }
	count := func(p *int) func() int { return func() int { mu.Lock(); defer mu.Unlock(); return *p } }
	nBatches := func() int { mu.Lock(); defer mu.Unlock(); return len(batches) }

	// The first forward holds the batcher: its lead's lock is taken.
	first := newLead()
	conn := connect(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", c.lockKey("lead:"+first.ID)); err != nil {
		t.Fatal(err)
	}
	type job struct {
		l    *lead.Lead
		dest string
	}
	type answer struct {
		stored string
		dup    bool
	}
	results := map[int]answer{}
	var wg sync.WaitGroup
	into := func(m map[int]answer) func(i int, j job) {
		return func(i int, j job) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, dup, err := c.Forward(ctx, j.l, j.dest, nil)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				m[i] = answer{id, dup}
				mu.Unlock()
			}()
		}
	}
	run := into(results)
	run(-1, job{first, "crm"})
	sig.until(t, "the first batch", func() bool { return nBatches() == 1 })

	var jobs []job
	var plain []*lead.Lead
	for range 20 {
		l := newLead()
		plain = append(plain, l)
		jobs = append(jobs, job{l, "crm"})
	}
	double := *plain[0] // a double submit: same contact and data
	double.ID = lead.NewID(plain[0].CreatedAt)
	report := *plain[1] // a second report of one submission
	plain[1].SubmissionID = "sub-1"
	report.SubmissionID, report.ID, report.Comment = "sub-1", lead.NewID(plain[1].CreatedAt), "after 6pm"
	jobs = append(jobs, job{&double, "crm"}, job{&report, "crm"},
		job{plain[2], "erp"}, // a second destination of a lead in the batch
		job{first, "crm"},    // the held lead again
		job{plain[3], "crm"}) // the same (lead, destination) twice
	for i, j := range jobs {
		run(i, j)
	}
	sig.until(t, "every forward queued", func() bool { return count(&queued)() == 1+len(jobs) })
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", c.lockKey("lead:"+first.ID)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	mu.Lock()
	got := append([]int(nil), batches...)
	mu.Unlock()
	if len(got) != 2 || got[1] != len(jobs) {
		t.Fatalf("batches %v; want the held one and then all %d waiting in one", got, len(jobs))
	}

	want := func(i int, stored string, dup bool) {
		t.Helper()
		if r := results[i]; r.stored != stored || r.dup != dup {
			t.Errorf("forward %d: stored %s dup %v; want %s dup %v", i, r.stored, r.dup, stored, dup)
		}
	}
	for i, l := range plain {
		if i > 1 {
			want(i, l.ID, false)
		}
	}
	want(-1, first.ID, false)
	n := len(plain)
	// Of the double submit and its original, one is the lead and the
	// other its duplicate, whichever the batch took first.
	orig, dbl := results[0], results[n]
	if orig.dup == dbl.dup {
		t.Errorf("double submit: %+v and %+v; want one lead and one duplicate", orig, dbl)
	}
	dupID, leadID := double.ID, plain[0].ID
	if orig.dup {
		dupID, leadID = plain[0].ID, double.ID
	}
	if got := get(t, c, dupID).DuplicateOf; got != leadID {
		t.Errorf("the duplicate %s points at %q; want %s", dupID, got, leadID)
	}
	// The two reports of one submission are one lead, the other merged.
	r1, r2 := results[1], results[n+1]
	if r1.stored != r2.stored || r1.dup == r2.dup {
		t.Errorf("reports of one submission: %+v and %+v; want one lead, one merged into it", r1, r2)
	}
	want(n+2, plain[2].ID, false)
	want(n+3, first.ID, false)
	want(n+4, plain[3].ID, false)
	if l := get(t, c, plain[2].ID); len(l.Deliveries) != 2 || l.Status() != lead.StatusPending {
		t.Errorf("a lead forwarded to two destinations: %+v", l.Deliveries)
	}
	for _, l := range plain[3:] {
		if got := get(t, c, l.ID); got.Status() != lead.StatusPending || got.Dedup != "" {
			t.Errorf("%s: status %s dedup %q", l.ID, got.Status(), got.Dedup)
		}
	}
	// The batch wrote its leads' dedup keys: a double submit of one of
	// them now is a duplicate.
	late := *plain[10]
	late.ID = lead.NewID(plain[10].CreatedAt)
	if id, dup := forward(t, c, &late, "crm"); !dup || id != late.ID || get(t, c, late.ID).DuplicateOf != plain[10].ID {
		t.Errorf("a double submit of a batched lead: %s dup %v", id, dup)
	}

	before := rowCounts(t, conn)
	again := map[int]answer{}
	for i, j := range jobs {
		into(again)(i, j)
	}
	wg.Wait()
	for i := range jobs {
		if again[i] != results[i] {
			t.Errorf("forward %d again: %+v; first %+v", i, again[i], results[i])
		}
	}
	if after := rowCounts(t, conn); after != before {
		t.Errorf("forwarding again wrote rows: %v -> %v", before, after)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// One delivery each for the 20 plain leads (of each pair, its lead),
	// plain[2]'s second and first's: 22; leads: the 20, the double submit,
	// first and the late duplicate (the merged report has no row).
	if st.QueueDepth != 22 || st.Leads != 23 {
		t.Errorf("stats: %+v", st)
	}
	statsExact(t, c)
}

func rowCounts(t *testing.T, conn *pgx.Conn) [4]int {
	t.Helper()
	var n [4]int
	if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM leadproxy.leads), (SELECT count(*) FROM leadproxy.deliveries),
	(SELECT count(*) FROM leadproxy.forwards), (SELECT count(*) FROM leadproxy.dedup)`).Scan(&n[0], &n[1], &n[2], &n[3]); err != nil {
		t.Fatal(err)
	}
	return n
}
