package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nutsdb/nutsdb"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
)

// Delete erases a lead: its record, deliveries, schedule and lease entries
// and the dedup keys that name it. An attempt in flight finds its lease
// gone and records nothing. (nutsdb is append-only: the bytes leave the
// disk at the next merge.)
func (s *Store) Delete(id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	return s.write(context.Background(), func(tx *nutsdb.Tx) error {
		_, err := eraseLead(tx, id, false)
		return err
	})
}

// eraseLead deletes lead id and everything keyed by it. With onlyFinal it
// leaves a lead alone unless every delivery is delivered, failed or
// dry_run (held: retention ends a trial as it ends a delivered lead), and
// reports whether it erased.
func eraseLead(tx *nutsdb.Tx, id string, onlyFinal bool) (bool, error) {
	var rec leadRec
	found, err := getJSON(tx, bLead, []byte(id), &rec)
	if err != nil {
		return false, err
	}
	if !found || rec.Lead == nil {
		return false, ErrNotFound
	}
	recs := make([]*deliveryRec, len(rec.Dests))
	for i, d := range rec.Dests {
		var dr deliveryRec
		found, err := getJSON(tx, bDelivery, deliveryKey(id, d), &dr)
		if err != nil {
			return false, err
		}
		if found {
			if onlyFinal && !dr.final() && dr.Status != lead.StatusDryRun {
				return false, nil
			}
			recs[i] = &dr
		}
	}
	for i, d := range rec.Dests {
		if recs[i] != nil {
			if err := putDelivery(tx, id, d, recs[i], nil); err != nil {
				return false, err
			}
		}
	}
	keyed := dedupView(rec.Lead, rec.DryRun)
	for _, k := range [][]byte{SubmissionKey(keyed), ContactKey(keyed), DataKey(keyed)} {
		if k == nil {
			continue
		}
		v, err := tx.Get(bDedup, k)
		if err == nil && string(v) == id {
			err = del(tx, bDedup, k)
		}
		if err != nil && !isNotFound(err) {
			return false, err
		}
	}
	if err := del(tx, bTime, timeKey(rec.At, id)); err != nil {
		return false, err
	}
	return true, del(tx, bLead, []byte(id))
}

// Retry makes every delivery of the lead that is not delivered (or held
// by dry_run) due now, failed ones included, and restarts their retry_for. A delivery in flight
// is left to its attempt, with retry_for restarted.
func (s *Store) Retry(id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	err := s.write(context.Background(), func(tx *nutsdb.Tx) error {
		now := time.Now().UnixMilli()
		return updateDeliveries(tx, id, func(dr *deliveryRec) bool {
			if dr.Status == lead.StatusDelivered || dr.Status == lead.StatusDryRun {
				return false // a dry_run delivery is sent by SendDryRun only
			}
			dr.Since = now
			if dr.Lease == "" {
				dr.Due = now
			}
			if dr.Status == lead.StatusFailed {
				dr.Status = lead.StatusRetrying
			}
			return true
		})
	})
	if err == nil {
		s.notify()
	}
	return err
}

// updateDeliveries runs fn on each delivery of lead id and writes those
// it changed (fn reports true).
func updateDeliveries(tx *nutsdb.Tx, id string, fn func(dr *deliveryRec) bool) error {
	var rec leadRec
	found, err := getJSON(tx, bLead, []byte(id), &rec)
	if err != nil {
		return err
	}
	if !found {
		return ErrNotFound
	}
	for _, d := range rec.Dests {
		var dr deliveryRec
		found, err := getJSON(tx, bDelivery, deliveryKey(id, d), &dr)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		old := dr
		if !fn(&dr) {
			continue
		}
		if err := putDelivery(tx, id, d, &old, &dr); err != nil {
			return err
		}
	}
	return nil
}

// maintain purges and merges in the background, until Close.
func (s *Store) maintain() {
	defer close(s.maintDone)
	every := min(max(s.opts.Retention/4, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.maintStop:
			return
		case <-t.C:
			if err := s.Compact(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Error("lead store maintenance failed", zap.Error(err))
			}
		}
	}
}

// purgeBatch bounds one purge transaction.
const purgeBatch = 256

// Compact erases delivered, failed and dry-run leads older than Retention, then
// merges the data files when most of what is on disk is garbage,
// so the folder stays bounded. It runs in the background every minute (or
// Retention/4 when shorter); tests and tools may call it directly.
func (s *Store) Compact() error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	cutoff := be64(time.Now().Add(-s.opts.Retention).UnixMilli())
	var from []byte
	purged := 0
	for {
		var keys [][]byte
		if err := s.view(func(tx *nutsdb.Tx) error {
			keys = scanKeys(tx, bTime, from, cutoff, purgeBatch)
			return nil
		}); err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		n := 0
		err := s.write(context.Background(), func(tx *nutsdb.Tx) error {
			n = 0
			for _, k := range keys {
				_, id, _ := parseTimeKey(k)
				ok, err := eraseLead(tx, id, true)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if ok {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		purged += n
		from = append(bytes.Clone(keys[len(keys)-1]), 0)
	}
	if purged > 0 {
		s.log.Info("purged leads past retention", zap.Int("count", purged))
	}
	return s.mergeIfWorth()
}

// entryOverhead approximates nutsdb's per-entry header on disk.
const entryOverhead = 40

func (s *Store) mergeIfWorth() error {
	files, disk := s.dataFiles()
	if files < 2 {
		return nil
	}
	live := int64(0)
	err := s.view(func(tx *nutsdb.Tx) error {
		for _, b := range allBuckets {
			it := nutsdb.NewIterator(tx, b, nutsdb.IteratorOptions{})
			if it == nil {
				continue
			}
			for ok := it.Valid(); ok; ok = it.Next() {
				live += int64(len(it.Key())+entryOverhead) + int64(it.Item().Record.ValueSize)
			}
			it.Release()
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Legacy merge rewrites every live entry in its own fsynced transaction:
	// run it only when at least three quarters of the files are garbage, so
	// each rewritten byte frees three and the folder stays under about four
	// times the live data (plus two segments: the active one, the output).
	if disk < 4*live+2*s.opts.SegmentSize {
		return nil
	}
	start := time.Now()
	err = s.merge()
	s.private.apply() // merged data and hint files
	if err != nil && !errors.Is(err, nutsdb.ErrDontNeedMerge) {
		return err
	}
	filesAfter, diskAfter := s.dataFiles()
	s.log.Info("merged lead store files",
		zap.Int("files_before", files), zap.Int64("bytes_before", disk),
		zap.Int("files_after", filesAfter), zap.Int64("bytes_after", diskAfter),
		zap.Int64("live_bytes", live), zap.Duration("took", time.Since(start)))
	return nil
}

// merge runs nutsdb's merge unless the store is closed: a merge asked of a
// closed database waits forever. Close waits for a merge in progress.
func (s *Store) merge() error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Merge()
}

// dataFiles counts the data files and the bytes they occupy on disk
// (allocated blocks: segments are sparse files of SegmentSize).
func (s *Store) dataFiles() (files int, bytes int64) {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".dat") {
			continue
		}
		files++
		bytes += diskSize(filepath.Join(s.opts.Dir, e.Name()))
	}
	return files, bytes
}

// DiskUsage is the space the store's data files take on disk, for the
// capture budget (max_store).
func (s *Store) DiskUsage() int64 {
	_, n := s.dataFiles()
	return n
}
