package queue

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nutsdb/nutsdb"

	"github.com/leadproxy/leadproxy/lead"
)

// Add stores l durably (fsynced before it returns) with one pending delivery
// per name in dests (none: the lead is stored with no delivery, which reads
// as "skipped"). It sets l.ID (lead.NewID) and l.CreatedAt when empty.
// Concurrent Adds share one commit (see Store.write). Dedup:
//   - same Site+SubmissionID as a stored lead: l is merged into that lead
//     (empty main fields filled, Fields/Extra/CRM/Visit united), which is
//     returned with dup=true and no new deliveries;
//   - same (Site, Form, normalised Contact()) as a lead created less than
//     DedupWindow earlier: l is stored with DuplicateOf set and no
//     deliveries, its comment is appended to the first lead's, and l is
//     returned with dup=true.
//
// If ctx ends before the commit, Add returns ctx.Err() and the lead may or
// may not be stored.
func (s *Store) Add(ctx context.Context, l *lead.Lead, dests []string) (stored *lead.Lead, dup bool, err error) {
	if l == nil {
		return nil, false, fmt.Errorf("queue: nil lead")
	}
	dests, err = uniqueDests(dests)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	if l.ID == "" {
		l.ID = lead.NewID(now)
	} else if !validID(l.ID) {
		return nil, false, fmt.Errorf("queue: lead id %q: want 1 to %d bytes without NUL", l.ID, maxIDLen)
	}
	if l.CreatedAt.IsZero() {
		l.CreatedAt = now.UTC()
	}
	in := *l
	in.Deliveries = nil
	err = s.write(ctx, func(tx *nutsdb.Tx) error {
		// A fresh copy per run: the committer re-runs an operation alone
		// when its batch failed, and addTx marks duplicates on its lead.
		cp := in
		var err error
		stored, dup, err = s.addTx(tx, &cp, dests, now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if !dup && len(dests) > 0 {
		s.notify()
	}
	return stored, dup, nil
}

func uniqueDests(dests []string) ([]string, error) {
	out := make([]string, 0, len(dests))
	seen := map[string]bool{}
	for _, d := range dests {
		if err := validDest(d); err != nil {
			return nil, err
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, nil
}

func (s *Store) addTx(tx *nutsdb.Tx, l *lead.Lead, dests []string, now int64) (*lead.Lead, bool, error) {
	sk := submissionKey(l)
	if sk != nil {
		first, err := leadByRef(tx, sk)
		if err != nil {
			return nil, false, err
		}
		if first != nil {
			mergeLead(first.Lead, l)
			if err := putJSON(tx, bLead, []byte(first.Lead.ID), first); err != nil {
				return nil, false, err
			}
			if err := claimContactKey(tx, first.Lead); err != nil {
				return nil, false, err
			}
			out, err := loadLead(tx, first.Lead.ID)
			return out, true, err
		}
	}
	rec := &leadRec{Lead: l, At: now, Dests: dests}
	dup := false
	if ck := contactKey(l); ck != nil {
		first, err := leadByRef(tx, ck)
		if err != nil {
			return nil, false, err
		}
		if first != nil && first.Lead.ID != l.ID && l.CreatedAt.Sub(first.Lead.CreatedAt) < s.opts.DedupWindow {
			dup = true
			l.DuplicateOf = first.Lead.ID
			rec.Dests = nil
			if c := strings.TrimSpace(l.Comment); c != "" && !strings.Contains(first.Lead.Comment, c) {
				if first.Lead.Comment != "" {
					first.Lead.Comment += "\n"
				}
				first.Lead.Comment += c
				if err := putJSON(tx, bLead, []byte(first.Lead.ID), first); err != nil {
					return nil, false, err
				}
			}
		} else if err := tx.Put(bDedup, ck, []byte(l.ID), nutsdb.Persistent); err != nil {
			return nil, false, err
		}
	}
	if sk != nil {
		if err := tx.Put(bDedup, sk, []byte(l.ID), nutsdb.Persistent); err != nil {
			return nil, false, err
		}
	}
	if _, err := tx.Get(bLead, []byte(l.ID)); !isNotFound(err) {
		if err == nil {
			err = fmt.Errorf("queue: lead %s already exists", l.ID)
		}
		return nil, false, err
	}
	if err := putJSON(tx, bLead, []byte(l.ID), rec); err != nil {
		return nil, false, err
	}
	if err := tx.Put(bTime, timeKey(now, l.ID), nil, nutsdb.Persistent); err != nil {
		return nil, false, err
	}
	out := *l
	out.Deliveries = nil
	for _, d := range rec.Dests {
		dr := &deliveryRec{At: now, Status: lead.StatusPending, Due: now, Since: now}
		if err := putDelivery(tx, l.ID, d, nil, dr); err != nil {
			return nil, false, err
		}
		out.Deliveries = append(out.Deliveries, dr.public(d))
	}
	return &out, dup, nil
}

// leadByRef follows a dedup key to its lead; nil when either is gone.
func leadByRef(tx *nutsdb.Tx, key []byte) (*leadRec, error) {
	id, err := tx.Get(bDedup, key)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec leadRec
	found, err := getJSON(tx, bLead, id, &rec)
	if !found || err != nil {
		return nil, err
	}
	return &rec, nil
}

// claimContactKey makes l the first lead of its contact when no lead is:
// a merge may give a lead the phone its first report lacked.
func claimContactKey(tx *nutsdb.Tx, l *lead.Lead) error {
	ck := contactKey(l)
	if ck == nil {
		return nil
	}
	if _, err := tx.Get(bDedup, ck); !isNotFound(err) {
		return err
	}
	return tx.Put(bDedup, ck, []byte(l.ID), nutsdb.Persistent)
}

// mergeLead folds a second report of the same submission into dst: empty
// main fields are filled, maps united (dst wins on conflicts: it was first).
func mergeLead(dst, src *lead.Lead) {
	fill := func(d *string, v string) {
		if *d == "" {
			*d = v
		}
	}
	fill(&dst.Title, src.Title)
	fill(&dst.Form, src.Form)
	fill(&dst.Mechanism, src.Mechanism)
	fill(&dst.Name, src.Name)
	fill(&dst.Phone, src.Phone)
	fill(&dst.Email, src.Email)
	fill(&dst.Comment, src.Comment)
	fill(&dst.Traceparent, src.Traceparent)
	dst.Fields = unite(dst.Fields, src.Fields)
	dst.Extra = unite(dst.Extra, src.Extra)
	dst.CRM = unite(dst.CRM, src.CRM)
	if src.Visit != nil {
		if dst.Visit == nil {
			dst.Visit = &lead.Visit{}
		}
		v, w := dst.Visit, src.Visit
		fill(&v.ID, w.ID)
		fill(&v.Page, w.Page)
		fill(&v.Landing, w.Landing)
		fill(&v.Referrer, w.Referrer)
		fill(&v.IP, w.IP)
		fill(&v.UserAgent, w.UserAgent)
		v.UTM = unite(v.UTM, w.UTM)
	}
	if dst.Callback == nil {
		dst.Callback = src.Callback
	}
}

func unite(dst, src map[string]string) map[string]string {
	for k, v := range src {
		if dst == nil {
			dst = map[string]string{}
		}
		if _, ok := dst[k]; !ok || dst[k] == "" {
			dst[k] = v
		}
	}
	return dst
}

// loadLead reads a lead with its deliveries (pending writes included).
func loadLead(tx *nutsdb.Tx, id string) (*lead.Lead, error) {
	var rec leadRec
	found, err := getJSON(tx, bLead, []byte(id), &rec)
	if err != nil {
		return nil, err
	}
	if !found || rec.Lead == nil {
		return nil, ErrNotFound
	}
	l := rec.Lead
	l.Deliveries = nil
	for _, d := range rec.Dests {
		var dr deliveryRec
		found, err := getJSON(tx, bDelivery, deliveryKey(id, d), &dr)
		if err != nil {
			return nil, err
		}
		if found {
			l.Deliveries = append(l.Deliveries, dr.public(d))
		}
	}
	return l, nil
}
