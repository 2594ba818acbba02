package cluster

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// The lead list: the same semantics and errors as *queue.Store's methods
// of the same names, over every node's leads.

// callTimeout bounds one admin or dashboard call.
const callTimeout = 30 * time.Second

func (c *Cluster) bg(op string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(c.ctx, callTimeout)
	defer cancel()
	return c.call(ctx, op, fn)
}

// listBatch is how many leads one List statement reads.
const listBatch = 200

// cursor is a list position: the lead's created_at (microseconds) and id.
func cursor(at time.Time, id string) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(at.UnixMicro()))
	return hex.EncodeToString(append(b, id...))
}

func parseCursor(s string) (time.Time, string, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < 9 {
		return time.Time{}, "", queue.ErrBadCursor
	}
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))), string(b[8:]), nil
}

// List returns leads newest first (by created_at, then id), with their
// deliveries. nextCursor is opaque, and empty on the last page (with a
// filter, the page after a full one may come back empty).
func (c *Cluster) List(f queue.Filter) (leads []*lead.Lead, nextCursor string, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = queue.DefaultListLimit
	}
	limit = min(limit, queue.MaxListLimit)
	if err := queue.CheckStatus(f.Status); err != nil {
		return nil, "", err
	}
	var fromAt time.Time
	var fromID string
	if f.Cursor != "" {
		if fromAt, fromID, err = parseCursor(f.Cursor); err != nil {
			return nil, "", err
		}
	}
	match := f.Matcher()
	err = c.bg("list", func(ctx context.Context) error {
		leads, nextCursor = nil, ""
		at, id, started := fromAt, fromID, f.Cursor != ""
		for {
			batch, err := c.leadsPage(ctx, f.Status, f.Form, started, at, id, listBatch)
			if err != nil {
				return err
			}
			for _, l := range batch {
				if len(leads) == limit {
					last := leads[len(leads)-1]
					nextCursor = cursor(last.CreatedAt, last.ID)
					return nil
				}
				if match(l) {
					leads = append(leads, l)
				}
			}
			if len(batch) < listBatch {
				return nil
			}
			last := batch[len(batch)-1]
			at, id, started = last.CreatedAt, last.ID, true
		}
	})
	if err != nil {
		return nil, "", err
	}
	return leads, nextCursor, nil
}

// leadsPage reads up to n leads after (at, id) newest first, with their
// deliveries.
func (c *Cluster) leadsPage(ctx context.Context, status, form string, after bool, at time.Time, id string, n int) ([]*lead.Lead, error) {
	rows, err := c.pool.Query(ctx, c.q(`SELECT body, created_at FROM {s}.leads
WHERE ($1 = '' OR status = $1) AND ($2 = '' OR form = $2) AND (NOT $3 OR (created_at, id) < ($4, $5))
ORDER BY created_at DESC, id DESC LIMIT $6`), status, form, after, at, id, n)
	if err != nil {
		return nil, err
	}
	return c.withDeliveries(ctx, rows)
}

// withDeliveries decodes rows of (body, created_at) and fills in each
// lead's deliveries.
func (c *Cluster) withDeliveries(ctx context.Context, rows pgx.Rows) ([]*lead.Lead, error) {
	var out []*lead.Lead
	byID := map[string]*lead.Lead{}
	var ids []string
	for rows.Next() {
		var body []byte
		var at time.Time
		if err := rows.Scan(&body, &at); err != nil {
			rows.Close()
			return nil, err
		}
		var l lead.Lead
		if err := json.Unmarshal(body, &l); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cluster: lead record: %w", err)
		}
		l.CreatedAt = at.UTC().Round(0)
		if byID[l.ID] == nil {
			byID[l.ID] = &l
			ids = append(ids, l.ID)
			out = append(out, &l)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return out, nil
	}
	drows, err := c.pool.Query(ctx, c.q(`SELECT lead_id, dest, status, attempts, due_at, last_error, crm_id, delivered_at, history
FROM {s}.deliveries WHERE lead_id = ANY($1) ORDER BY ord`), ids)
	if err != nil {
		return nil, err
	}
	defer drows.Close()
	for drows.Next() {
		var id string
		var d lead.Delivery
		var due, delivered *time.Time
		var hist []byte
		if err := drows.Scan(&id, &d.Destination, &d.Status, &d.Attempts, &due, &d.LastError, &d.CRMID, &delivered, &hist); err != nil {
			return nil, err
		}
		d.NextAt, d.DeliveredAt = utc(due), utc(delivered)
		var h []history
		_ = json.Unmarshal(hist, &h)
		for _, a := range h {
			d.History = append(d.History, lead.Attempt{At: time.UnixMilli(a.At).UTC(), Took: time.Duration(a.TookMs) * time.Millisecond,
				Outcome: a.Outcome, HTTPStatus: a.HTTP, CRMID: a.CRMID})
		}
		if l := byID[id]; l != nil {
			l.Deliveries = append(l.Deliveries, d)
		}
	}
	return out, drows.Err()
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Get returns a lead with its deliveries, or queue.ErrNotFound.
func (c *Cluster) Get(id string) (*lead.Lead, error) {
	var out *lead.Lead
	err := c.bg("get", func(ctx context.Context) error {
		var err error
		out, err = c.get(ctx, id)
		return err
	})
	return out, err
}

func (c *Cluster) get(ctx context.Context, id string) (*lead.Lead, error) {
	rows, err := c.pool.Query(ctx, c.q("SELECT body, created_at FROM {s}.leads WHERE id = $1"), id)
	if err != nil {
		return nil, err
	}
	ls, err := c.withDeliveries(ctx, rows)
	if err != nil {
		return nil, err
	}
	if len(ls) == 0 {
		return nil, queue.ErrNotFound
	}
	return ls[0], nil
}

// Retry makes every delivery of the lead that is not delivered due now,
// failed ones included, and restarts their retry_for. A delivery in flight
// is left to its attempt, with retry_for restarted.
func (c *Cluster) Retry(id string) error {
	return c.bg("retry", func(ctx context.Context) error {
		return c.tx(ctx, func(tx pgx.Tx) error {
			var found bool
			if err := tx.QueryRow(ctx, c.q("SELECT EXISTS (SELECT 1 FROM {s}.leads WHERE id = $1)"), id).Scan(&found); err != nil {
				return err
			}
			if !found {
				return queue.ErrNotFound
			}
			if _, err := tx.Exec(ctx, c.q(`UPDATE {s}.deliveries SET since = clock_timestamp(),
	due_at = CASE WHEN lease_token IS NULL THEN clock_timestamp() ELSE due_at END,
	status = CASE WHEN status = 'failed' THEN 'retrying' ELSE status END
WHERE lead_id = $1 AND status <> 'delivered'`), id); err != nil {
				return err
			}
			if err := c.refreshStatus(ctx, tx, id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "SELECT pg_notify($1, 'due')", c.channel)
			return err
		})
	})
}

// Delete erases a lead: its record, deliveries and the dedup keys naming
// it, and leaves a tombstone for it and for every lead id merged into it,
// so each node erases its local copies (ErasedSince). An attempt in flight
// finds its lease gone and records nothing.
func (c *Cluster) Delete(id string) error {
	return c.bg("delete", func(ctx context.Context) error {
		return c.tx(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, c.q("DELETE FROM {s}.leads WHERE id = $1"), id)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return queue.ErrNotFound
			}
			if _, err := tx.Exec(ctx, c.q("DELETE FROM {s}.dedup WHERE lead_id = $1"), id); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, c.q(`INSERT INTO {s}.tombstones (lead_id)
SELECT $1 UNION SELECT DISTINCT lead_id FROM {s}.forwards WHERE stored_id = $1 AND lead_id <> $1`), id)
			return err
		})
	})
}

// ErasedSince returns the ids of leads erased after position after (0:
// from the start), oldest first, and the position to ask from next time.
func (c *Cluster) ErasedSince(ctx context.Context, after int64) (ids []string, next int64, err error) {
	next = after
	err = c.call(ctx, "erased_since", func(ctx context.Context) error {
		ids, next = nil, after
		rows, err := c.pool.Query(ctx, c.q("SELECT seq, lead_id FROM {s}.tombstones WHERE seq > $1 ORDER BY seq LIMIT 1000"), after)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var seq int64
			var id string
			if err := rows.Scan(&seq, &id); err != nil {
				return err
			}
			ids, next = append(ids, id), seq
		}
		return rows.Err()
	})
	if err != nil {
		return nil, after, err
	}
	return ids, next, nil
}

// Stats counts the fleet's leads by status and destination and measures
// the queue. The counts are the sums of the counts table (schema version
// 5), exact as of the statement; one caller at a time folds its rows into
// one per count first, so the sums stay short.
func (c *Cluster) Stats() (queue.Stats, error) {
	var st queue.Stats
	err := c.bg("stats", func(ctx context.Context) error {
		return c.tx(ctx, func(tx pgx.Tx) error {
			st = queue.Stats{ByStatus: map[string]int{}, ByDestination: map[string]map[string]int{}}
			if err := c.foldCounts(ctx, tx); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, c.q("SELECT kind, dest, status, sum(n) FROM {s}.counts GROUP BY kind, dest, status HAVING sum(n) <> 0"))
			if err != nil {
				return err
			}
			for rows.Next() {
				var kind, d, s string
				var n int
				if err := rows.Scan(&kind, &d, &s, &n); err != nil {
					rows.Close()
					return err
				}
				if kind == "lead" {
					st.ByStatus[s] = n
					st.Leads += n
					continue
				}
				if st.ByDestination[d] == nil {
					st.ByDestination[d] = map[string]int{}
				}
				st.ByDestination[d][s] = n
				if s == lead.StatusPending || s == lead.StatusRetrying {
					st.QueueDepth += n
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			// The first entry of the index of open deliveries.
			var oldest *float64
			if err := tx.QueryRow(ctx, c.q(`SELECT extract(epoch FROM clock_timestamp() - min(lead_created))::float8
FROM {s}.deliveries WHERE status IN ('pending', 'retrying')`)).Scan(&oldest); err != nil {
				return err
			}
			if oldest != nil {
				st.OldestPendingSeconds = max(0, *oldest)
			}
			return nil
		})
	})
	return st, err
}

// foldCounts replaces the counts' rows by one per count, in tx, unless
// another node is folding them now.
func (c *Cluster) foldCounts(ctx context.Context, tx pgx.Tx) error {
	var mine bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", c.lockKey("counts")).Scan(&mine); err != nil || !mine {
		return err
	}
	_, err := tx.Exec(ctx, c.q(`WITH d AS (DELETE FROM {s}.counts RETURNING kind, dest, status, n)
INSERT INTO {s}.counts (kind, dest, status, n) SELECT kind, dest, status, sum(n) FROM d GROUP BY kind, dest, status HAVING sum(n) <> 0`))
	return err
}

// Each calls fn for the leads created in [from, to), oldest first, with
// their deliveries, until fn returns false (the report, the export). It
// reads a page at a time: a long walk holds no transaction open.
func (c *Cluster) Each(from, to time.Time, fn func(*lead.Lead) bool) error {
	at, id := from, ""
	first := true
	for {
		var page []*lead.Lead
		err := c.bg("each", func(ctx context.Context) error {
			rows, err := c.pool.Query(ctx, c.q(`SELECT body, created_at FROM {s}.leads
WHERE created_at < $2 AND (($3 AND created_at >= $1) OR (NOT $3 AND (created_at, id) > ($1, $4)))
ORDER BY created_at, id LIMIT $5`), at, to, first, id, listBatch)
			if err != nil {
				return err
			}
			page, err = c.withDeliveries(ctx, rows)
			return err
		})
		if err != nil {
			return err
		}
		for _, l := range page {
			if !fn(l) {
				return nil
			}
		}
		if len(page) < listBatch {
			return nil
		}
		last := page[len(page)-1]
		at, id, first = last.CreatedAt, last.ID, false
	}
}

// LoadToken returns a token a destination saved, "" when there is none
// (crm.TokenStore, shared by the fleet).
func (c *Cluster) LoadToken(key string) (string, error) {
	var v string
	err := c.bg("load_token", func(ctx context.Context) error {
		v = ""
		err := c.pool.QueryRow(ctx, c.q("SELECT value FROM {s}.tokens WHERE key = $1"), key).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	return v, err
}

// SaveToken stores a token for the fleet (crm.TokenStore); "" deletes it.
func (c *Cluster) SaveToken(key, value string) error {
	if key == "" {
		return errors.New("cluster: empty token key")
	}
	return c.bg("save_token", func(ctx context.Context) error {
		if value == "" {
			_, err := c.pool.Exec(ctx, c.q("DELETE FROM {s}.tokens WHERE key = $1"), key)
			return err
		}
		_, err := c.pool.Exec(ctx, c.q(`INSERT INTO {s}.tokens (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = clock_timestamp()`), key, value)
		return err
	})
}
