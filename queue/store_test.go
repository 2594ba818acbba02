package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

// Adds that arrive while a commit is in progress share the next one. A
// blocking operation holds the committer until all adds are queued, so the
// batching is observed, not hoped for.
func TestGroupCommit(t *testing.T) {
	s := openStore(t, "", nil)
	const n = 200
	release := hold(t, s)
	before, _ := s.Commits()

	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, _, err := s.Add(context.Background(), testLead(i), []string{"amo"})
			errs[i] = err
			if err == nil {
				ids[i] = l.ID
			}
		}()
	}
	waitFor(t, "all adds queued", func() bool { return len(s.ops) == n })
	close(release)
	wg.Wait()
	after, _ := s.Commits()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if _, err := s.Get(ids[i]); err != nil {
			t.Fatalf("lead %d not stored: %v", i, err)
		}
	}
	// The holder's commit, then n adds in ceil(n/maxBatch) commits.
	if got, want := after-before, uint64(1+(n+maxBatch-1)/maxBatch); got > want {
		t.Fatalf("%d adds took %d commits, want at most %d", n, got, want)
	}
	t.Logf("%d concurrent adds: %d commits", n, after-before-1)
}

// hold keeps the committer busy in a transaction until the returned channel
// is closed, so operations queue up behind it.
func hold(t *testing.T, s *Store) chan struct{} {
	release, inside := make(chan struct{}), make(chan struct{})
	go func() {
		err := s.write(context.Background(), func(*nutsdb.Tx) error { close(inside); <-release; return nil })
		if err != nil {
			t.Error(err)
		}
	}()
	<-inside
	return release
}

// Without any help, concurrent adds still batch: fewer commits than adds.
func TestGroupCommitNatural(t *testing.T) {
	s := openStore(t, "", nil)
	const n = 64 * 8
	before, _ := s.Commits()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 64 {
				if _, _, err := s.Add(context.Background(), testLead(w*1000+i), []string{"amo"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	after, _ := s.Commits()
	if after-before >= n {
		t.Fatalf("%d adds from 64 goroutines took %d commits: no batching", n, after-before)
	}
	t.Logf("%d adds from 64 goroutines: %d commits (%.1f leads per fsync)", n, after-before, float64(n)/float64(after-before))
}

func TestAddSetsIDAndKeepsCallerID(t *testing.T) {
	s := openStore(t, "", nil)
	l := testLead(1)
	got := mustAdd(t, s, l, "amo", "amo", "bitrix")
	if l.ID == "" || l.CreatedAt.IsZero() || got.ID != l.ID {
		t.Fatalf("id/created_at not set: %+v", l)
	}
	if len(got.Deliveries) != 2 || got.Deliveries[0].Status != lead.StatusPending || got.Deliveries[0].NextAt == nil {
		t.Fatalf("deliveries = %+v, want two pending (duplicate dest dropped)", got.Deliveries)
	}
	mine := testLead(2)
	mine.ID = "my-own-id"
	if got := mustAdd(t, s, mine); got.ID != "my-own-id" || got.Status() != lead.StatusSkipped {
		t.Fatalf("caller id not kept or no-destination lead not skipped: %+v", got)
	}
	again := testLead(3)
	again.ID = "my-own-id"
	if _, _, err := s.Add(context.Background(), again, nil); err == nil {
		t.Fatal("a second lead with an existing id was accepted")
	}
	for _, bad := range []string{"", "a\x00b"} {
		if _, _, err := s.Add(context.Background(), testLead(4), []string{bad}); err == nil {
			t.Errorf("destination %q accepted", bad)
		}
	}
}

func TestDedupSameSubmission(t *testing.T) {
	s := openStore(t, "", nil)
	first := &lead.Lead{Site: "example.com", Form: "Заявка", SubmissionID: "sub-1", Phone: "+79991234567",
		Fields: map[string]string{"Phone": "+7 999 123-45-67"}}
	a := mustAdd(t, s, first, "amo")
	// The script's report of the same submission, seen a moment later.
	second := &lead.Lead{Site: "example.com", Form: "Заявка", SubmissionID: "sub-1", Name: "Иван", Email: "i@example.com",
		Fields: map[string]string{"Name": "Иван", "Phone": "other"}, Visit: &lead.Visit{ID: "v1", UTM: map[string]string{"source": "ya"}}}
	b, dup, err := s.Add(context.Background(), second, []string{"amo", "bitrix"})
	if err != nil {
		t.Fatal(err)
	}
	if !dup || b.ID != a.ID {
		t.Fatalf("dup=%v id=%s, want the first lead %s", dup, b.ID, a.ID)
	}
	if b.Name != "Иван" || b.Email != "i@example.com" || b.Phone != "+79991234567" {
		t.Fatalf("main fields not merged: %+v", b)
	}
	if b.Fields["Phone"] != "+7 999 123-45-67" || b.Fields["Name"] != "Иван" || b.Visit == nil || b.Visit.UTM["source"] != "ya" {
		t.Fatalf("maps not united (first report wins conflicts): %+v %+v", b.Fields, b.Visit)
	}
	if len(b.Deliveries) != 1 {
		t.Fatalf("merge created deliveries: %+v", b.Deliveries)
	}
	// Another site with the same submission id is another lead.
	other := &lead.Lead{Site: "other.com", SubmissionID: "sub-1", Phone: "+79990000000"}
	if _, dup, _ := s.Add(context.Background(), other, []string{"amo"}); dup {
		t.Fatal("submission ids are per site")
	}
	if got, _, _ := s.List(Filter{}); len(got) != 2 {
		t.Fatalf("List has %d leads, want 2", len(got))
	}
}

func TestDedupSameContactInWindow(t *testing.T) {
	s := openStore(t, "", func(o *Options) { o.DedupWindow = time.Hour })
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	first := mustAdd(t, s, &lead.Lead{Site: "example.com", Form: "Заявка", Name: "Анна", Phone: "+79991234567", Comment: "перезвоните", CreatedAt: t0}, "amo")

	// Same phone written differently, same form, same data, 10 minutes
	// later: a double submit, kept and not sent.
	again := &lead.Lead{Site: "example.com", Form: "Заявка", Phone: "8 (999) 123-45-67", Comment: "перезвоните ", CreatedAt: t0.Add(10 * time.Minute)}
	got, dup, err := s.Add(context.Background(), again, []string{"amo"})
	if err != nil {
		t.Fatal(err)
	}
	if !dup || got.ID == first.ID || got.DuplicateOf != first.ID || got.Dedup != lead.DedupDuplicate || len(got.Deliveries) != 0 {
		t.Fatalf("dup=%v lead=%+v, want a new lead duplicate of %s with no deliveries", dup, got, first.ID)
	}
	// The same contact with other data is its own lead, sent, linked to
	// the first; the first is untouched.
	for i, other := range []*lead.Lead{
		{Comment: "после 18:00"}, {Name: "Борис"}, {Email: "b@example.com"}, {Extra: map[string]string{"Город": "Омск"}},
	} {
		other.Site, other.Form, other.Phone, other.CreatedAt = "example.com", "Заявка", "+79991234567", t0.Add(time.Duration(20+i)*time.Minute)
		got, dup, err := s.Add(context.Background(), other, []string{"amo"})
		if err != nil {
			t.Fatal(err)
		}
		if dup || got.DuplicateOf != "" || got.SameContactAs != first.ID || got.Dedup != lead.DedupSameContact || len(got.Deliveries) != 1 {
			t.Fatalf("%+v: dup=%v lead=%+v, want its own lead, sent, linked to %s", other, dup, got, first.ID)
		}
	}
	// That other lead submitted twice is a duplicate of itself, not sent again.
	boris, _, _ := s.List(Filter{})
	var borisID string
	for _, l := range boris {
		if l.Name == "Борис" {
			borisID = l.ID
		}
	}
	twice, dup, err := s.Add(context.Background(), &lead.Lead{Site: "example.com", Form: "Заявка", Name: "Борис", Phone: "+79991234567", CreatedAt: t0.Add(30 * time.Minute)}, []string{"amo"})
	if err != nil || !dup || twice.DuplicateOf != borisID || len(twice.Deliveries) != 0 {
		t.Fatalf("Борис again: dup=%v err=%v lead=%+v, want a duplicate of %s", dup, err, twice, borisID)
	}
	if f, _ := s.Get(first.ID); f.Comment != "перезвоните" || f.Name != "Анна" || f.Dedup != "" {
		t.Fatalf("first lead changed: %+v", f)
	}

	cases := []struct {
		name string
		l    *lead.Lead
	}{
		{"other form", &lead.Lead{Site: "example.com", Form: "Обратный звонок", Phone: "+79991234567", CreatedAt: t0.Add(time.Minute)}},
		{"other site", &lead.Lead{Site: "other.com", Form: "Заявка", Phone: "+79991234567", CreatedAt: t0.Add(time.Minute)}},
		{"after the window", &lead.Lead{Site: "example.com", Form: "Заявка", Phone: "+79991234567", CreatedAt: t0.Add(61 * time.Minute)}},
		{"other phone", &lead.Lead{Site: "example.com", Form: "Заявка", Phone: "+79997654321", CreatedAt: t0.Add(time.Minute)}},
	}
	for _, c := range cases {
		got, dup, err := s.Add(context.Background(), c.l, []string{"amo"})
		if err != nil || dup || len(got.Deliveries) != 1 {
			t.Errorf("%s: dup=%v err=%v, want a new lead with a delivery", c.name, dup, err)
		}
	}
	// Email contacts compare case-insensitively.
	mustAdd(t, s, &lead.Lead{Site: "example.com", Form: "Почта", Email: "Ivan@Example.com", CreatedAt: t0}, "amo")
	if _, dup, _ := s.Add(context.Background(), &lead.Lead{Site: "example.com", Form: "Почта", Email: "ivan@example.com", CreatedAt: t0.Add(time.Minute)}, []string{"amo"}); !dup {
		t.Fatal("same email in another case not deduplicated")
	}
}

func TestListPagingAndFilters(t *testing.T) {
	s := openStore(t, "", nil)
	var ids []string
	for i := range 25 {
		l := testLead(i)
		if i%5 == 0 {
			l.Form = "Звонок"
		}
		if i == 7 {
			l.Comment = "Нужна СКИДКА"
		}
		ids = append(ids, mustAdd(t, s, l, "amo").ID)
	}
	mustAdd(t, s, &lead.Lead{Site: "example.com", Form: "Звонок", Phone: "+70000000000"}) // no destination: skipped

	// Fail one lead permanently and deliver the rest, so statuses differ.
	failID := ids[3]
	f := newFake(func(n int, l *lead.Lead) (string, error) {
		if l.ID == failID {
			return "", lead.Permanent(422, "bad phone")
		}
		return "crm-" + l.ID, nil
	})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}})
	waitFor(t, "all deliveries done", func() bool {
		st, _ := s.Stats()
		return st.QueueDepth == 0
	})

	var all []string
	cursor := ""
	pages := 0
	for {
		page, next, err := s.List(Filter{Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, l := range page {
			all = append(all, l.ID)
			if l.Form != "Звонок" || l.Phone != "+70000000000" {
				if len(l.Deliveries) != 1 {
					t.Fatalf("lead %s listed without its delivery", l.ID)
				}
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 26 || pages != 3 {
		t.Fatalf("paged %d leads in %d pages, want 26 in 3", len(all), pages)
	}
	for i := 1; i < len(all); i++ {
		a, _ := s.Get(all[i-1])
		b, _ := s.Get(all[i])
		if a.CreatedAt.Before(b.CreatedAt) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	if all[1] != ids[24] || all[len(all)-1] != ids[0] {
		t.Fatalf("order wrong: first %s last %s", all[1], all[len(all)-1])
	}

	count := func(f Filter) int {
		f.Limit = MaxListLimit
		got, next, err := s.List(f)
		if err != nil || next != "" {
			t.Fatalf("%+v: %v next=%q", f, err, next)
		}
		return len(got)
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{
		{Filter{Form: "Звонок"}, 6},
		{Filter{Query: "скидка"}, 1},
		{Filter{Query: "ivan1"}, 11}, // ivan1, ivan10..ivan19 (emails)
		{Filter{Query: "+7999000000"}, 10},
		{Filter{Status: lead.StatusFailed}, 1},
		{Filter{Status: lead.StatusDelivered}, 24},
		{Filter{Status: lead.StatusSkipped}, 1},
		{Filter{Status: lead.StatusDelivered, Form: "Звонок"}, 5},
		{Filter{Status: lead.StatusPending}, 0},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("List(%+v) = %d leads, want %d", c.f, got, c.want)
		}
	}
	// Status-filtered paging walks the same order.
	p1, next, _ := s.List(Filter{Status: lead.StatusDelivered, Limit: 20})
	p2, last, _ := s.List(Filter{Status: lead.StatusDelivered, Limit: 20, Cursor: next})
	if len(p1) != 20 || len(p2) != 4 || last != "" || p2[0].CreatedAt.After(p1[19].CreatedAt) {
		t.Fatalf("status paging: %d + %d (next %q)", len(p1), len(p2), last)
	}
	if _, _, err := s.List(Filter{Cursor: "zz"}); err == nil {
		t.Fatal("bad cursor accepted")
	}
}

// rawEntries returns every key and value of every bucket, for tests that
// check what is on record.
func rawEntries(t testing.TB, s *Store) map[string][][2][]byte {
	t.Helper()
	out := map[string][][2][]byte{}
	err := s.view(func(tx *nutsdb.Tx) error {
		for _, b := range allBuckets {
			keys, vals, err := tx.GetAll(b)
			if err != nil && !errors.Is(err, nutsdb.ErrBucketEmpty) && !isNotFound(err) {
				return err
			}
			for i := range keys {
				out[b] = append(out[b], [2][]byte{keys[i], vals[i]})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mentions counts the entries, in any bucket, whose key or value holds one
// of the needles.
func mentions(t testing.TB, s *Store, needles ...string) map[string]int {
	found := map[string]int{}
	for b, kvs := range rawEntries(t, s) {
		for _, kv := range kvs {
			for _, n := range needles {
				if bytes.Contains(kv[0], []byte(n)) || bytes.Contains(kv[1], []byte(n)) {
					found[b]++
					break
				}
			}
		}
	}
	return found
}

func TestDeleteErasesEverything(t *testing.T) {
	s := openStore(t, "", nil)
	l := &lead.Lead{Site: "example.com", Form: "Заявка", SubmissionID: "sub-9", Name: "Пётр Секретов",
		Phone: "+79995550011", Email: "petr@example.com", Comment: "уникальный-комментарий"}
	first := mustAdd(t, s, l, "amo", "bitrix", "gone")
	dupl := mustAdd(t, s, &lead.Lead{Site: "example.com", Form: "Заявка", Phone: "+79995550011"}, "amo")
	keep := mustAdd(t, s, testLead(1), "amo")
	if dupl.DuplicateOf != first.ID {
		t.Fatal("setup: second lead not a duplicate")
	}

	// amo is delivered, bitrix is in flight (its sender holds it), gone has
	// no sender: every kind of entry exists when Delete runs.
	hold := make(chan struct{})
	bitrix := newFake(func(int, *lead.Lead) (string, error) { <-hold; return "b-1", nil })
	e := startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": newFake(nil), "bitrix": bitrix}})
	waitFor(t, "amo delivered, bitrix in flight, gone parked", func() bool {
		g, _ := s.Get(first.ID)
		return g.Delivery("amo").Status == lead.StatusDelivered && bitrix.count(first.ID) == 1 &&
			g.Delivery("gone").LastError == errNotConfigured
	})
	before := mentions(t, s, first.ID)
	for _, b := range []string{bLead, bTime, bDelivery, bState, bDue, bLease, bDedup} {
		if before[b] == 0 {
			t.Fatalf("setup: nothing in %s names the lead (%v)", b, before)
		}
	}

	if err := s.Delete(first.ID); err != nil {
		t.Fatal(err)
	}
	close(hold) // the attempt in flight finishes after the erase
	waitFor(t, "attempt finished", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.inflight) == 0
	})
	if _, err := s.Get(first.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if left := mentions(t, s, first.ID, "Секретов", "+79995550011", "уникальный-комментарий", "petr@"); len(left) != 0 {
		// The duplicate keeps its own copy of the phone: it is another lead.
		if !(len(left) == 1 && left[bLead] == 1) {
			t.Fatalf("after Delete the store still mentions the lead: %v", left)
		}
	}
	if err := s.Delete(dupl.ID); err != nil {
		t.Fatal(err)
	}
	if left := mentions(t, s, first.ID, dupl.ID, "+79995550011"); len(left) != 0 {
		t.Fatalf("after deleting both the store still mentions them: %v", left)
	}
	if _, err := s.Get(keep.ID); err != nil {
		t.Fatal("Delete touched another lead:", err)
	}
	if err := s.Delete(first.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	// A new lead with the erased submission id and phone is not a duplicate.
	if _, dup, _ := s.Add(context.Background(), &lead.Lead{Site: "example.com", Form: "Заявка", SubmissionID: "sub-9", Phone: "+79995550011"}, nil); dup {
		t.Fatal("dedup keys survived Delete")
	}
}

func TestStats(t *testing.T) {
	s := openStore(t, "", nil)
	a := mustAdd(t, s, testLead(1), "amo", "bitrix")
	mustAdd(t, s, testLead(2), "amo")
	mustAdd(t, s, testLead(3)) // skipped
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Leads != 3 || st.QueueDepth != 3 || st.ByStatus[lead.StatusPending] != 2 || st.ByStatus[lead.StatusSkipped] != 1 ||
		st.ByDestination["amo"][lead.StatusPending] != 2 || st.ByDestination["bitrix"][lead.StatusPending] != 1 {
		t.Fatalf("stats before delivery: %+v", st)
	}
	if st.OldestPendingSeconds < 0 {
		t.Fatalf("oldest pending %v", st.OldestPendingSeconds)
	}
	f := newFake(func(n int, l *lead.Lead) (string, error) {
		if l.ID == a.ID {
			return "", lead.Permanent(400, "no")
		}
		return "ok", nil
	})
	startEngine(t, s, EngineConfig{Senders: map[string]lead.Sender{"amo": f}})
	waitFor(t, "amo done", func() bool { st, _ := s.Stats(); return st.QueueDepth == 1 })
	st, _ = s.Stats()
	if st.ByStatus[lead.StatusFailed] != 1 || st.ByStatus[lead.StatusDelivered] != 1 ||
		st.ByDestination["amo"][lead.StatusFailed] != 1 || st.ByDestination["amo"][lead.StatusDelivered] != 1 ||
		st.ByDestination["bitrix"][lead.StatusPending] != 1 {
		t.Fatalf("stats after: %+v", st)
	}
}

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	if v, err := s.LoadToken("salesforce/main"); v != "" || err != nil {
		t.Fatalf("absent token: %q %v", v, err)
	}
	for _, v := range []string{"r1", "r2"} {
		if err := s.SaveToken("salesforce/main", v); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openStore(t, dir, nil)
	if v, _ := s.LoadToken("salesforce/main"); v != "r2" {
		t.Fatalf("token after reopen = %q", v)
	}
	_ = s.SaveToken("salesforce/main", "")
	if v, _ := s.LoadToken("salesforce/main"); v != "" {
		t.Fatalf("cleared token = %q", v)
	}
}

// A panic inside a transaction must not leave nutsdb's lock held.
func TestPanicInTransactionDoesNotWedge(t *testing.T) {
	s := openStore(t, "", nil)
	err := s.write(context.Background(), func(*nutsdb.Tx) error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic not reported: %v", err)
	}
	err = s.view(func(*nutsdb.Tx) error { panic("boom again") })
	if err == nil {
		t.Fatal("panic in view not reported")
	}
	done := make(chan error, 1)
	go func() { _, _, err := s.Add(context.Background(), testLead(1), nil); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("store wedged after a panic in a transaction")
	}
}

// One operation that fails must not fail the others committed with it.
func TestFailedOperationDoesNotFailItsBatch(t *testing.T) {
	s := openStore(t, "", nil)
	release := hold(t, s)
	results := make(chan error, 3)
	go func() {
		results <- s.write(context.Background(), func(*nutsdb.Tx) error { return errors.New("bad op") })
	}()
	for i := range 2 {
		go func() { _, _, err := s.Add(context.Background(), testLead(i), nil); results <- err }()
	}
	waitFor(t, "three queued", func() bool { return len(s.ops) == 3 })
	close(release)
	bad := 0
	for range 3 {
		if err := <-results; err != nil {
			if err.Error() != "bad op" {
				t.Fatal(err)
			}
			bad++
		}
	}
	if bad != 1 {
		t.Fatalf("%d operations failed, want only the bad one", bad)
	}
	if got, _, _ := s.List(Filter{}); len(got) != 2 {
		t.Fatalf("%d leads stored, want 2", len(got))
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, nil)
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of a locked folder: %v", err)
	}
	for i := range 20 {
		mustAdd(t, s, testLead(i), "amo")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Flip bytes inside the first data file, past the first entries'
	// headers: a checksum mismatch, as after a torn write.
	files, _ := filepath.Glob(filepath.Join(dir, "*.dat"))
	if len(files) == 0 {
		t.Fatal("no data file")
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte("Иван 7"))
	if i < 0 {
		t.Fatal("lead not found in the data file")
	}
	copy(raw[i:], "XXXX")
	if err := os.WriteFile(files[0], raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "move the folder aside") {
		t.Fatalf("Open of a damaged store: %v", err)
	}
	if _, statErr := os.Stat(files[0]); statErr != nil {
		t.Fatal("the damaged data file was removed:", statErr)
	}
	t.Log(err)
}

func ExampleStore_List() {
	dir, _ := os.MkdirTemp("", "leads")
	defer os.RemoveAll(dir)
	s, _ := Open(Options{Dir: dir})
	defer s.Close()
	for i := range 3 {
		_, _, _ = s.Add(context.Background(), &lead.Lead{Form: "Заявка", Phone: fmt.Sprintf("+7999000000%d", i)}, nil)
	}
	page, next, _ := s.List(Filter{Limit: 2})
	fmt.Println(len(page), page[0].Phone, next != "")
	page, next, _ = s.List(Filter{Limit: 2, Cursor: next})
	fmt.Println(len(page), page[0].Phone, next != "")
	// Output:
	// 2 +79990000002 true
	// 1 +79990000000 false
}
