package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

func queueFilter() queue.Filter { return queue.Filter{} }

// Three nodes, two destinations on one account: the fleet's requests to
// the account never exceed its rate in any window of length Per.
func TestFleetRateNeverExceededInAnyWindow(t *testing.T) {
	dsn := newDB(t)
	const n, per = 3, 300 * time.Millisecond
	crm := &fakeCRM{}
	rec := &recorder{}
	cfg := queue.EngineConfig{Rates: map[string]queue.Rate{"amo": {N: n, Per: per}, "amo2": {N: n, Per: per}}, Concurrency: 4}
	accounts := map[string]string{"amo": "amocrm:acme.amocrm.ru", "amo2": "amocrm:acme.amocrm.ru"}
	var nodes []*Cluster
	for i := 0; i < 3; i++ {
		c := node(t, dsn, fmt.Sprintf("node%d", i))
		nodes = append(nodes, c)
	}
	const leads = 15
	var want []string
	for i := 0; i < leads; i++ {
		l := newLead()
		c := nodes[i%3]
		for _, d := range []string{"amo", "amo2"} {
			forward(t, c, l, d)
			want = append(want, l.ID+"/"+d)
		}
	}
	for _, c := range nodes {
		engineOn(c, crm, rec, cfg, accounts, "amo", "amo2")
	}
	rec.until(t, "every delivery recorded", func() bool { return rec.count(nil) >= len(want) })
	sends := crm.all()
	var at []time.Time
	nodesUsed := map[string]bool{}
	for _, s := range sends {
		at = append(at, s.at)
		nodesUsed[s.node] = true
	}
	if most, from := maxInWindow(at, per); most > n {
		t.Fatalf("%d requests within %v from %v; the account's rate is %d per %v", most, per, from, n, per)
	}
	per1 := crm.perLead()
	for _, k := range want {
		if per1[k] != 1 {
			t.Errorf("%s sent %d times", k, per1[k])
		}
	}
	if len(sends) != len(want) {
		t.Errorf("%d requests for %d deliveries", len(sends), len(want))
	}
	if len(nodesUsed) < 2 {
		t.Logf("only %d node(s) sent; the limit held all the same", len(nodesUsed))
	}
	st, err := nodes[0].Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.ByStatus[lead.StatusDelivered] != leads || st.QueueDepth != 0 {
		t.Fatalf("stats %+v: want %d delivered leads, nothing queued", st, leads)
	}
}

// A 429 with Retry-After answered to one node stops every node's requests
// to that account until it has passed.
func TestRetryAfterFromOneNodeStopsTheFleet(t *testing.T) {
	dsn := newDB(t)
	const retryAfter = 1500 * time.Millisecond
	crm := &fakeCRM{}
	var throttledAt time.Time // when the 429 was answered
	crm.answer = func(s send, n int) (string, error) {
		crm.mu.Lock()
		defer crm.mu.Unlock()
		if throttledAt.IsZero() {
			throttledAt = time.Now()
			return "", lead.Retryable(429, "Too Many Requests", retryAfter)
		}
		return "crm-" + s.lead, nil
	}
	rec := &recorder{}
	// The account allows one request at a time, so no request is in
	// flight while the 429 is answered; the rate alone would let the
	// next one go 50ms later.
	cfg := queue.EngineConfig{Rates: map[string]queue.Rate{"a": {N: 1, Per: 50 * time.Millisecond}, "b": {N: 1, Per: 50 * time.Millisecond}},
		Backoff: queue.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}}
	accounts := map[string]string{"a": "acct", "b": "acct"}
	var nodes []*Cluster
	for i := 0; i < 3; i++ {
		nodes = append(nodes, node(t, dsn, fmt.Sprintf("node%d", i)))
	}
	var ids []string
	for i := 0; i < 6; i++ {
		l := newLead()
		forward(t, nodes[i%3], l, []string{"a", "b"}[i%2])
		ids = append(ids, l.ID)
	}
	for _, c := range nodes {
		engineOn(c, crm, rec, cfg, accounts, "a", "b")
	}
	rec.until(t, "every lead delivered", func() bool {
		return rec.count(func(r recorded) bool { return r.status == lead.StatusDelivered }) == len(ids)
	})
	crm.mu.Lock()
	t429 := throttledAt
	crm.mu.Unlock()
	after := 0
	for _, s := range crm.all() {
		if s.at.After(t429) {
			after++
			if s.at.Sub(t429) < retryAfter {
				t.Errorf("node %s sent %v after the 429 asked for %v", s.node, s.at.Sub(t429), retryAfter)
			}
		}
	}
	if after < len(ids) {
		t.Fatalf("%d requests after the 429; want the %d leads' (the throttled one again included)", after, len(ids))
	}
	var throttled *lead.Lead
	for _, id := range ids {
		l := get(t, nodes[0], id)
		if d := l.Deliveries[0]; d.Attempts == 2 {
			throttled = l
			if len(d.History) != 2 || d.History[0].Outcome != "retry" || d.History[0].HTTPStatus != 429 || d.History[1].Outcome != "delivered" {
				t.Errorf("history of the throttled delivery: %+v", d.History)
			}
		}
	}
	if throttled == nil {
		t.Fatal("no delivery shows the 429 and the retry")
	}
}

// The same lead forwarded by two nodes, and the same submission captured
// as two leads on two nodes: one delivery each time.
func TestOneDeliveryForOneSubmissionSeenByTwoNodes(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	crm := &fakeCRM{}
	rec := &recorder{}
	engineOn(a, crm, rec, queue.EngineConfig{}, nil, "crm")
	engineOn(b, crm, rec, queue.EngineConfig{}, nil, "crm")

	// One lead id through both nodes (a forwarder retried on another node).
	same := newLead()
	idA, dupA := forward(t, a, same, "crm")
	idB, dupB := forward(t, b, same, "crm")
	if idA != same.ID || idB != same.ID || dupA || dupB {
		t.Fatalf("the same lead twice: (%s %v) (%s %v); want its own id, no dup, twice", idA, dupA, idB, dupB)
	}

	// One submission as two leads: the form's POST on a, the script's
	// report on b (with the comment the POST lacked).
	post := newLead()
	post.SubmissionID = "sub-1"
	report := newLead()
	report.SubmissionID, report.Phone, report.Name, report.Comment = "sub-1", post.Phone, "", "call after 6pm"
	report.Visit = &lead.Visit{Source: "ads", UTM: map[string]string{"source": "yandex"}}
	idPost, dup := forward(t, a, post, "crm")
	if idPost != post.ID || dup {
		t.Fatalf("first report: %s %v", idPost, dup)
	}
	idReport, dup := forward(t, b, report, "crm")
	if idReport != post.ID || !dup {
		t.Fatalf("second report of one submission: stored as %s (dup %v); want merged into %s", idReport, dup, post.ID)
	}
	rec.until(t, "both leads delivered", func() bool { return rec.count(nil) >= 2 })
	if got := crm.perLead(); got[same.ID+"/crm"] != 1 || got[post.ID+"/crm"] != 1 || got[report.ID+"/crm"] != 0 || crm.count() != 2 {
		t.Fatalf("requests: %v; want one per submission", got)
	}

	// Merged exactly as one node's queue merges.
	merged := get(t, b, post.ID)
	want := *post
	queue.MergeLead(&want, report)
	if merged.Comment != want.Comment || merged.Name != want.Name || merged.Visit == nil || merged.Visit.UTM["source"] != "yandex" ||
		merged.Dedup != lead.DedupMerged {
		t.Fatalf("merged lead %+v; want %+v with dedup merged", merged, want)
	}
}

// Dedup on contact and data across nodes, as a single node decides it:
// a double submit is a duplicate (kept, not sent); the same phone with
// other data is its own lead, linked.
func TestContactDedupAcrossNodesAsOneNode(t *testing.T) {
	dsn := newDB(t)
	a, b := node(t, dsn, "a"), node(t, dsn, "b")
	first := newLead()
	again := *first
	again.ID = lead.NewID(time.Now())
	again.CreatedAt = first.CreatedAt.Add(time.Second)
	other := *first
	other.ID = lead.NewID(time.Now())
	other.CreatedAt = first.CreatedAt.Add(2 * time.Second)
	other.Comment = "a different request"

	forward(t, a, first, "crm")
	id, dup := forward(t, b, &again, "crm")
	if id != again.ID || !dup {
		t.Fatalf("double submit: %s %v; want kept as itself, a duplicate", id, dup)
	}
	if l := get(t, a, again.ID); l.DuplicateOf != first.ID || l.Dedup != lead.DedupDuplicate || len(l.Deliveries) != 0 {
		t.Fatalf("duplicate %+v", l)
	}
	id, dup = forward(t, a, &other, "crm")
	if id != other.ID || dup {
		t.Fatalf("same contact, other data: %s %v", id, dup)
	}
	if l := get(t, b, other.ID); l.SameContactAs != first.ID || l.Dedup != lead.DedupSameContact || len(l.Deliveries) != 1 {
		t.Fatalf("same contact %+v", l)
	}
	// A second destination of the duplicate adds nothing; of the lead kept
	// as its own, a delivery.
	if _, dup := forward(t, a, &again, "tg"); !dup {
		t.Fatal("the duplicate's second destination is not a duplicate")
	}
	if _, dup := forward(t, b, &other, "tg"); dup {
		t.Fatal("the linked lead's second destination is a duplicate")
	}
	if l := get(t, b, other.ID); len(l.Deliveries) != 2 || len(get(t, a, again.ID).Deliveries) != 0 {
		t.Fatalf("deliveries: linked %d, duplicate %d", len(l.Deliveries), len(get(t, a, again.ID).Deliveries))
	}
}

// Many nodes forwarding reports of one submission at once: one lead gets
// delivered, the rest merge into it.
func TestConcurrentForwardsOfOneSubmission(t *testing.T) {
	dsn := newDB(t)
	var nodes []*Cluster
	for i := 0; i < 3; i++ {
		nodes = append(nodes, node(t, dsn, fmt.Sprintf("n%d", i)))
	}
	const reports = 9
	type result struct {
		id  string
		dup bool
		err error
	}
	results := make(chan result, reports)
	leads := make([]*lead.Lead, reports)
	for i := range leads {
		leads[i] = newLead()
		leads[i].SubmissionID = "one-submission"
		leads[i].Phone = "+79120000000"
	}
	for i, l := range leads {
		go func() {
			id, dup, err := nodes[i%3].Forward(context.Background(), l, "crm", nil)
			results <- result{id, dup, err}
		}()
	}
	stored := map[string]int{}
	own := 0
	for range leads {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		stored[r.id]++
		if !r.dup {
			own++
		}
	}
	if len(stored) != 1 || own != 1 {
		t.Fatalf("stored as %v, %d not dup; want all in one lead, one not dup", stored, own)
	}
	st, err := nodes[0].Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Leads != 1 || st.QueueDepth != 1 {
		t.Fatalf("stats %+v; want one lead, one delivery", st)
	}
}

// A rate above maxSlots per Per is kept with fewer slots and a shorter
// Per, never letting more through in a window of the configured Per.
func TestSlottedRateNeverLetsMoreThrough(t *testing.T) {
	for _, r := range []queue.Rate{{N: 7, Per: time.Second}, {N: 256, Per: time.Second}, {N: 257, Per: time.Second},
		{N: 100000, Per: time.Second}, {N: 1000, Per: 3 * time.Millisecond}, {N: 511, Per: time.Minute}} {
		s := slotted(r)
		// Uses of one slot, more than s.Per apart, in a window of r.Per.
		uses := int((r.Per + s.Per - 1) / s.Per)
		if s.N > maxSlots || s.N < 1 || s.Per <= 0 || s.N*uses > r.N {
			t.Errorf("%v -> %v: %d slots used up to %d times each in %v", r, s, s.N, uses, r.Per)
		}
		if r.N <= maxSlots && s != r {
			t.Errorf("%v changed to %v", r, s)
		}
	}
}

// Three nodes on a rate of more than maxSlots: fewer slot rows, and still
// no window of the configured Per above its N.
func TestHighRateKeepsItsWindow(t *testing.T) {
	dsn := newDB(t)
	const n, per = 300, 300 * time.Millisecond
	crm := &fakeCRM{}
	rec := &recorder{}
	cfg := queue.EngineConfig{Rates: map[string]queue.Rate{"hook": {N: n, Per: per}}, Concurrency: 16}
	var nodes []*Cluster
	for i := 0; i < 3; i++ {
		nodes = append(nodes, node(t, dsn, fmt.Sprintf("node%d", i)))
	}
	const leads = 450
	for i := 0; i < leads; i++ {
		forward(t, nodes[i%3], newLead(), "hook")
	}
	for _, c := range nodes {
		engineOn(c, crm, rec, cfg, nil, "hook")
	}
	rec.until(t, "every delivery recorded", func() bool { return rec.count(nil) >= leads })
	var at []time.Time
	for _, s := range crm.all() {
		at = append(at, s.at)
	}
	if most, from := maxInWindow(at, per); most > n {
		t.Fatalf("%d requests within %v from %v; the rate is %d per %v", most, per, from, n, per)
	}
	var slots int
	if err := connect(t, dsn).QueryRow(context.Background(), "SELECT count(*) FROM leadproxy.rate_slots WHERE account = 'hook'").Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots > maxSlots {
		t.Fatalf("%d slot rows", slots)
	}
}

// One lead id forwarded by three nodes at once (a forwarder's retry racing
// its first try): one lead, one delivery, the same answer everywhere.
func TestConcurrentForwardsOfOneLead(t *testing.T) {
	dsn := newDB(t)
	var nodes []*Cluster
	for i := 0; i < 3; i++ {
		nodes = append(nodes, node(t, dsn, fmt.Sprintf("n%d", i)))
	}
	l := newLead()
	type result struct {
		id  string
		dup bool
		err error
	}
	results := make(chan result, 6)
	for i := 0; i < 6; i++ {
		go func() {
			cp := *l
			id, dup, err := nodes[i%3].Forward(context.Background(), &cp, "crm", nil)
			results <- result{id, dup, err}
		}()
	}
	for range 6 {
		r := <-results
		if r.err != nil || r.id != l.ID || r.dup {
			t.Fatalf("%+v; want %s, not dup", r, l.ID)
		}
	}
	if got := get(t, nodes[0], l.ID); len(got.Deliveries) != 1 {
		t.Fatalf("%d deliveries", len(got.Deliveries))
	}
}
