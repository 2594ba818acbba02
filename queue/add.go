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
//     DedupWindow earlier, and nothing the first lacks (name, phone,
//     email, comment, extra and CRM values all empty or equal to the
//     first's): l is stored with DuplicateOf set and no deliveries, and
//     returned with dup=true;
//   - the same contact with other data: l is stored and delivered as its
//     own lead with SameContactAs naming the first, never dropped (a
//     forged lead with a visitor's phone must not swallow the real one).
//
// Lead.Dedup records which of these happened (the first lead of a merge
// gets DedupMerged).
//
// If ctx ends before the commit, Add returns ctx.Err() and the lead may or
// may not be stored.
func (s *Store) Add(ctx context.Context, l *lead.Lead, dests []string) (stored *lead.Lead, dup bool, err error) {
	return s.add(ctx, l, dests, false)
}

func (s *Store) add(ctx context.Context, l *lead.Lead, dests []string, dry bool) (stored *lead.Lead, dup bool, err error) {
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
		stored, dup, err = s.addTx(tx, &cp, dests, now.UnixMilli(), dry)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if !dup && len(dests) > 0 && !dry {
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

func (s *Store) addTx(tx *nutsdb.Tx, l *lead.Lead, dests []string, now int64, dry bool) (*lead.Lead, bool, error) {
	keyed := dedupView(l, dry) // what the dedup keys are computed from
	sk := SubmissionKey(keyed)
	if sk != nil {
		first, err := leadByRef(tx, sk)
		if err != nil {
			return nil, false, err
		}
		if first != nil {
			MergeLead(first.Lead, l)
			first.Lead.Dedup = lead.DedupMerged
			if err := putJSON(tx, bLead, []byte(first.Lead.ID), first); err != nil {
				return nil, false, err
			}
			if err := claimContactKey(tx, dedupView(first.Lead, dry)); err != nil {
				return nil, false, err
			}
			out, err := loadLead(tx, first.Lead.ID)
			return out, true, err
		}
	}
	rec := &leadRec{Lead: l, At: now, Dests: dests, DryRun: dry}
	dup := false
	if ck := ContactKey(keyed); ck != nil {
		first, err := leadByRef(tx, ck)
		if err != nil {
			return nil, false, err
		}
		dk := DataKey(keyed)
		same, err := leadByRef(tx, dk)
		if err != nil {
			return nil, false, err
		}
		var claimContact bool
		dup, claimContact = DecideContact(l, recLead(first), recLead(same), s.opts.DedupWindow)
		if dup {
			rec.Dests = nil
		}
		if claimContact {
			err = tx.Put(bDedup, ck, []byte(l.ID), nutsdb.Persistent)
		}
		if err == nil && !dup {
			err = tx.Put(bDedup, dk, []byte(l.ID), nutsdb.Persistent)
		}
		if err != nil {
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
		if dry {
			dr = &deliveryRec{At: now, Status: lead.StatusDryRun} // held: no due key
		}
		if err := putDelivery(tx, l.ID, d, nil, dr); err != nil {
			return nil, false, err
		}
		out.Deliveries = append(out.Deliveries, dr.public(d))
	}
	return &out, dup, nil
}

func recLead(r *leadRec) *lead.Lead {
	if r == nil {
		return nil
	}
	return r.Lead
}

// DecideContact is Add's contact dedup, exported so the cluster engine
// decides exactly as one node does. first is the first lead of l's contact
// (ContactKey), same the lead holding l's DataKey; either may be nil. It
// marks l (DuplicateOf or SameContactAs, and Dedup) and says whether l is a
// duplicate (kept, not delivered) and whether l becomes the first lead of
// its contact. When l is not a duplicate its DataKey points at l.
func DecideContact(l, first, same *lead.Lead, window time.Duration) (dup, claimContact bool) {
	inWindow := func(f *lead.Lead) bool {
		return f != nil && f.ID != l.ID && l.CreatedAt.Sub(f.CreatedAt) < window
	}
	switch {
	case inWindow(same):
		first = same
		fallthrough
	case inWindow(first) && NothingNew(first, l):
		l.DuplicateOf, l.Dedup = first.ID, lead.DedupDuplicate
		return true, false
	case inWindow(first):
		l.SameContactAs, l.Dedup = first.ID, lead.DedupSameContact
		return false, false
	}
	return false, true
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
	ck := ContactKey(l)
	if ck == nil {
		return nil
	}
	if _, err := tx.Get(bDedup, ck); !isNotFound(err) {
		return err
	}
	return tx.Put(bDedup, ck, []byte(l.ID), nutsdb.Persistent)
}

// MergeLead folds a second report of the same submission into dst: empty
// main fields are filled, maps united (dst wins on conflicts: it was first).
// Exported for the cluster engine, which merges exactly as Add does.
func MergeLead(dst, src *lead.Lead) {
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

// NothingNew (exported for the cluster engine) tells whether later, of the same contact as first, carries
// nothing first lacks: every main field and extra or CRM value empty or
// equal. The raw form fields are not compared (a hidden timestamp differs
// on every submit); the values the rule reads from them are.
func NothingNew(first, later *lead.Lead) bool {
	same := func(a, b string) bool {
		return b == "" || strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	if !same(first.Name, later.Name) || !same(strings.ToLower(first.Email), strings.ToLower(later.Email)) ||
		!same(first.Comment, later.Comment) || !same(phoneKey(first.Phone), phoneKey(later.Phone)) {
		return false
	}
	for _, m := range [][2]map[string]string{{first.Extra, later.Extra}, {first.CRM, later.CRM}} {
		for k, v := range m[1] {
			if !same(m[0][k], v) {
				return false
			}
		}
	}
	return true
}

// phoneKey is a phone as ContactKey compares it.
func phoneKey(p string) string {
	if p = strings.TrimSpace(p); p == "" || isE164(p) {
		return p
	}
	return lead.NormalizePhone(p, "")
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
