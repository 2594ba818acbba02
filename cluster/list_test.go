package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/crm"
	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// The fleet's token store is the one destinations take.
var _ crm.TokenStore = (*Cluster)(nil)

// fleetOfLeads forwards n leads through two nodes: three forms, names to
// search, some created at the same instant (the id breaks the tie), some
// delivered by fallback, some duplicates (skipped).
func fleetOfLeads(t *testing.T, a, b *Cluster, n int, rng *rand.Rand) []string {
	t.Helper()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	forms := []string{"callback", "order", "quiz"}
	names := []string{"Ivan Petrov", "Anna", "ivanka", "Oleg"}
	var ids []string
	var prev *lead.Lead
	for i := 0; i < n; i++ {
		l := newLead()
		l.CreatedAt = base.Add(time.Duration(i/3) * time.Second) // three at each instant
		l.Form = forms[rng.IntN(len(forms))]
		l.Name = names[rng.IntN(len(names))]
		c := []*Cluster{a, b}[i%2]
		var done *Done
		switch rng.IntN(4) {
		case 0:
			done = &Done{CRMID: "x", At: l.CreatedAt}
		case 1:
			if prev != nil { // a double submit of the previous lead: a duplicate
				cp := *prev
				cp.ID = lead.NewID(l.CreatedAt)
				cp.CreatedAt = l.CreatedAt
				l = &cp
			}
		}
		if _, _, err := c.Forward(context.Background(), l, "crm", done); err != nil {
			t.Fatal(err)
		}
		prev = l
		ids = append(ids, l.ID)
	}
	return ids
}

// Every filter and page size: the pages, walked by cursor, are exactly the
// leads a full walk keeps with queue's own matcher, newest first.
func TestListPagingMatchesAFullWalk(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	rng := rand.New(rand.NewPCG(1, 2))
	ids := fleetOfLeads(t, a, b, 45, rng)
	all, next, err := a.List(queue.Filter{Limit: queue.MaxListLimit})
	if err != nil || next != "" {
		t.Fatalf("full list: %v, cursor %q", err, next)
	}
	if len(all) != len(ids) {
		t.Fatalf("%d leads listed, %d forwarded", len(all), len(ids))
	}
	for i := 1; i < len(all); i++ {
		p, q := all[i-1], all[i]
		if p.CreatedAt.Before(q.CreatedAt) || (p.CreatedAt.Equal(q.CreatedAt) && p.ID < q.ID) {
			t.Fatalf("not newest first at %d: %s %v then %s %v", i, p.ID, p.CreatedAt, q.ID, q.CreatedAt)
		}
	}
	statuses := map[string]int{}
	for _, l := range all {
		statuses[l.Status()]++
	}
	if statuses[lead.StatusPending] == 0 || statuses[lead.StatusDelivered] == 0 || statuses[lead.StatusSkipped] == 0 {
		t.Fatalf("the fixture lacks a status: %v", statuses)
	}
	for try := 0; try < 40; try++ {
		f := queue.Filter{
			Status: []string{"", lead.StatusPending, lead.StatusDelivered, lead.StatusSkipped, lead.StatusFailed}[rng.IntN(5)],
			Form:   []string{"", "order", "quiz"}[rng.IntN(3)],
			Query:  []string{"", "ivan", "ANNA", "912", "nobody"}[rng.IntN(5)],
			Limit:  []int{1, 2, 7, 50}[rng.IntN(4)],
		}
		match := f.Matcher()
		var want []string
		for _, l := range all {
			if match(l) {
				want = append(want, l.ID)
			}
		}
		var got []string
		pages := 0
		for {
			page, next, err := b.List(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > f.Limit {
				t.Fatalf("%+v: a page of %d", f, len(page))
			}
			for _, l := range page {
				got = append(got, l.ID)
			}
			if next == "" {
				break
			}
			if pages++; pages > len(ids)+1 {
				t.Fatalf("%+v: the cursor does not end", f)
			}
			f.Cursor = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%+v:\n got %v\nwant %v", f, got, want)
		}
	}
	if _, _, err := a.List(queue.Filter{Cursor: "zz"}); !errors.Is(err, queue.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := a.List(queue.Filter{Status: "lost"}); !errors.Is(err, queue.ErrBadStatus) {
		t.Fatalf("bad status: %v", err)
	}
}

// Each walks [from, to) oldest first, page after page, and stops when told.
func TestEachWalksARange(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	fleetOfLeads(t, a, b, 30, rand.New(rand.NewPCG(3, 4)))
	all, _, err := a.List(queue.Filter{Limit: queue.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(all) // oldest first
	from, to := all[4].CreatedAt, all[25].CreatedAt
	var want []string
	for _, l := range all {
		if !l.CreatedAt.Before(from) && l.CreatedAt.Before(to) {
			want = append(want, l.ID)
		}
	}
	var got []string
	if err := b.Each(from, to, func(l *lead.Lead) bool { got = append(got, l.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Each:\n got %v\nwant %v", got, want)
	}
	n := 0
	if err := b.Each(from, to, func(*lead.Lead) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Fatalf("Each went on after false: %d, %v", n, err)
	}
}

// Resend and erase act on every node's leads; an erase leaves tombstones
// for the lead and the reports merged into it, and a stale local copy
// forwarded again does not bring it back.
func TestRetryDeleteAndTombstones(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	crm := &fakeCRM{answer: func(s send, n int) (string, error) {
		if n == 1 {
			return "", lead.Permanent(422, "validation failed")
		}
		return "crm-" + s.lead, nil
	}}
	rec := &recorder{}
	engineOn(a, crm, rec, queue.EngineConfig{}, nil, "crm")
	l := newLead()
	l.SubmissionID = "sub"
	forward(t, b, l, "crm")
	rec.until(t, "the first attempt", func() bool { return rec.count(nil) >= 1 })
	if got := get(t, b, l.ID); got.Status() != lead.StatusFailed || got.Deliveries[0].LastError != "HTTP 422: validation failed" {
		t.Fatalf("after a permanent error: %s %+v", got.Status(), got.Deliveries)
	}
	if err := b.Retry(l.ID); err != nil { // resend from the other node
		t.Fatal(err)
	}
	rec.until(t, "the resend", func() bool { return rec.count(nil) >= 2 })
	statsExact(t, a)
	d := get(t, a, l.ID).Deliveries[0]
	if d.Status != lead.StatusDelivered || d.Attempts != 2 || len(d.History) != 2 || d.History[0].Outcome != "failed" {
		t.Fatalf("after the resend: %+v", d)
	}
	if err := a.Retry("nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Retry of an unknown lead: %v", err)
	}
	if err := a.Delete("nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Delete of an unknown lead: %v", err)
	}

	report := newLead()
	report.SubmissionID = "sub"
	if id, dup := forward(t, a, report, "crm"); id != l.ID || !dup {
		t.Fatalf("the report: %s %v", id, dup)
	}
	ctx := context.Background()
	_, start, err := b.ErasedSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(l.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(l.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	statsExact(t, b)
	ids, next, err := b.ErasedSince(ctx, start)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	want := []string{l.ID, report.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) || next <= start {
		t.Fatalf("erased since %d: %v next %d; want %v", start, ids, next, want)
	}
	if more, again, err := b.ErasedSince(ctx, next); err != nil || len(more) != 0 || again != next {
		t.Fatalf("erased since %d again: %v %d %v", next, more, again, err)
	}
	// A node that still held the lead forwards it for another destination.
	if _, _, err := b.Forward(ctx, l, "tg", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(l.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("an erased lead came back: %v", err)
	}
	// Its submission is free again: a new lead with it is its own.
	fresh := newLead()
	fresh.SubmissionID = "sub"
	if id, dup := forward(t, b, fresh, "crm"); id != fresh.ID || dup {
		t.Fatalf("a new lead after the erase: %s %v", id, dup)
	}
	statsExact(t, a)
}

// OAuth tokens and the nodes' heartbeats are the fleet's.
func TestTokensAndNodesAreShared(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	if err := a.SaveToken("salesforce:acme", "refresh-1"); err != nil {
		t.Fatal(err)
	}
	if v, err := b.LoadToken("salesforce:acme"); err != nil || v != "refresh-1" {
		t.Fatalf("b loads %q, %v", v, err)
	}
	if err := b.SaveToken("salesforce:acme", "refresh-2"); err != nil {
		t.Fatal(err)
	}
	if v, _ := a.LoadToken("salesforce:acme"); v != "refresh-2" {
		t.Fatalf("a loads %q after b rotated it", v)
	}
	if err := a.SaveToken("salesforce:acme", ""); err != nil {
		t.Fatal(err)
	}
	if v, err := b.LoadToken("salesforce:acme"); err != nil || v != "" {
		t.Fatalf("a deleted token loads as %q, %v", v, err)
	}
	if err := a.SaveToken("", "x"); err == nil {
		t.Fatal("an empty token key saved")
	}

	a.SetUnforwarded(func() int { return 3 })
	ctx := context.Background()
	for _, c := range []*Cluster{a, b} {
		if err := c.call(ctx, "heartbeat", c.heartbeat); err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Name != "a" || nodes[0].Unforwarded != 3 || !nodes[0].Alive || !nodes[1].Alive || nodes[0].LastSeen.IsZero() {
		t.Fatalf("nodes %+v", nodes)
	}
	if n := b.AliveNodes(); n != 2 {
		t.Fatalf("AliveNodes %d; want 2", n)
	}
}

// Retention erases finished leads past it, one node at a time, and keeps
// the ones still to deliver.
func TestRetentionErasesFinishedLeadsOnly(t *testing.T) {
	dsn := newDB(t)
	hour := func(c *Config, _ *timing) { c.Retention = time.Hour }
	a, b := node(t, dsn, "a", hour), node(t, dsn, "b", hour)
	old := time.Now().Add(-2 * time.Hour)
	finished, waiting, recent := newLead(), newLead(), newLead()
	finished.CreatedAt, waiting.CreatedAt = old, old
	ctx := context.Background()
	if _, _, err := a.Forward(ctx, finished, "crm", &Done{CRMID: "1", At: old}); err != nil {
		t.Fatal(err)
	}
	forward(t, a, waiting, "crm")
	if _, _, err := a.Forward(ctx, recent, "crm", &Done{CRMID: "2", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, c := range []*Cluster{a, b} {
		go func() { errs <- c.call(ctx, "retention", c.retain) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Get(finished.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("a delivered lead past retention: %v", err)
	}
	get(t, b, waiting.ID)
	get(t, b, recent.ID)
	// A retention round folds the counts: one row per count. (Of the two
	// rounds at once above, one may fold while the other's erasure is not
	// yet committed, and the other then skip folding: the next round
	// folds what that left.)
	if err := a.call(ctx, "retention", a.retain); err != nil {
		t.Fatal(err)
	}
	var rows, distinct int
	if err := a.pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT (kind, dest, status)) FROM leadproxy.counts").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != distinct {
		t.Fatalf("counts: %d rows for %d counts after retention; want them folded", rows, distinct)
	}
	statsExact(t, a)
}

// A cursor is any string a client sends back: it parses to what List gave,
// or is refused with ErrBadCursor; it never panics.
func FuzzCursor(f *testing.F) {
	f.Add(int64(1733222400000000), "01M8XRX8GNJTMATRMQMSXY2Y8X", "")
	f.Add(int64(0), "x", "zz")
	f.Add(int64(-1), "", "00")
	f.Fuzz(func(t *testing.T, micros int64, id, raw string) {
		at := time.UnixMicro(micros)
		if id != "" {
			gotAt, gotID, err := parseCursor(cursor(at, id))
			if err != nil || !gotAt.Equal(at) || gotID != id {
				t.Fatalf("round trip of (%v, %q): (%v, %q) %v", at, id, gotAt, gotID, err)
			}
		}
		if _, _, err := parseCursor(raw); err != nil && !errors.Is(err, queue.ErrBadCursor) {
			t.Fatalf("%q: %v", raw, err)
		}
	})
}
