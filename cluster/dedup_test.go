package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// The fleet dedups and merges exactly as one node's queue does: one random
// stream of leads (shared submission ids, phones, emails, names, comments,
// inside and outside the dedup window) through queue.Store.Add and,
// alternating between two nodes, through Forward gives the same answers
// and the same stored leads.
func TestDedupIsTheSingleNodeDedup(t *testing.T) {
	const window = 10 * time.Second
	dsn := newDB(t)
	small := func(c *Config, _ *timing) { c.DedupWindow = window }
	nodes := []*Cluster{node(t, dsn, "a", small), node(t, dsn, "b", small)}
	st, err := queue.Open(queue.Options{Dir: t.TempDir(), DedupWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	ctx := context.Background()
	var ids []string
	var prev *lead.Lead
	for i := 0; i < 120; i++ {
		at = at.Add(time.Duration(rng.IntN(7)) * time.Second)
		l := &lead.Lead{
			ID:           lead.NewID(at),
			CreatedAt:    at,
			Site:         "example.com",
			Form:         pick("callback", "order"),
			SubmissionID: pick("", "", "", "", "s1", "s2", "s3"),
			Name:         pick("", "Ivan", "Anna"),
			Phone:        pick("", "+79120000001", "+79120000002"),
			Email:        pick("", "a@example.com", "A@Example.com", "b@example.com"),
			Comment:      pick("", "", "call me"),
		}
		if rng.IntN(3) == 0 {
			l.Extra = map[string]string{"city": pick("Moscow", "Kazan")}
		}
		if prev != nil && rng.IntN(3) == 0 { // a double submit, or one with a field more
			cp := *prev
			cp.ID, cp.CreatedAt, cp.SubmissionID = l.ID, l.CreatedAt, pick("", prev.SubmissionID)
			if rng.IntN(2) == 0 {
				cp.Comment = pick("", "call me", "after 6pm")
			}
			l = &cp
		}
		prev = l
		if rng.IntN(3) == 0 {
			l.Visit = &lead.Visit{Source: pick("ads", "organic"), UTM: map[string]string{"source": pick("yandex", "google")}}
		}
		one, two := *l, *l
		stored, dupQ, err := st.Add(ctx, &one, []string{"crm"})
		if err != nil {
			t.Fatal(err)
		}
		id, dupC, err := nodes[i%2].Forward(ctx, &two, "crm", nil)
		if err != nil {
			t.Fatal(err)
		}
		if dupQ != dupC || stored.ID != id {
			t.Fatalf("lead %d (%+v): queue (%s, dup %v), cluster (%s, dup %v)", i, l, stored.ID, dupQ, id, dupC)
		}
		ids = append(ids, l.ID)
	}
	kinds := map[string]int{}
	for _, id := range ids {
		q, qerr := st.Get(id)
		c, cerr := nodes[0].Get(id)
		if errors.Is(qerr, queue.ErrNotFound) != errors.Is(cerr, queue.ErrNotFound) {
			t.Fatalf("%s: queue %v, cluster %v", id, qerr, cerr)
		}
		if qerr != nil {
			kinds["merged away"]++
			continue
		}
		if cerr != nil {
			t.Fatal(cerr)
		}
		kinds[q.Dedup]++
		if got, want := comparable(c), comparable(q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\ncluster %+v\n  queue %+v", id, got, want)
		}
	}
	for _, k := range []string{"", lead.DedupMerged, lead.DedupDuplicate, lead.DedupSameContact, "merged away"} {
		if kinds[k] == 0 {
			t.Fatalf("the stream never made a %q lead: %v", k, kinds)
		}
	}
}

// comparable is what dedup decides of a stored lead.
func comparable(l *lead.Lead) string {
	v := ""
	if l.Visit != nil {
		v = fmt.Sprint(l.Visit.Source, l.Visit.UTM)
	}
	return fmt.Sprint(l.ID, l.Form, l.SubmissionID, l.Name, l.Phone, l.Email, l.Comment, l.Extra, v,
		"dup_of=", l.DuplicateOf, " same=", l.SameContactAs, " dedup=", l.Dedup, " deliveries=", len(l.Deliveries))
}
