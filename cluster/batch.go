package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// Batched forwards. Forwards of leads without a fallback delivery (done
// nil) that wait at the same time go into one transaction, written by
// set-based statements (arrays unnested), so a burst costs PostgreSQL a
// few statements per batch instead of a dozen per lead. Only the common
// case is decided in the batch: a lead id never forwarded, no tombstone,
// and none of its dedup keys naming a stored lead; everything else (a
// merge, a duplicate, a same-contact lead, another destination of a lead
// forwarded before, a resend) is returned to its caller undecided and
// forwarded on its own by forwardTx after the batch commits. The batch
// takes the same advisory locks as a forward of each of its leads, so
// what it read stays true until it commits.

// maxForwardBatch bounds the leads one batch transaction carries.
const maxForwardBatch = 256

// errClosed is a forward waiting for its batch when the Cluster closes.
var errClosed = errors.New("cluster: closed")

// fwdReq is one Forward waiting for a batch; res is buffered (1).
type fwdReq struct {
	l    *lead.Lead
	dest string
	res  chan fwdRes
}

type fwdRes struct {
	stored string
	err    error
	single bool // not decided in the batch: forward it on its own
}

// forwardBatched hands (l, dest) to the batcher and waits for its answer:
// stored (never a duplicate: those are decided on their own), or single.
func (c *Cluster) forwardBatched(ctx context.Context, l *lead.Lead, dest string) (stored string, single bool, err error) {
	req := &fwdReq{l: l, dest: dest, res: make(chan fwdRes, 1)}
	select {
	case c.fwdQ <- req:
	case <-ctx.Done():
		return "", false, ctx.Err()
	case <-c.ctx.Done():
		return "", false, errClosed
	}
	if c.onQueued != nil {
		c.onQueued()
	}
	select {
	case r := <-req.res:
		return r.stored, r.single, r.err
	case <-ctx.Done():
		// The batch may still commit it: a resend is harmless.
		return "", false, ctx.Err()
	case <-c.ctx.Done():
		return "", false, errClosed
	}
}

// batcher runs one batch at a time: what waits when the previous one
// ends goes into the next. Forwards are never held back to fill a batch.
func (c *Cluster) batcher() {
	defer c.wg.Done()
	for {
		var reqs []*fwdReq
		select {
		case <-c.ctx.Done():
			return
		case r := <-c.fwdQ:
			reqs = append(reqs, r)
		}
	more:
		for len(reqs) < maxForwardBatch {
			select {
			case r := <-c.fwdQ:
				reqs = append(reqs, r)
			default:
				break more
			}
		}
		c.runForwardBatch(reqs)
	}
}

// batchItem is a lead the batch decides.
type batchItem struct {
	req        *fwdReq
	i          int // its place in the batch's results
	l          lead.Lead
	sk, ck, dk []byte
}

func (c *Cluster) runForwardBatch(reqs []*fwdReq) {
	if c.onBatch != nil {
		c.onBatch(len(reqs))
	}
	res := make([]fwdRes, len(reqs))
	defer func() {
		for i, r := range reqs {
			r.res <- res[i]
		}
	}()
	// Leads sharing an id or a dedup key with one before them in the
	// batch are decided after it, on their own.
	ids, keys := map[string]bool{}, map[string]bool{}
	var items []*batchItem
	for i, r := range reqs {
		it := &batchItem{req: r, i: i, l: *r.l}
		it.l.Deliveries = nil
		it.sk, it.ck, it.dk = queue.SubmissionKey(&it.l), queue.ContactKey(&it.l), queue.DataKey(&it.l)
		conflict := ids[it.l.ID]
		ids[it.l.ID] = true
		for _, k := range [][]byte{it.sk, it.ck, it.dk} {
			if k != nil {
				conflict = conflict || keys[string(k)]
				keys[string(k)] = true
			}
		}
		if conflict {
			res[i].single = true
			continue
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, callTimeout)
	defer cancel()
	err := c.pipelined(ctx, func(w *writes) error {
		for _, it := range items {
			res[it.i] = fwdRes{}
		}
		return c.forwardBatchTx(ctx, w, items, res)
	})
	if err != nil {
		// Each on its own, with its own error if it has one.
		for _, it := range items {
			res[it.i] = fwdRes{single: true}
		}
	}
}

// forwardBatchTx locks and reads for every item in one round trip, sets
// aside the ones it cannot decide (single), and queues the others' writes
// in w for the caller's commit.
func (c *Cluster) forwardBatchTx(ctx context.Context, w *writes, items []*batchItem, res []fwdRes) error {
	var locks []int64
	var ids []string
	var keys [][]byte
	for _, it := range items {
		locks = append(locks, c.forwardKeys(&it.l)...)
		ids = append(ids, it.l.ID)
		for _, k := range [][]byte{it.sk, it.ck, it.dk} {
			if k != nil {
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(locks, func(i, j int) bool { return locks[i] < locks[j] })
	// Lead ids forwarded or erased before, dedup keys naming a stored lead.
	seen, named := map[string]bool{}, map[string]bool{}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest($1::bigint[]) k ORDER BY k) sorted", locks)
	// Each id and key by its index, one lookup per element (a scalar
	// subquery per row): = ANY over the array can be planned as a scan
	// of the whole table while its statistics are young, and was.
	b.Queue(c.q(`SELECT i FROM unnest($1::text[]) i
WHERE (SELECT true FROM {s}.forwards WHERE lead_id = i LIMIT 1) OR (SELECT true FROM {s}.tombstones WHERE lead_id = i LIMIT 1)`), ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			seen[id] = true
		}
		return rows.Err()
	})
	if len(keys) > 0 {
		b.Queue(c.q(`SELECT k FROM unnest($1::bytea[]) k
WHERE (SELECT d.lead_id FROM {s}.dedup d JOIN {s}.leads l ON l.id = d.lead_id WHERE d.key = k) IS NOT NULL`), keys).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k []byte
				if err := rows.Scan(&k); err != nil {
					return err
				}
				named[string(k)] = true
			}
			return rows.Err()
		})
	}
	if err := w.tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	var (
		refKeys             [][]byte
		refIDs, leadIDs     []string
		forms, bodies, dsts []string
		created             []time.Time
	)
	for _, it := range items {
		id := it.l.ID
		if seen[id] || (it.sk != nil && named[string(it.sk)]) || (it.ck != nil && named[string(it.ck)]) || (it.dk != nil && named[string(it.dk)]) {
			res[it.i].single = true
			continue
		}
		// queue.DecideContact with no first lead: not a duplicate, and
		// the lead claims its contact and data keys.
		if it.ck != nil {
			refKeys, refIDs = append(refKeys, it.ck), append(refIDs, id)
			if it.dk != nil {
				refKeys, refIDs = append(refKeys, it.dk), append(refIDs, id)
			}
		}
		if it.sk != nil {
			refKeys, refIDs = append(refKeys, it.sk), append(refIDs, id)
		}
		body, err := json.Marshal(&it.l)
		if err != nil {
			return err
		}
		leadIDs, created = append(leadIDs, id), append(created, it.l.CreatedAt)
		forms, bodies, dsts = append(forms, it.l.Form), append(bodies, string(body)), append(dsts, it.req.dest)
		res[it.i].stored = id
	}
	if len(leadIDs) == 0 {
		return nil
	}
	if len(refKeys) > 0 {
		w.queue(c.q(`INSERT INTO {s}.dedup (key, lead_id) SELECT * FROM unnest($1::bytea[], $2::text[])
ON CONFLICT (key) DO UPDATE SET lead_id = excluded.lead_id`), refKeys, refIDs)
	}
	w.queue(c.q(`INSERT INTO {s}.leads (id, created_at, node, form, status, body)
SELECT i, t, $3, f, $6, b::jsonb FROM unnest($1::text[], $2::timestamptz[], $4::text[], $5::text[]) AS r(i, t, f, b)
ON CONFLICT (id) DO NOTHING`), leadIDs, created, c.cfg.Node, forms, bodies, lead.StatusPending)
	// The fleet is woken once, when a row is new.
	w.queue(c.q(`WITH d AS (INSERT INTO {s}.deliveries (lead_id, dest, status, due_at, since, lead_created)
SELECT i, d, $4, clock_timestamp(), clock_timestamp(), t FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS r(i, d, t, n)
ORDER BY n ON CONFLICT (lead_id, dest) DO NOTHING RETURNING 1)
SELECT pg_notify($5, 'due') WHERE EXISTS (SELECT 1 FROM d)`), leadIDs, dsts, created, lead.StatusPending, c.channel)
	w.queue(c.q(`INSERT INTO {s}.forwards (lead_id, dest, stored_id, dup, node)
SELECT i, d, i, false, $3 FROM unnest($1::text[], $2::text[]) AS r(i, d)`), leadIDs, dsts, c.cfg.Node)
	return nil
}
