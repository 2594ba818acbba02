package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nutsdb/nutsdb"
	"go.uber.org/zap"
)

// Options configures a Store.
type Options struct {
	Dir         string        // nutsdb folder (created if missing)
	SegmentSize int64         // default 16 MiB
	DedupWindow time.Duration // default 1h
	Retention   time.Duration // delivered/failed leads kept this long; default 30 days
	Logger      *zap.Logger   // may be nil (zap.NewNop)
}

// Defaults of Options.
const (
	DefaultSegmentSize = 16 << 20
	DefaultDedupWindow = time.Hour
	DefaultRetention   = 30 * 24 * time.Hour
)

var (
	// ErrNotFound is returned for an unknown lead id.
	ErrNotFound = errors.New("lead not found")
	// ErrClosed is returned by a Store after Close.
	ErrClosed = errors.New("queue: store closed")
	// ErrBadCursor is returned by List for a cursor it did not give.
	ErrBadCursor = errors.New("queue: bad cursor")
)

// maxBatch bounds how many queued operations share one commit, which keeps
// a transaction well under nutsdb's commit buffer and segment size.
const maxBatch = 256

// Store is the durable lead store. It is safe for concurrent use.
type Store struct {
	db      *nutsdb.DB
	opts    Options
	log     *zap.Logger
	private private // files made 0600 (private.go)

	// closeMu makes Close wait for every submit in progress, so no
	// operation is sent on ops after it is closed.
	closeMu sync.RWMutex
	closed  bool
	ops     chan *op
	writerD chan struct{}

	maintStop chan struct{}
	maintDone chan struct{}
	compactMu sync.Mutex // one purge+merge at a time

	commits atomic.Uint64 // db.Update calls of the committer
	opsDone atomic.Uint64 // operations committed

	notifyMu  sync.Mutex
	notifiers map[*Engine]struct{}
}

// op is one unit of work for the committer. apply runs inside the shared
// transaction and must not do I/O other than through tx; it reports its
// own outcome through its closure and returns an error only to abort.
type op struct {
	apply func(tx *nutsdb.Tx) error
	done  chan error
}

// Open opens (or creates) the store in opts.Dir and returns every lease a
// crash left behind to the schedule.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: no storage folder")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("queue: storage folder %q: %w", opts.Dir, err)
	}
	opts.Dir = dir
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	// Leads are personal data: a new folder is the owner's alone (nutsdb
	// would make it 0777 less the umask, its files 0644).
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: storage folder: %w", err)
	}
	if err := repairTails(dir, opts.Logger); err != nil {
		return nil, openError(dir, err)
	}
	db, err := nutsdb.Open(nutsdb.DefaultOptions,
		nutsdb.WithDir(dir),
		nutsdb.WithSegmentSize(opts.SegmentSize),
		nutsdb.WithSyncEnable(syncCommits),
		nutsdb.WithRWMode(nutsdb.FileIO),
		nutsdb.WithEntryIdxMode(nutsdb.HintKeyAndRAMIdxMode),
		// Merged files are removed while their descriptors stay cached
		// (nutsdb#488): a small cache (unused ones closed from 4 on) frees
		// the space sooner. 32 stays far above the descriptors in use at once.
		nutsdb.WithMaxFdNumsInCache(32),
		nutsdb.WithCleanFdsCacheThreshold(0.125),
		func(o *nutsdb.Options) { o.MergeInterval = 0 }, // we merge when there is garbage (compact)
	)
	if err != nil {
		return nil, openError(dir, err)
	}
	s := &Store{
		db:        db,
		opts:      opts,
		log:       opts.Logger,
		ops:       make(chan *op, 4*maxBatch),
		writerD:   make(chan struct{}),
		maintStop: make(chan struct{}),
		maintDone: make(chan struct{}),
		notifiers: map[*Engine]struct{}{},
	}
	if err := s.update(s.prepare); err != nil {
		_ = db.Close()
		return nil, openError(dir, err)
	}
	s.private.dir = dir
	s.private.apply()
	go s.writer()
	go s.maintain()
	return s, nil
}

func openError(dir string, err error) error {
	if errors.Is(err, nutsdb.ErrDirLocked) {
		return fmt.Errorf("queue: lead store %s is in use by another process (a second caddy? use 'caddy reload'): %w", dir, err)
	}
	return fmt.Errorf("queue: cannot open the lead store %s: %w. The folder may be damaged: "+
		"stop Caddy, move the folder aside (do not delete it: it may hold undelivered leads) "+
		"and start again; an empty store is created in its place", dir, err)
}

// prepare creates the buckets, checks the schema and returns leases left
// by a crash to due: no attempt survives a restart.
func (s *Store) prepare(tx *nutsdb.Tx) error {
	for _, b := range allBuckets {
		if err := tx.NewKVBucket(b); err != nil && !errors.Is(err, nutsdb.ErrBucketAlreadyExist) {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	v, err := tx.Get(bMeta, []byte("schema"))
	switch {
	case isNotFound(err):
		if err := tx.Put(bMeta, []byte("schema"), []byte(schemaVersion), nutsdb.Persistent); err != nil {
			return err
		}
	case err != nil:
		return err
	case string(v) != schemaVersion:
		return fmt.Errorf("schema %q, this build reads %q", v, schemaVersion)
	}
	keys := scanKeys(tx, bLease, nil, nil, 0)
	now := time.Now().UnixMilli()
	for _, k := range keys {
		if _, dest, id, ok := parseTimedKey(k); ok {
			if _, err := releaseLease(tx, id, dest, "", now); err != nil {
				return err
			}
		}
	}
	if len(keys) > 0 {
		s.log.Info("returned interrupted deliveries to the queue", zap.Int("count", len(keys)))
	}
	return nil
}

// releaseLease puts a leased delivery back to due at ms without counting an
// attempt. With token != "" only that lease is released. It reports whether
// the delivery was released.
func releaseLease(tx *nutsdb.Tx, id, dest, token string, ms int64) (released bool, err error) {
	err = moveDelivery(tx, id, dest, func(r *deliveryRec) bool {
		if r.Lease == "" || (token != "" && r.Lease != token) {
			return false
		}
		r.Lease, r.LeaseUntil, r.Due = "", 0, ms
		released = true
		return true
	})
	return released, err
}

// Close stops the committer (after it has run everything already queued)
// and the maintenance loop, and closes the database. Stop engines first.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.maintStop)
	s.closeMu.Unlock()
	<-s.maintDone
	s.closeMu.Lock()
	close(s.ops)
	s.closeMu.Unlock()
	<-s.writerD
	return s.db.Close()
}

// Commits returns how many transactions the committer ran (each one fsync),
// and how many operations (adds, claims, results, ...) they carried.
func (s *Store) Commits() (commits, ops uint64) {
	return s.commits.Load(), s.opsDone.Load()
}

// update runs fn in a write transaction, turning a panic into an error so
// nutsdb rolls back and releases its lock.
func (s *Store) update(fn func(tx *nutsdb.Tx) error) error {
	return s.db.Update(func(tx *nutsdb.Tx) (err error) {
		defer s.recoverTx(&err)
		return fn(tx)
	})
}

// view runs fn in a read transaction, with the same panic guard.
func (s *Store) view(fn func(tx *nutsdb.Tx) error) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(func(tx *nutsdb.Tx) (err error) {
		defer s.recoverTx(&err)
		return fn(tx)
	})
}

func (s *Store) recoverTx(err *error) {
	if p := recover(); p != nil {
		s.log.Error("panic inside a store transaction", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
		*err = fmt.Errorf("queue: panic in transaction: %v", p)
	}
}

// write queues apply for the committer and waits for its commit. If ctx
// ends first the operation may still be committed later.
func (s *Store) write(ctx context.Context, apply func(tx *nutsdb.Tx) error) error {
	o := &op{apply: apply, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	s.closeMu.RUnlock()
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the committer: it takes whatever operations are queued (up to
// maxBatch), runs them in one transaction, and answers each. Callers that
// queue while a commit is in progress share the next one: group commit.
func (s *Store) writer() {
	defer close(s.writerD)
	batch := make([]*op, 0, maxBatch)
	for o := range s.ops {
		batch = append(batch[:0], o)
	fill:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*op) {
	err := s.update(func(tx *nutsdb.Tx) error {
		for _, o := range batch {
			if err := o.apply(tx); err != nil {
				return err
			}
		}
		return nil
	})
	s.commits.Add(1)
	s.private.apply() // a commit may have started a data file
	if err == nil || len(batch) == 1 {
		if err == nil {
			s.opsDone.Add(uint64(len(batch)))
		}
		for _, o := range batch {
			o.done <- err
		}
		return
	}
	// One failed operation must not fail its neighbours: run each alone.
	for _, o := range batch {
		s.commit([]*op{o})
	}
}
