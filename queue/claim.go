package queue

import (
	"context"

	"github.com/nutsdb/nutsdb"
)

// register adds or removes an engine to wake when a lead is added.
func (s *Store) register(e *Engine, on bool) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	if on {
		s.notifiers[e] = struct{}{}
	} else {
		delete(s.notifiers, e)
	}
}

func (s *Store) notify() {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	for e := range s.notifiers {
		e.Notify()
	}
}

// plan is what one dispatch will do, read from the keys (a read
// transaction, no disk reads); claim re-checks every entry when it writes.
type plan struct {
	claim  [][]byte // due keys to lease
	park   [][]byte // due keys of destinations without a sender
	unpark [][]byte // parked keys of destinations that have one again
	reap   [][]byte // expired lease keys
	// nextDue and nextLease are the first due time and lease expiry after
	// now that the scans reached (0: none seen).
	nextDue, nextLease int64
	again              bool // a cap was hit: dispatch again at once
}

func (p *plan) empty() bool {
	return len(p.claim)+len(p.park)+len(p.unpark)+len(p.reap) == 0
}

func (p *plan) changed() bool { return len(p.unpark)+len(p.reap) > 0 }

// plan reads, for each destination, the front of its schedule: up to
// want[dest] deliveries due at now, the next due time after them, parked
// deliveries to unpark, and due deliveries of destinations without a
// sender to park; then expired leases. Keys only: no disk reads.
func (s *Store) plan(now int64, want map[string]int, configured map[string]bool, unpark bool) (*plan, error) {
	p := &plan{}
	capped := func(list *[][]byte, k []byte) bool {
		if len(*list) == planCap {
			p.again = true
			return false
		}
		*list = append(*list, clone(k))
		return true
	}
	err := s.view(func(tx *nutsdb.Tx) error {
		it := nutsdb.NewIterator(tx, bDue, nutsdb.IteratorOptions{})
		if it != nil {
			// Visit each destination's queue: seek its front, take what is
			// due, then seek past its last key to the next destination.
			for ok := it.Rewind(); ok; {
				dest, _, _, valid := parseDueKey(it.Key())
				if !valid {
					ok = it.Next()
					continue
				}
				at := func() (int64, bool) {
					d, ms, _, valid := parseDueKey(it.Key())
					return ms, valid && d == dest
				}
				switch {
				case configured[dest] && want[dest] > 0:
					for ms, same := at(); ok && same; ms, same = at() {
						if ms > now || want[dest] == 0 {
							if ms > now && ms != parkedMs && (p.nextDue == 0 || ms < p.nextDue) {
								p.nextDue = ms
							}
							break
						}
						p.claim = append(p.claim, clone(it.Key()))
						want[dest]--
						ok = it.Next()
					}
				case !configured[dest]:
					for ms, same := at(); ok && same && ms <= now; ms, same = at() {
						if !capped(&p.park, it.Key()) {
							break
						}
						ok = it.Next()
					}
				}
				if configured[dest] && unpark {
					ok = it.Seek(dueKey(dest, parkedMs, ""))
					for _, same := at(); ok && same; _, same = at() {
						if !capped(&p.unpark, it.Key()) {
							break
						}
						ok = it.Next()
					}
				}
				ok = it.Seek([]byte(dest + "\x01"))
			}
			it.Release()
		}
		eachKey(tx, bLease, nil, false, func(k []byte) bool {
			ms, _, _, ok := parseTimedKey(k)
			if ok && ms > now {
				p.nextLease = ms
				return false
			}
			return capped(&p.reap, k)
		})
		return nil
	})
	return p, err
}

func clone(k []byte) []byte { return append([]byte(nil), k...) }

// claim carries out a plan in one write: reaps expired leases, parks and
// unparks, and leases the planned deliveries that are still due as planned
// (another engine, a Delete or a Retry may have moved them since).
func (s *Store) claim(p *plan, now, until int64, newToken func() string) ([]*claim, error) {
	var claims []*claim
	err := s.write(context.Background(), func(tx *nutsdb.Tx) error {
		claims = claims[:0]
		for _, k := range p.reap {
			_, dest, id, _ := parseTimedKey(k)
			token, err := tx.Get(bLease, k)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			released, err := releaseLease(tx, id, dest, string(token), now)
			if err == nil && !released {
				err = del(tx, bLease, k) // an orphan: no delivery holds this lease
			}
			if err != nil {
				return err
			}
		}
		park := func(r *deliveryRec) { r.Due, r.LastError = parkedMs, errNotConfigured }
		unpark := func(r *deliveryRec) {
			r.Due = now
			if r.LastError == errNotConfigured {
				r.LastError = ""
			}
		}
		for _, k := range p.park {
			if _, _, err := editDue(tx, k, park); err != nil {
				return err
			}
		}
		for _, k := range p.unpark {
			if _, _, err := editDue(tx, k, unpark); err != nil {
				return err
			}
		}
		for _, k := range p.claim {
			token := newToken()
			rec, ok, err := editDue(tx, k, func(r *deliveryRec) { r.Lease, r.LeaseUntil, r.Due = token, until, 0 })
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			dest, _, id, _ := parseDueKey(k)
			var lr leadRec
			found, err := getJSON(tx, bLead, []byte(id), &lr)
			if err != nil {
				return err
			}
			if !found || lr.Lead == nil {
				// Delete erases a lead and its deliveries together; a delivery
				// left alone cannot be sent, so it goes too.
				if err := putDelivery(tx, id, dest, rec, nil); err != nil {
					return err
				}
				continue
			}
			lr.Lead.Deliveries = nil
			claims = append(claims, &claim{id: id, dest: dest, token: token, lead: lr.Lead})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// editDue applies change to the waiting delivery a due key names and
// returns its new state. A key that is gone was moved since the plan (ok is
// false); a key whose delivery does not point back at it is an orphan and
// is deleted, so no later plan returns to it.
func editDue(tx *nutsdb.Tx, k []byte, change func(*deliveryRec)) (rec *deliveryRec, ok bool, err error) {
	dest, ms, id, valid := parseDueKey(k)
	if _, err := tx.Get(bDue, k); err != nil {
		if isNotFound(err) {
			err = nil
		}
		return nil, false, err
	}
	var r deliveryRec
	found, err := getJSON(tx, bDelivery, deliveryKey(id, dest), &r)
	if err != nil {
		return nil, false, err
	}
	if !valid || !found || r.Due != ms || r.Lease != "" || r.final() {
		return nil, false, del(tx, bDue, k)
	}
	old := r
	change(&r)
	return &r, true, putDelivery(tx, id, dest, &old, &r)
}

// moveDelivery reads a delivery, lets change edit it, and writes it back
// when change reports a change. A missing delivery is left alone.
func moveDelivery(tx *nutsdb.Tx, id, dest string, change func(*deliveryRec) bool) error {
	var rec deliveryRec
	found, err := getJSON(tx, bDelivery, deliveryKey(id, dest), &rec)
	if err != nil || !found {
		return err
	}
	old := rec
	if !change(&rec) {
		return nil
	}
	return putDelivery(tx, id, dest, &old, &rec)
}
