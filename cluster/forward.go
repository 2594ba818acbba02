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
	"github.com/jackc/pgx/v5/pgconn"

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
		if done == nil {
			// The common case goes with the forwards waiting at the same
			// time (batch.go); what the batch cannot decide comes back.
			stored, single, err := c.forwardBatched(ctx, l, dest)
			if err != nil || !single {
				storedID, dup = stored, false
				return err
			}
		}
		return c.pipelined(ctx, func(w *writes) error {
			var err error
			storedID, dup, err = c.forwardTx(ctx, w, l, dest, done)
			return err
		})
	})
	if err != nil {
		return "", false, fmt.Errorf("cluster: forward: %w", err)
	}
	return storedID, dup, nil
}

// session is what a pipelined transaction's statements run on: its
// connection, in the transaction fn began on it.
type session interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pipelined runs fn in one transaction with no round trip of its own for
// BEGIN or COMMIT: fn queues "BEGIN" first in its first batch on w.tx,
// and the writes it leaves in w are sent with the COMMIT. Run again, as
// tx does, after a deadlock or a serialization failure.
func (c *Cluster) pipelined(ctx context.Context, fn func(w *writes) error) error {
	var err error
	for try := 0; try < 5; try++ {
		if err = c.pipelinedOnce(ctx, fn); !retryable(err) {
			return err
		}
	}
	return err
}

func (c *Cluster) pipelinedOnce(ctx context.Context, fn func(w *writes) error) error {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection still in a transaction is closed by Release, never
	// given to another caller.
	defer conn.Release()
	w := newWrites(conn)
	if err = fn(w); err == nil {
		err = w.commit(ctx)
	}
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = conn.Exec(rctx, "ROLLBACK")
		cancel()
	}
	return err
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

// forwardReads is what a forward reads before it decides, all in one round
// trip after its locks: the same (lead, destination) forwarded before, a
// tombstone, another destination of the lead forwarded before, and the
// leads the dedup keys name.
type forwardReads struct {
	again, other      bool
	stored, otherID   string
	dup, otherDup     bool
	erased            bool
	bySub, byCk, byDk *lead.Lead
}

func (c *Cluster) readForward(ctx context.Context, tx session, in *lead.Lead, dest string, sk, ck, dk []byte) (*forwardReads, error) {
	r := &forwardReads{}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// One statement, the keys in order (no two forwards wait on each
	// other in opposite orders); the reads after it run once it holds them.
	b.Queue("SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) k ORDER BY k) sorted", c.forwardKeys(in))
	b.Queue(c.q("SELECT stored_id, dup FROM {s}.forwards WHERE lead_id = $1 AND dest = $2"), in.ID, dest).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&r.stored, &r.dup)
		r.again = err == nil
		return noRows(err)
	})
	b.Queue(c.q("SELECT EXISTS (SELECT 1 FROM {s}.tombstones WHERE lead_id = $1)"), in.ID).QueryRow(func(row pgx.Row) error {
		return row.Scan(&r.erased)
	})
	b.Queue(c.q("SELECT stored_id, dup FROM {s}.forwards WHERE lead_id = $1 LIMIT 1"), in.ID).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&r.otherID, &r.otherDup)
		r.other = err == nil
		return noRows(err)
	})
	for _, ref := range []struct {
		key []byte
		to  **lead.Lead
	}{{sk, &r.bySub}, {ck, &r.byCk}, {dk, &r.byDk}} {
		if ref.key == nil {
			continue
		}
		to := ref.to
		b.Queue(c.q("SELECT l.body FROM {s}.dedup d JOIN {s}.leads l ON l.id = d.lead_id WHERE d.key = $1"), ref.key).QueryRow(func(row pgx.Row) error {
			var body []byte
			if err := row.Scan(&body); err != nil {
				return noRows(err)
			}
			var l lead.Lead
			if err := json.Unmarshal(body, &l); err != nil {
				return fmt.Errorf("lead record: %w", err)
			}
			*to = &l
			return nil
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return r, nil
}

func noRows(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

// writes are a forward's statements whose results it does not read,
// sent in one round trip before its next read and at its end.
type writes struct {
	tx session
	b  *pgx.Batch
}

func newWrites(tx session) *writes { return &writes{tx: tx, b: &pgx.Batch{}} }

func (w *writes) queue(sql string, args ...any) { w.b.Queue(sql, args...) }

func (w *writes) flush(ctx context.Context) error {
	if w.b.Len() == 0 {
		return nil
	}
	b := w.b
	w.b = &pgx.Batch{}
	// Close reads every result and runs the queued queries' callbacks.
	return w.tx.SendBatch(ctx, b).Close()
}

// commit sends the writes and the COMMIT.
func (w *writes) commit(ctx context.Context) error {
	w.queue("COMMIT")
	return w.flush(ctx)
}

// forwardTx runs one forward on w's session, whose transaction it begins;
// its last writes are left in w for the caller's commit.
func (c *Cluster) forwardTx(ctx context.Context, w *writes, in *lead.Lead, dest string, done *Done) (string, bool, error) {
	tx := w.tx
	l := *in
	l.Deliveries = nil
	sk, ck, dk := queue.SubmissionKey(&l), queue.ContactKey(&l), queue.DataKey(&l)
	r, err := c.readForward(ctx, tx, in, dest, sk, ck, dk)
	if err != nil {
		return "", false, err
	}
	if r.again {
		// The same (lead, destination) again: the same answer. With done,
		// an earlier forward committed although its node never learnt it,
		// and the node delivered the lead itself since: a delivery the
		// fleet has not tried yet is recorded as that one.
		if done != nil {
			if err := c.doneOnFirst(ctx, w, c.firstOf(ctx, tx, in, r.stored, r.dup), in, dest, done); err != nil {
				return "", false, err
			}
		}
		return r.stored, r.dup, nil
	}
	remember := func(stored string, dup bool) (string, bool, error) {
		w.queue(c.q(`INSERT INTO {s}.forwards (lead_id, dest, stored_id, dup, node) VALUES ($1, $2, $3, $4, $5)`),
			in.ID, dest, stored, dup, c.cfg.Node)
		return stored, dup, nil
	}
	if r.erased {
		return remember(in.ID, true)
	}
	// Another destination of this lead was forwarded: the dedup decision
	// is made; a lead kept as its own gets this destination too.
	if r.other {
		if r.otherDup {
			if err := c.doneOnFirst(ctx, w, c.firstOf(ctx, tx, in, r.otherID, true), in, dest, done); err != nil {
				return "", false, err
			}
			return remember(r.otherID, true)
		}
		if err := c.addDelivery(w, r.otherID, in.CreatedAt, dest, done, true); err != nil {
			return "", false, err
		}
		return remember(r.otherID, false)
	}

	// The first time this lead is seen: queue.Store.addTx's dedup, on the
	// fleet's keys.
	if sk != nil {
		if first := r.bySub; first != nil {
			queue.MergeLead(first, &l)
			first.Dedup = lead.DedupMerged
			if err := c.putLead(w, first, ""); err != nil {
				return "", false, err
			}
			if fck := queue.ContactKey(first); fck != nil {
				// A merge may give the first lead the contact its first
				// report lacked.
				w.queue("SELECT pg_advisory_xact_lock($1)", dedupLock(fck))
				w.queue(c.q("INSERT INTO {s}.dedup (key, lead_id) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"), fck, first.ID)
			}
			if err := c.doneOnFirst(ctx, w, first.ID, in, dest, done); err != nil {
				return "", false, err
			}
			return remember(first.ID, true)
		}
	}
	dup := false
	if ck != nil {
		var claim bool
		dup, claim = queue.DecideContact(&l, r.byCk, r.byDk, c.cfg.DedupWindow)
		if claim {
			c.setRef(w, ck, l.ID)
		}
		if !dup {
			c.setRef(w, dk, l.ID)
		}
	}
	if sk != nil {
		c.setRef(w, sk, l.ID)
	}
	status := lead.StatusSkipped
	if !dup {
		status = newDeliveryStatus(done)
	}
	if err := c.putLead(w, &l, status); err != nil {
		return "", false, err
	}
	if dup {
		if err := c.doneOnFirst(ctx, w, l.DuplicateOf, in, dest, done); err != nil {
			return "", false, err
		}
	} else if err := c.addDelivery(w, l.ID, l.CreatedAt, dest, done, false); err != nil {
		return "", false, err
	}
	return remember(l.ID, dup)
}

// firstOf is the lead whose delivery a forward of in stands for: the lead
// itself, the first lead it was merged into, or the first lead of a
// duplicate ("" when there is none, or it cannot be read: then no
// delivery is marked).
func (c *Cluster) firstOf(ctx context.Context, tx session, in *lead.Lead, stored string, dup bool) string {
	if !dup || stored != in.ID {
		return stored
	}
	var first string
	if err := tx.QueryRow(ctx, c.q("SELECT coalesce(body->>'duplicate_of', '') FROM {s}.leads WHERE id = $1"), in.ID).Scan(&first); err != nil {
		return ""
	}
	return first
}

// setRef points a dedup key at lead id.
func (c *Cluster) setRef(w *writes, key []byte, id string) {
	w.queue(c.q("INSERT INTO {s}.dedup (key, lead_id) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET lead_id = excluded.lead_id"), key, id)
}

// putLead inserts a new lead with its summary status (the status of the
// one delivery its forward adds, skipped when none) or, with status "",
// rewrites a stored one's record.
func (c *Cluster) putLead(w *writes, l *lead.Lead, status string) error {
	cp := *l
	cp.Deliveries = nil
	body, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	if status != "" {
		w.queue(c.q(`INSERT INTO {s}.leads (id, created_at, node, form, status, body)
VALUES ($1, $2, $3, $4, $6, $5) ON CONFLICT (id) DO NOTHING`), l.ID, l.CreatedAt, c.cfg.Node, l.Form, body, status)
		return nil
	}
	w.queue(c.q("UPDATE {s}.leads SET body = $2, form = $3 WHERE id = $1"), l.ID, body, l.Form)
	return nil
}

// history is one attempt of a delivery's history, as stored (the JSON of
// queue's own record).
type history struct {
	At      int64  `json:"at"`
	TookMs  int64  `json:"took_ms"`
	Outcome string `json:"outcome"`
	HTTP    int    `json:"http,omitempty"`
	CRMID   string `json:"crm_id,omitempty"`
	// Token is the fencing token of the lease the attempt ran under: a
	// record retried after its first COMMIT's reply was lost finds its
	// own write by it. Forwards' entries have none.
	Token int64 `json:"token,omitempty"`
}

// newDeliveryStatus is the status of a delivery a forward adds.
func newDeliveryStatus(done *Done) string {
	if done != nil {
		return lead.StatusDelivered
	}
	return lead.StatusPending
}

// addDelivery adds lead id's delivery to dest: due now, or delivered when
// done says this node delivered it while the engine was down. refresh
// recomputes the lead's status (a lead stored before; a new one is
// inserted with it).
func (c *Cluster) addDelivery(w *writes, id string, created time.Time, dest string, done *Done, refresh bool) error {
	if done != nil {
		h, _ := json.Marshal([]history{{At: done.At.UnixMilli(), Outcome: "delivered", CRMID: done.CRMID}})
		w.queue(c.q(`INSERT INTO {s}.deliveries (lead_id, dest, status, attempts, since, crm_id, delivered_at, history, lead_created)
VALUES ($1, $2, 'delivered', 1, clock_timestamp(), $3, $4, $5, $6) ON CONFLICT (lead_id, dest) DO NOTHING`),
			id, dest, done.CRMID, done.At, h, created)
	} else {
		// The fleet is woken only when the row is new.
		w.queue(c.q(`WITH d AS (INSERT INTO {s}.deliveries (lead_id, dest, status, due_at, since, lead_created)
VALUES ($1, $2, 'pending', clock_timestamp(), clock_timestamp(), $3) ON CONFLICT (lead_id, dest) DO NOTHING RETURNING 1)
SELECT pg_notify($4, 'due') FROM d`), id, dest, created, c.channel)
	}
	if refresh {
		w.queue(c.q(statusSQL), id)
	}
	return nil
}

// doneOnFirst: a duplicate or a merged report that this node delivered
// itself while the engine was down leaves the first lead's delivery to
// dest delivered too, when it has not been tried yet by the fleet: the
// CRM has the lead once already.
func (c *Cluster) doneOnFirst(ctx context.Context, w *writes, first string, in *lead.Lead, dest string, done *Done) error {
	if done == nil || first == "" {
		return nil
	}
	if err := w.flush(ctx); err != nil {
		return err
	}
	h, _ := json.Marshal([]history{{At: done.At.UnixMilli(), Outcome: "delivered", CRMID: done.CRMID}})
	tag, err := w.tx.Exec(ctx, c.q(`UPDATE {s}.deliveries SET status = 'delivered', attempts = attempts + 1, due_at = NULL,
	crm_id = $3, delivered_at = $4, last_error = '', history = history || $5::jsonb
WHERE lead_id = $1 AND dest = $2 AND status IN ('pending', 'retrying') AND lease_token IS NULL`), first, dest, done.CRMID, done.At, h)
	if err != nil || tag.RowsAffected() == 0 {
		return err
	}
	w.queue(c.q(statusSQL), first)
	return nil
}

// refreshStatus recomputes a lead's summary status (lead.Lead.Status: the
// least advanced delivery wins; none is skipped), which List filters on.
func (c *Cluster) refreshStatus(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, c.q(statusSQL), id)
	return err
}

// statusSQL writes the lead only when its status changes: a lead row is
// large (its JSON) and status is indexed, so every write is a new version.
const statusSQL = `UPDATE {s}.leads l SET status = s.v FROM (
	SELECT CASE WHEN count(*) = 0 THEN 'skipped'
		WHEN bool_or(status = 'failed') THEN 'failed'
		WHEN bool_or(status = 'retrying') THEN 'retrying'
		WHEN bool_or(status = 'pending') THEN 'pending'
		ELSE 'delivered' END AS v
	FROM {s}.deliveries WHERE lead_id = $1) s
WHERE l.id = $1 AND l.status <> s.v`
