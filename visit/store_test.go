package visit

import (
	"fmt"
	"testing"
	"time"
)

func openTestDB(t *testing.T, opts DBOptions) *DB {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	d, err := OpenDB(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDBPutGetEach(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDB(DBOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	var ids []string
	var batch []*Visit
	for i := range 10 {
		at := base.Add(time.Duration(i) * time.Minute)
		v := &Visit{ID: NewID(at), At: at, Source: Sources[i%len(Sources)], UTM: map[string]string{"source": fmt.Sprint(i)}}
		ids = append(ids, v.ID)
		batch = append(batch, v)
	}
	batch = append(batch, &Visit{ID: "123456"}) // not ours: skipped
	if err := d.Put(batch); err != nil {
		t.Fatal(err)
	}
	if d.Count() != 10 {
		t.Errorf("count %d", d.Count())
	}
	v, err := d.Get(ids[3])
	if err != nil || v.UTM["source"] != "3" {
		t.Fatalf("get: %+v %v", v, err)
	}
	if _, err := d.Get("123456"); err != ErrNotFound {
		t.Errorf("foreign id: %v", err)
	}
	var got []string
	d.Each(base.Add(2*time.Minute), base.Add(5*time.Minute), func(v *Visit) bool { got = append(got, v.UTM["source"]); return true })
	if fmt.Sprint(got) != "[2 3 4]" {
		t.Errorf("each [2m,5m) = %v", got)
	}
	// Reopened, the visits and their count are there.
	d.Close()
	d2, err := OpenDB(DBOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Count() != 10 {
		t.Errorf("count after reopen %d", d2.Count())
	}
	if v, err := d2.Get(ids[9]); err != nil || v.UTM["source"] != "9" {
		t.Errorf("after reopen: %+v %v", v, err)
	}
}

func TestDBSweepRetentionAndMax(t *testing.T) {
	d := openTestDB(t, DBOptions{Retention: 24 * time.Hour, Max: 5})
	now := time.Now()
	var batch []*Visit
	for i := range 4 { // three of them past retention
		at := now.Add(-time.Duration(48-i*10) * time.Hour)
		batch = append(batch, &Visit{ID: NewID(at), At: at})
	}
	if err := d.Put(batch); err != nil {
		t.Fatal(err)
	}
	if n := d.Sweep(now); n != 3 || d.Count() != 1 {
		t.Errorf("retention sweep removed %d, %d left", n, d.Count())
	}
	batch = nil
	for i := range 6 {
		at := now.Add(time.Duration(i) * time.Second)
		batch = append(batch, &Visit{ID: NewID(at), At: at, Site: fmt.Sprint(i)})
	}
	if err := d.Put(batch); err != nil { // 7 > Max: the oldest go at once
		t.Fatal(err)
	}
	if d.Count() != 5 {
		t.Errorf("over max: %d kept", d.Count())
	}
	var sites []string
	d.Each(time.Time{}, now.Add(time.Hour), func(v *Visit) bool { sites = append(sites, v.Site); return true })
	if fmt.Sprint(sites) != "[1 2 3 4 5]" {
		t.Errorf("kept %v, want the newest five", sites)
	}
}

// countingStore is a Store that counts writes, for the recorder's tests.
type countingStore struct {
	*DB
	puts, visits int
}

func (c *countingStore) Put(vs []*Visit) error {
	c.puts++
	c.visits += len(vs)
	return c.DB.Put(vs)
}

func TestRecorderConfirmsOnce(t *testing.T) {
	cs := &countingStore{DB: openTestDB(t, DBOptions{})}
	rec := NewRecorder(cs, nil)
	defer rec.Close()
	now := time.Now()
	first := &Visit{ID: NewID(now), At: now, Source: SourceAds}
	bot := &Visit{ID: NewID(now), At: now}
	rec.Seen(first)
	rec.Seen(bot) // never comes back
	for range 5 {
		rec.Confirm(first.ID) // the cookie on later requests
	}
	if v := rec.Lookup(first.ID); v == nil || v.ID != first.ID {
		t.Errorf("lookup of a visit queued, not yet written: %+v", v)
	}
	rec.Flush()
	if cs.visits != 1 || rec.Recorded.Load() != 1 {
		t.Fatalf("wrote %d visits in %d puts, recorded %d; want the one confirmed", cs.visits, cs.puts, rec.Recorded.Load())
	}
	if v := rec.Lookup(first.ID); v == nil || v.Source != SourceAds {
		t.Errorf("lookup after write: %+v", v)
	}
	if _, err := cs.Get(bot.ID); err != ErrNotFound {
		t.Errorf("the cookieless visit was written: %v", err)
	}
	// A lead from a visit still waiting confirms it.
	third := &Visit{ID: NewID(now), At: now}
	rec.Seen(third)
	if v := rec.Lookup(third.ID); v == nil || v.ID != third.ID {
		t.Errorf("lookup of a pending visit: %+v", v)
	}
	rec.Flush()
	if cs.visits != 2 {
		t.Errorf("visits written %d, want 2", cs.visits)
	}
	// Past PendingFor, an unconfirmed visit is gone.
	rec.mu.Lock()
	rec.expireLocked(now.Add(PendingFor + time.Second))
	rec.mu.Unlock()
	if rec.Confirm(bot.ID) != nil || rec.Expired.Load() != 1 {
		t.Errorf("expired visit confirmed, or not counted (%d)", rec.Expired.Load())
	}
}

func TestRecorderBatches(t *testing.T) {
	cs := &countingStore{DB: openTestDB(t, DBOptions{})}
	rec := NewRecorder(cs, nil)
	now := time.Now()
	n := 3*BatchN + 10
	for i := range n {
		at := now.Add(time.Duration(i) * time.Millisecond)
		v := &Visit{ID: NewID(at), At: at}
		rec.Seen(v)
		rec.Confirm(v.ID)
	}
	rec.Close() // writes what is queued
	if cs.visits != n {
		t.Errorf("%d of %d visits written", cs.visits, n)
	}
	if cs.puts > n/BatchN+2 || cs.puts < 2 {
		t.Errorf("%d commits for %d visits: not batched by %d", cs.puts, n, BatchN)
	}
}

func TestRecorderPendingBound(t *testing.T) {
	rec := NewRecorder(openTestDB(t, DBOptions{}), nil)
	defer rec.Close()
	now := time.Now()
	for i := range MaxPending + 10 {
		at := now.Add(time.Duration(i) * time.Microsecond)
		rec.Seen(&Visit{ID: NewID(at), At: at})
	}
	if got := rec.npend.Load(); got != MaxPending || rec.Dropped.Load() != 10 {
		t.Errorf("%d waiting, %d dropped; want %d and 10", got, rec.Dropped.Load(), MaxPending)
	}
}
