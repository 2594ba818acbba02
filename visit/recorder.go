package visit

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Recorder bounds.
const (
	// MaxPending is how many first page views wait for their cookie to
	// come back; past it new visits are not recorded (counted as dropped).
	MaxPending = 20_000
	// PendingFor is how long a first page view waits: a client that has
	// not sent the cookie back by then does not keep cookies (a bot).
	PendingFor = 30 * time.Minute
	// QueueLen bounds the visits waiting for the writer; a full queue
	// drops the visit rather than hold the page.
	QueueLen = 4096
	// BatchN and BatchEvery: the writer commits every BatchN visits or
	// BatchEvery, whichever comes first.
	BatchN     = 256
	BatchEvery = time.Second
)

// Recorder records visits off the page path. A first page view without a
// visit cookie is held in memory (Seen) until a later request of the same
// visitor carries the cookie back (Confirm): a client that keeps no
// cookies is a bot and is never written. Confirmed visits go through a
// bounded channel to one goroutine that writes them in batches.
type Recorder struct {
	store Store
	log   *zap.Logger

	mu        sync.RWMutex
	lastSweep time.Time // of pending by Seen, at most once a second
	pending   map[string]*Visit
	npend     atomic.Int64 // len(pending), read without the lock
	// queued are confirmed visits not yet written (at most QueueLen +
	// BatchN), so a lead finds its visit in the second before the commit.
	queued map[string]*Visit

	queue chan *Visit
	flush chan chan struct{}
	stop  chan struct{}
	done  chan struct{}

	// Counters, for metrics and tests.
	Recorded, Dropped, Expired atomic.Uint64
}

// NewRecorder starts a recorder writing into store.
func NewRecorder(store Store, log *zap.Logger) *Recorder {
	if log == nil {
		log = zap.NewNop()
	}
	rec := &Recorder{store: store, log: log, pending: map[string]*Visit{}, queued: map[string]*Visit{},
		queue: make(chan *Visit, QueueLen), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	go rec.writer()
	return rec
}

// Seen holds a new visit until its cookie comes back.
func (rec *Recorder) Seen(v *Visit) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.pending) >= MaxPending {
		// Full: sweep, but not for every view of a flood of cookieless
		// clients (a sweep walks the whole map under the lock).
		if now := time.Now(); now.Sub(rec.lastSweep) > time.Second {
			rec.lastSweep = now
			rec.expireLocked(now)
		}
		if len(rec.pending) >= MaxPending {
			rec.Dropped.Add(1)
			return
		}
	}
	rec.pending[v.ID] = v
	rec.npend.Store(int64(len(rec.pending)))
}

// Confirm is called for every request that carries a visit cookie: the
// first one after Seen queues the visit for writing; any other costs one
// map lookup and writes nothing.
func (rec *Recorder) Confirm(id string) *Visit {
	if rec.npend.Load() == 0 {
		return nil
	}
	rec.mu.RLock()
	v := rec.pending[id]
	rec.mu.RUnlock()
	if v == nil {
		return nil
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	v = rec.pending[id]
	if v == nil {
		return nil // confirmed by a request a moment ago
	}
	delete(rec.pending, id)
	rec.npend.Store(int64(len(rec.pending)))
	select {
	case rec.queue <- v:
		rec.queued[id] = v
		rec.Recorded.Add(1)
	default:
		rec.Dropped.Add(1)
	}
	return v
}

// Lookup finds a visit for a lead: confirming it if it still waits (a
// visitor who posts a form keeps cookies), else from the store.
func (rec *Recorder) Lookup(id string) *Visit {
	if !ValidID(id) {
		return nil
	}
	if v := rec.Confirm(id); v != nil {
		return v
	}
	rec.mu.RLock()
	v := rec.queued[id]
	rec.mu.RUnlock()
	if v != nil {
		return v
	}
	v, err := rec.store.Get(id)
	if err != nil {
		return nil
	}
	return v
}

// Flush waits until every queued visit is written (tests, the report).
func (rec *Recorder) Flush() {
	ch := make(chan struct{})
	select {
	case rec.flush <- ch:
		<-ch
	case <-rec.done:
	}
}

// Close writes what is queued and stops the writer.
func (rec *Recorder) Close() {
	close(rec.stop)
	<-rec.done
}

func (rec *Recorder) expireLocked(now time.Time) {
	for id, v := range rec.pending {
		if now.Sub(v.At) > PendingFor {
			delete(rec.pending, id)
			rec.Expired.Add(1)
		}
	}
	rec.npend.Store(int64(len(rec.pending)))
}

func (rec *Recorder) writer() {
	defer close(rec.done)
	batch := make([]*Visit, 0, BatchN)
	tick := time.NewTicker(BatchEvery)
	defer tick.Stop()
	expire := time.NewTicker(time.Minute)
	defer expire.Stop()
	write := func() {
		if len(batch) == 0 {
			return
		}
		if err := rec.store.Put(batch); err != nil {
			rec.log.Warn("visits not stored", zap.Int("visits", len(batch)), zap.Error(err))
		}
		rec.mu.Lock()
		for _, v := range batch {
			delete(rec.queued, v.ID)
		}
		rec.mu.Unlock()
		clear(batch) // drop the references
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case v := <-rec.queue:
				if batch = append(batch, v); len(batch) == BatchN {
					write()
				}
			default:
				write()
				return
			}
		}
	}
	for {
		select {
		case v := <-rec.queue:
			if batch = append(batch, v); len(batch) == BatchN {
				write()
			}
		case <-tick.C:
			write()
		case now := <-expire.C:
			rec.mu.Lock()
			rec.expireLocked(now)
			rec.mu.Unlock()
		case ch := <-rec.flush:
			drain()
			close(ch)
		case <-rec.stop:
			drain()
			return
		}
	}
}
