package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// Done says a node delivered a lead itself while the engine was down
// (fallback): Forward records the delivery as made, never to be sent again.
type Done struct {
	CRMID string
	At    time.Time
}

// Forward moves one locally captured lead into the engine for ONE
// destination, in one transaction: the lead and its fleet-wide dedup (the
// first time its id is seen: same submission id -> merged into the first
// lead as queue's single-node merge does; same form + contact + data
// inside DedupWindow -> kept as a duplicate, not delivered; same contact
// with other data -> its own lead with SameContactAs), and one delivery
// row for dest. Calling it again with the same (l.ID, dest) is harmless
// and returns the same answer; a lead erased since (Delete) is not stored
// again. done, when non-nil, records the delivery as made by this node
// (fallback) with that CRM id: it is never sent again (and when the lead
// was forwarded before, merged or a duplicate, the delivery it stands for
// is marked so if the fleet has not tried it yet). storedID is the
// engine's lead id (the first lead's on a merge); dup tells a merge or a
// duplicate, which get no delivery.
func (c *Cluster) Forward(ctx context.Context, l *lead.Lead, dest string, done *Done) (storedID string, dup bool, err error) {
	if l == nil || l.ID == "" {
		return "", false, errors.New("cluster: forward: a lead with an id is required")
	}
	if dest == "" {
		return "", false, errors.New("cluster: forward: no destination")
	}
	if l.CreatedAt.IsZero() {
		return "", false, fmt.Errorf("cluster: forward: lead %s has no created_at", l.ID)
	}
	err = c.call(ctx, "forward", func(ctx context.Context) error {
		return c.tx(ctx, func(tx pgx.Tx) error {
			var err error
			storedID, dup, err = c.forwardTx(ctx, tx, l, dest, done)
			return err
		})
	})
	if err != nil {
		return "", false, fmt.Errorf("cluster: forward: %w", err)
	}
	return storedID, dup, nil
}

// forwardKeys are the advisory locks one Forward takes: the lead id and
// its dedup keys, so two nodes forwarding the same lead or submission at
// once run one after the other and see each other's rows.
func (c *Cluster) forwardKeys(l *lead.Lead) []int64 {
	keys := []int64{c.lockKey("lead:" + l.ID)}
	for _, k := range [][]byte{queue.SubmissionKey(l), queue.ContactKey(l), queue.DataKey(l)} {
		if k != nil {
			keys = append(keys, dedupLock(k))
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

func dedupLock(k []byte) int64 {
	h := sha256.Sum256(append([]byte("leadproxy:dedup:"), k...))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

func (c *Cluster) forwardTx(ctx context.Context, tx pgx.Tx, in *lead.Lead, dest string, done *Done) (string, bool, error) {
	again := func() (string, bool, bool, error) {
		var stored string
		var dup bool
		err := tx.QueryRow(ctx, c.q("SELECT stored_id, dup FROM {s}.forwards WHERE lead_id = $1 AND dest = $2"), in.ID, dest).Scan(&stored, &dup)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", false, false, nil
		}
		return stored, dup, err == nil, err
	}
	// One statement, the keys in order (no two forwards wait on each
	// other in opposite orders).
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) k ORDER BY k) sorted", c.forwardKeys(in)); err != nil {
		return "", false, err
	}
	if stored, dup, ok, err := again(); ok || err != nil {
		// The same (lead, destination) again: the same answer. With done,
		// an earlier forward committed although its node never learnt it,
		// and the node delivered the lead itself since: a delivery the
		// fleet has not tried yet is recorded as that one.
		if ok && done != nil {
			err = c.doneOnFirst(ctx, tx, c.firstOf(ctx, tx, in, stored, dup), in, dest, done)
		}
		return stored, dup, err
	}
	remember := func(stored string, dup bool) (string, bool, error) {
		_, err := tx.Exec(ctx, c.q(`INSERT INTO {s}.forwards (lead_id, dest, stored_id, dup, node) VALUES ($1, $2, $3, $4, $5)`),
			in.ID, dest, stored, dup, c.cfg.Node)
		return stored, dup, err
	}
	var erased bool
	if err := tx.QueryRow(ctx, c.q("SELECT EXISTS (SELECT 1 FROM {s}.tombstones WHERE lead_id = $1)"), in.ID).Scan(&erased); err != nil {
		return "", false, err
	}
	if erased {
		return remember(in.ID, true)
	}
	// Another destination of this lead was forwarded: the dedup decision
	// is made; a lead kept as its own gets this destination too.
	var stored string
	var wasDup bool
	err := tx.QueryRow(ctx, c.q("SELECT stored_id, dup FROM {s}.forwards WHERE lead_id = $1 LIMIT 1"), in.ID).Scan(&stored, &wasDup)
	switch {
	case err == nil:
		if wasDup {
			if err := c.doneOnFirst(ctx, tx, c.firstOf(ctx, tx, in, stored, true), in, dest, done); err != nil {
				return "", false, err
			}
			return remember(stored, true)
		}
		if err := c.addDelivery(ctx, tx, stored, in.CreatedAt, dest, done); err != nil {
			return "", false, err
		}
		return remember(stored, false)
	case !errors.Is(err, pgx.ErrNoRows):
		return "", false, err
	}

	// The first time this lead is seen: queue.Store.addTx's dedup, on the
	// fleet's keys.
	l := *in
	l.Deliveries = nil
	sk := queue.SubmissionKey(&l)
	if sk != nil {
		first, err := c.leadByRef(ctx, tx, sk)
		if err != nil {
			return "", false, err
		}
		if first != nil {
			queue.MergeLead(first, &l)
			first.Dedup = lead.DedupMerged
			if err := c.putLead(ctx, tx, first, false); err != nil {
				return "", false, err
			}
			if ck := queue.ContactKey(first); ck != nil {
				// A merge may give the first lead the contact its first
				// report lacked.
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", dedupLock(ck)); err != nil {
					return "", false, err
				}
				if _, err := tx.Exec(ctx, c.q("INSERT INTO {s}.dedup (key, lead_id) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"), ck, first.ID); err != nil {
					return "", false, err
				}
			}
			if err := c.doneOnFirst(ctx, tx, first.ID, in, dest, done); err != nil {
				return "", false, err
			}
			return remember(first.ID, true)
		}
	}
	dup := false
	if ck := queue.ContactKey(&l); ck != nil {
		first, err := c.leadByRef(ctx, tx, ck)
		if err != nil {
			return "", false, err
		}
		dk := queue.DataKey(&l)
		same, err := c.leadByRef(ctx, tx, dk)
		if err != nil {
			return "", false, err
		}
		var claim bool
		dup, claim = queue.DecideContact(&l, first, same, c.cfg.DedupWindow)
		if claim {
			if err := c.setRef(ctx, tx, ck, l.ID); err != nil {
				return "", false, err
			}
		}
		if !dup {
			if err := c.setRef(ctx, tx, dk, l.ID); err != nil {
				return "", false, err
			}
		}
	}
	if sk != nil {
		if err := c.setRef(ctx, tx, sk, l.ID); err != nil {
			return "", false, err
		}
	}
	if err := c.putLead(ctx, tx, &l, true); err != nil {
		return "", false, err
	}
	if dup {
		if err := c.doneOnFirst(ctx, tx, l.DuplicateOf, in, dest, done); err != nil {
			return "", false, err
		}
	} else if err := c.addDelivery(ctx, tx, l.ID, l.CreatedAt, dest, done); err != nil {
		return "", false, err
	}
	return remember(l.ID, dup)
}

// firstOf is the lead whose delivery a forward of in stands for: the lead
// itself, the first lead it was merged into, or the first lead of a
// duplicate ("" when there is none, or it cannot be read: then no
// delivery is marked).
func (c *Cluster) firstOf(ctx context.Context, tx pgx.Tx, in *lead.Lead, stored string, dup bool) string {
	if !dup || stored != in.ID {
		return stored
	}
	var first string
	if err := tx.QueryRow(ctx, c.q("SELECT coalesce(body->>'duplicate_of', '') FROM {s}.leads WHERE id = $1"), in.ID).Scan(&first); err != nil {
		return ""
	}
	return first
}

// leadByRef follows a dedup key to its lead; nil when either is gone.
func (c *Cluster) leadByRef(ctx context.Context, tx pgx.Tx, key []byte) (*lead.Lead, error) {
	var body []byte
	err := tx.QueryRow(ctx, c.q("SELECT l.body FROM {s}.dedup d JOIN {s}.leads l ON l.id = d.lead_id WHERE d.key = $1"), key).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l lead.Lead
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("lead record: %w", err)
	}
	return &l, nil
}

func (c *Cluster) setRef(ctx context.Context, tx pgx.Tx, key []byte, id string) error {
	_, err := tx.Exec(ctx, c.q("INSERT INTO {s}.dedup (key, lead_id) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET lead_id = excluded.lead_id"), key, id)
	return err
}

// putLead inserts a new lead (status skipped until a delivery is added)
// or rewrites a stored one's record.
func (c *Cluster) putLead(ctx context.Context, tx pgx.Tx, l *lead.Lead, insert bool) error {
	cp := *l
	cp.Deliveries = nil
	body, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	if insert {
		_, err = tx.Exec(ctx, c.q(`INSERT INTO {s}.leads (id, created_at, node, form, status, body)
VALUES ($1, $2, $3, $4, 'skipped', $5) ON CONFLICT (id) DO NOTHING`), l.ID, l.CreatedAt, c.cfg.Node, l.Form, body)
		return err
	}
	_, err = tx.Exec(ctx, c.q("UPDATE {s}.leads SET body = $2, form = $3 WHERE id = $1"), l.ID, body, l.Form)
	return err
}

// history is one attempt of a delivery's history, as stored (the JSON of
// queue's own record).
type history struct {
	At      int64  `json:"at"`
	TookMs  int64  `json:"took_ms"`
	Outcome string `json:"outcome"`
	HTTP    int    `json:"http,omitempty"`
	CRMID   string `json:"crm_id,omitempty"`
}

// addDelivery adds lead id's delivery to dest: due now, or delivered when
// done says this node delivered it while the engine was down.
func (c *Cluster) addDelivery(ctx context.Context, tx pgx.Tx, id string, created time.Time, dest string, done *Done) error {
	if done != nil {
		h, _ := json.Marshal([]history{{At: done.At.UnixMilli(), Outcome: "delivered", CRMID: done.CRMID}})
		_, err := tx.Exec(ctx, c.q(`INSERT INTO {s}.deliveries (lead_id, dest, status, attempts, since, crm_id, delivered_at, history, lead_created)
VALUES ($1, $2, 'delivered', 1, clock_timestamp(), $3, $4, $5, $6) ON CONFLICT (lead_id, dest) DO NOTHING`),
			id, dest, done.CRMID, done.At, h, created)
		if err != nil {
			return err
		}
	} else {
		tag, err := tx.Exec(ctx, c.q(`INSERT INTO {s}.deliveries (lead_id, dest, status, due_at, since, lead_created)
VALUES ($1, $2, 'pending', clock_timestamp(), clock_timestamp(), $3) ON CONFLICT (lead_id, dest) DO NOTHING`), id, dest, created)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, 'due')", c.channel); err != nil {
				return err
			}
		}
	}
	return c.refreshStatus(ctx, tx, id)
}

// doneOnFirst: a duplicate or a merged report that this node delivered
// itself while the engine was down leaves the first lead's delivery to
// dest delivered too, when it has not been tried yet by the fleet: the
// CRM has the lead once already.
func (c *Cluster) doneOnFirst(ctx context.Context, tx pgx.Tx, first string, in *lead.Lead, dest string, done *Done) error {
	if done == nil || first == "" {
		return nil
	}
	h, _ := json.Marshal([]history{{At: done.At.UnixMilli(), Outcome: "delivered", CRMID: done.CRMID}})
	tag, err := tx.Exec(ctx, c.q(`UPDATE {s}.deliveries SET status = 'delivered', attempts = attempts + 1, due_at = NULL,
	crm_id = $3, delivered_at = $4, last_error = '', history = history || $5::jsonb
WHERE lead_id = $1 AND dest = $2 AND status IN ('pending', 'retrying') AND lease_token IS NULL`), first, dest, done.CRMID, done.At, h)
	if err != nil || tag.RowsAffected() == 0 {
		return err
	}
	return c.refreshStatus(ctx, tx, first)
}

// refreshStatus recomputes a lead's summary status (lead.Lead.Status: the
// least advanced delivery wins; none is skipped), which List filters on.
func (c *Cluster) refreshStatus(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, c.q(statusSQL), id)
	return err
}

const statusSQL = `UPDATE {s}.leads SET status = (
	SELECT CASE WHEN count(*) = 0 THEN 'skipped'
		WHEN bool_or(status = 'failed') THEN 'failed'
		WHEN bool_or(status = 'retrying') THEN 'retrying'
		WHEN bool_or(status = 'pending') THEN 'pending'
		ELSE 'delivered' END
	FROM {s}.deliveries WHERE lead_id = $1)
WHERE id = $1`
