package visit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nutsdb/nutsdb"
	"go.uber.org/zap"
)

// Store keeps visits. DB is the nutsdb store of a single node; the
// PostgreSQL cluster mode is to add another behind the same interface, so
// the recorder, the lead join and the report do not change.
type Store interface {
	// Put stores visits (one batch, one commit).
	Put(vs []*Visit) error
	// Get returns a stored visit, or ErrNotFound.
	Get(id string) (*Visit, error)
	// Each calls fn for the visits made in [from, to), oldest first,
	// until fn returns false.
	Each(from, to time.Time, fn func(*Visit) bool) error
}

// ErrNotFound is returned for a visit the store does not hold.
var ErrNotFound = errors.New("visit not found")

// Defaults of DBOptions.
const (
	DefaultRetention = 90 * 24 * time.Hour
	DefaultMax       = 1_000_000
)

// DBOptions configures DB.
type DBOptions struct {
	Dir       string        // nutsdb folder (created, 0700)
	Retention time.Duration // visits older are deleted; default 90 days
	Max       int           // most visits kept; the oldest go first; default 1,000,000
	Logger    *zap.Logger
}

// DB is the nutsdb visit store.
//
// Layout: bucket "visit", key be64(id) (ids sort by time, cookie.go),
// value the Visit's JSON. Commits are not fsynced: a crash may lose the
// last batch of visits (never a lead, which lives in the lead store).
// A sweep (every minute, and after a batch that overflows Max) deletes
// what is past Retention or over Max, and merges the files once enough
// was deleted, so the folder stays bounded.
type DB struct {
	db    *nutsdb.DB
	opts  DBOptions
	count atomic.Int64 // keys held
	mu    sync.Mutex   // one sweep at a time
	freed int          // deleted since the last merge
	stop  chan struct{}
	done  chan struct{}
}

const bVisit = "visit"

// OpenDB opens (or creates) the visit store. A folder nutsdb cannot read
// (nutsdb panics on some torn tails a full disk leaves) is an error, never
// a crash: the caller goes on without visits.
func OpenDB(opts DBOptions) (d *DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			d, err = nil, fmt.Errorf("visit store %s: unreadable: %v", opts.Dir, p)
		}
	}()
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("visit store: %w", err)
	}
	db, err := nutsdb.Open(nutsdb.DefaultOptions,
		nutsdb.WithDir(opts.Dir),
		nutsdb.WithSegmentSize(8<<20),
		nutsdb.WithSyncEnable(false),
		nutsdb.WithRWMode(nutsdb.FileIO),
		nutsdb.WithEntryIdxMode(nutsdb.HintKeyAndRAMIdxMode),
		nutsdb.WithMaxFdNumsInCache(16),
		func(o *nutsdb.Options) { o.MergeInterval = 0 },
	)
	if err != nil {
		return nil, fmt.Errorf("visit store %s: %w", opts.Dir, err)
	}
	d = &DB{db: db, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	err = db.Update(func(tx *nutsdb.Tx) error {
		if err := tx.NewKVBucket(bVisit); err != nil && !errors.Is(err, nutsdb.ErrBucketAlreadyExist) {
			return err
		}
		return nil
	})
	if err == nil {
		err = db.View(func(tx *nutsdb.Tx) error {
			keys, err := tx.GetKeys(bVisit)
			if err != nil && !notFound(err) {
				return err
			}
			d.count.Store(int64(len(keys)))
			return nil
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("visit store %s: %w", opts.Dir, err)
	}
	go d.maintain()
	return d, nil
}

func notFound(err error) bool {
	return errors.Is(err, nutsdb.ErrKeyNotFound) || errors.Is(err, nutsdb.ErrNotFoundKey) ||
		errors.Is(err, nutsdb.ErrBucketNotFound) || errors.Is(err, nutsdb.ErrBucketEmpty)
}

func key(id string) ([]byte, bool) {
	n, _, ok := idTime(id)
	if !ok {
		return nil, false
	}
	return binary.BigEndian.AppendUint64(nil, n), true
}

func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(max(t.UnixMilli(), 0))<<seqBits)
}

// Put stores a batch in one commit.
func (d *DB) Put(vs []*Visit) error {
	added := 0
	err := d.db.Update(func(tx *nutsdb.Tx) error {
		added = 0
		for _, v := range vs {
			k, ok := key(v.ID)
			if !ok {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if _, err := tx.Get(bVisit, k); notFound(err) {
				added++
			}
			if err := tx.Put(bVisit, k, b, nutsdb.Persistent); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("visit store: %w", err)
	}
	if d.count.Add(int64(added)) > int64(d.opts.Max) {
		d.Sweep(time.Now())
	}
	return nil
}

// Get returns a visit by id.
func (d *DB) Get(id string) (*Visit, error) {
	k, ok := key(id)
	if !ok {
		return nil, ErrNotFound
	}
	var v Visit
	err := d.db.View(func(tx *nutsdb.Tx) error {
		b, err := tx.Get(bVisit, k)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &v)
	})
	if notFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("visit store: %w", err)
	}
	return &v, nil
}

// Each walks the visits of [from, to) oldest first.
func (d *DB) Each(from, to time.Time, fn func(*Visit) bool) error {
	lo, hi := timeKey(from), timeKey(to)
	err := d.db.View(func(tx *nutsdb.Tx) error {
		it := nutsdb.NewIterator(tx, bVisit, nutsdb.IteratorOptions{})
		if it == nil {
			return nil
		}
		defer it.Release()
		for ok := it.Seek(lo); ok; ok = it.Next() {
			if string(it.Key()) >= string(hi) {
				return nil
			}
			b, err := it.Value()
			if err != nil {
				return err
			}
			var v Visit
			if json.Unmarshal(b, &v) != nil {
				continue
			}
			if !fn(&v) {
				return nil
			}
		}
		return nil
	})
	if notFound(err) {
		return nil
	}
	return err
}

// Count is how many visits the store holds.
func (d *DB) Count() int { return int(d.count.Load()) }

// sweepBatch bounds the deletes of one commit.
const sweepBatch = 2000

// Sweep deletes visits past retention (at now) and the oldest over Max,
// and merges the files once many were deleted. It returns how many went.
func (d *DB) Sweep(now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	cutoff := timeKey(now.Add(-d.opts.Retention))
	total := 0
	for {
		over := int(d.count.Load()) - d.opts.Max
		var keys [][]byte
		err := d.db.View(func(tx *nutsdb.Tx) error {
			it := nutsdb.NewIterator(tx, bVisit, nutsdb.IteratorOptions{})
			if it == nil {
				return nil
			}
			defer it.Release()
			for ok := it.Valid(); ok && len(keys) < sweepBatch; ok = it.Next() {
				if string(it.Key()) >= string(cutoff) && len(keys) >= over {
					break
				}
				keys = append(keys, append([]byte(nil), it.Key()...))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			break
		}
		err = d.db.Update(func(tx *nutsdb.Tx) error {
			for _, k := range keys {
				if err := tx.Delete(bVisit, k); err != nil && !notFound(err) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			d.opts.Logger.Warn("visit sweep failed", zap.Error(err))
			break
		}
		d.count.Add(-int64(len(keys)))
		total += len(keys)
		if len(keys) < sweepBatch {
			break
		}
	}
	if d.freed += total; d.freed >= 50_000 || d.freed > 0 && d.freed >= int(d.count.Load()) {
		if err := d.db.Merge(); err != nil && !errors.Is(err, nutsdb.ErrDontNeedMerge) {
			d.opts.Logger.Warn("visit store merge failed", zap.Error(err))
		} else {
			d.freed = 0
		}
	}
	return total
}

func (d *DB) maintain() {
	defer close(d.done)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			d.Sweep(now)
		}
	}
}

// Close stops the sweeps and closes the database.
func (d *DB) Close() error {
	close(d.stop)
	<-d.done
	return d.db.Close()
}
