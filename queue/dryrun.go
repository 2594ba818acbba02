package queue

import (
	"context"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

// The dry run: a lead captured under a site's or form's dry_run is stored
// like any other, but its deliveries are held in status dry_run (no due
// key: the engine never sees them), each with a preview of what it would
// send. SendDryRun releases them to the engine; retention purges a lead
// whose deliveries are all still held, as it purges delivered ones.
//
// A dry-run lead's dedup keys are computed on its site prefixed with
// dryRunSite, so a trial post never makes a later real lead of the same
// contact a duplicate that is not sent.

const dryRunSite = "\x00dry_run\x00"

// dedupView is l as its dedup keys see it: the site prefixed for a dry run.
func dedupView(l *lead.Lead, dry bool) *lead.Lead {
	if !dry {
		return l
	}
	cp := *l
	cp.Site = dryRunSite + l.Site
	return &cp
}

// AddDryRun stores l as Add does (durably, with dedup among dry-run leads),
// with one delivery per name in dests held in status dry_run.
func (s *Store) AddDryRun(ctx context.Context, l *lead.Lead, dests []string) (stored *lead.Lead, dup bool, err error) {
	return s.add(ctx, l, dests, true)
}

// SetPreview records what the lead's dry_run delivery to dest would send,
// and errMsg (empty: none) as its last error. A delivery that is no longer
// held is left alone (SendDryRun ran meanwhile).
func (s *Store) SetPreview(ctx context.Context, id, dest string, preview []lead.Request, errMsg string) error {
	if !validID(id) {
		return ErrNotFound
	}
	return s.write(ctx, func(tx *nutsdb.Tx) error {
		var dr deliveryRec
		found, err := getJSON(tx, bDelivery, deliveryKey(id, dest), &dr)
		if err != nil || !found {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		if dr.Status != lead.StatusDryRun {
			return nil
		}
		old := dr
		dr.Preview, dr.LastError = preview, truncate(errMsg, maxErrorLen)
		return putDelivery(tx, id, dest, &old, &dr)
	})
}

// SendDryRun releases every dry_run delivery of the lead to the engine:
// pending, due now, retry_for starting now. It returns how many it
// released.
func (s *Store) SendDryRun(id string) (int, error) {
	if !validID(id) {
		return 0, ErrNotFound
	}
	n := 0
	err := s.write(context.Background(), func(tx *nutsdb.Tx) error {
		n = 0
		now := time.Now().UnixMilli()
		return updateDeliveries(tx, id, func(dr *deliveryRec) bool {
			if dr.Status != lead.StatusDryRun {
				return false
			}
			dr.Status, dr.Due, dr.Since, dr.LastError = lead.StatusPending, now, now, ""
			n++
			return true
		})
	})
	if err == nil && n > 0 {
		s.notify()
	}
	return n, err
}
