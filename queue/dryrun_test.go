package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
)

// A dry-run lead is stored and listed with its deliveries held: the engine
// sends the real lead added after it and never the held one; stats count
// it apart from the queue; SendDryRun releases it and it is delivered.
func TestDryRunHeldThenSent(t *testing.T) {
	s := openStore(t, "", nil)
	fake := newFake(nil)
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": fake}})
	ctx := context.Background()
	dry, dup, err := s.AddDryRun(ctx, testLead(1), []string{"amo"})
	if err != nil || dup {
		t.Fatal(dup, err)
	}
	if d := dry.Delivery("amo"); d == nil || d.Status != lead.StatusDryRun || d.NextAt != nil {
		t.Fatalf("delivery %+v", d)
	}
	preview := []lead.Request{{Method: "POST", URL: "https://crm.example/leads", Body: `{"name":"Иван 1"}`}}
	if err := s.SetPreview(ctx, dry.ID, "amo", preview, ""); err != nil {
		t.Fatal(err)
	}
	real := mustAdd(t, s, testLead(2), "amo")
	waitFor(t, "the real lead delivered", statusIs(t, s, real.ID, "amo", lead.StatusDelivered))
	if n := fake.count(dry.ID); n != 0 {
		t.Fatalf("dry-run lead sent %d times", n)
	}
	got, err := s.Get(dry.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status() != lead.StatusDryRun || len(got.Deliveries[0].Preview) != 1 || got.Deliveries[0].Preview[0].Body != preview[0].Body {
		t.Fatalf("stored %s %+v", got.Status(), got.Deliveries)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.ByStatus[lead.StatusDryRun] != 1 || st.ByDestination["amo"][lead.StatusDryRun] != 1 || st.QueueDepth != 0 {
		t.Fatalf("stats %+v", st)
	}
	listed, _, err := s.List(Filter{Status: lead.StatusDryRun})
	if err != nil || len(listed) != 1 || listed[0].ID != dry.ID {
		t.Fatalf("list dry_run: %v %v", listed, err)
	}
	// Retry leaves a held delivery held.
	if err := s.Retry(dry.ID); err != nil {
		t.Fatal(err)
	}
	if d := deliveryOf(t, s, dry.ID, "amo"); d.Status != lead.StatusDryRun || d.NextAt != nil {
		t.Fatalf("after Retry %+v", d)
	}
	n, err := s.SendDryRun(dry.ID)
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	waitFor(t, "the released lead delivered", statusIs(t, s, dry.ID, "amo", lead.StatusDelivered))
	if n := fake.count(dry.ID); n != 1 {
		t.Fatalf("released lead sent %d times", n)
	}
	if n, err := s.SendDryRun(dry.ID); err != nil || n != 0 {
		t.Fatalf("second SendDryRun: %d, %v", n, err)
	}
	if err := s.SetPreview(ctx, dry.ID, "amo", nil, "late"); err != nil || deliveryOf(t, s, dry.ID, "amo").LastError != "" {
		t.Fatalf("SetPreview on a released delivery: %v", err)
	}
	if _, err := s.SendDryRun("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown lead: %v", err)
	}
}

// A trial post never makes a later real lead of the same contact and data
// a duplicate (which would not be sent); dry-run leads dedup among
// themselves.
func TestDryRunDedupApart(t *testing.T) {
	s := openStore(t, "", nil)
	ctx := context.Background()
	first, dup, err := s.AddDryRun(ctx, testLead(1), []string{"amo"})
	if err != nil || dup {
		t.Fatal(dup, err)
	}
	again, dup, err := s.AddDryRun(ctx, testLead(1), []string{"amo"})
	if err != nil || !dup || again.DuplicateOf != first.ID {
		t.Fatalf("second trial: dup=%v of %q, %v", dup, again.DuplicateOf, err)
	}
	real, dup, err := s.Add(ctx, testLead(1), []string{"amo"})
	if err != nil || dup || real.DuplicateOf != "" || real.Delivery("amo").Status != lead.StatusPending {
		t.Fatalf("real lead after a trial: dup=%v %+v %v", dup, real, err)
	}
	// Erasing the trial leaves the real lead's dedup keys in place.
	if err := s.Delete(first.ID); err != nil {
		t.Fatal(err)
	}
	if _, dup, err := s.Add(ctx, testLead(1), []string{"amo"}); err != nil || !dup {
		t.Fatalf("double real submit: dup=%v %v", dup, err)
	}
}

// Retention purges a lead whose deliveries are still held, as it purges
// delivered ones.
func TestDryRunRetention(t *testing.T) {
	s := openStore(t, "", func(o *Options) { o.Retention = time.Millisecond })
	l, _, err := s.AddDryRun(context.Background(), testLead(1), []string{"amo"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the trial purged", func() bool {
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		_, err := s.Get(l.ID)
		return errors.Is(err, ErrNotFound)
	})
}
