package cluster

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// NodeState is one node as the fleet last saw it.
type NodeState struct {
	Name        string
	LastSeen    time.Time
	Unforwarded int  // its leads captured but not yet in the engine
	Alive       bool // seen within a few heartbeats
}

// SetUnforwarded gives the heartbeat the count of this node's leads not yet
// forwarded (the local queue's pending and retrying cluster:* deliveries).
func (c *Cluster) SetUnforwarded(fn func() int) {
	if fn == nil {
		c.unforwarded.Store(nil)
		return
	}
	c.unforwarded.Store(&fn)
}

// AliveNodes is how many nodes were last seen alive, this one included
// (>= 1): the divisor of a node's fallback rate.
func (c *Cluster) AliveNodes() int { return int(max(c.alive.Load(), 1)) }

// Nodes lists every node that ever joined, by name.
func (c *Cluster) Nodes(ctx context.Context) ([]NodeState, error) {
	var out []NodeState
	err := c.call(ctx, "nodes", func(ctx context.Context) error {
		out = nil
		rows, err := c.pool.Query(ctx, c.q(`SELECT name, last_seen, unforwarded,
	last_seen > clock_timestamp() - $1::bigint * interval '1 microsecond' FROM {s}.nodes ORDER BY name`), micros(c.t.aliveFor))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeState, error) {
			var n NodeState
			err := r.Scan(&n.Name, &n.LastSeen, &n.Unforwarded, &n.Alive)
			n.LastSeen = n.LastSeen.UTC()
			return n, err
		})
		return err
	})
	return out, err
}

// heartbeat records this node as alive with its unforwarded count, and
// reads how many nodes are.
func (c *Cluster) heartbeat(ctx context.Context) error {
	n := 0
	if fn := c.unforwarded.Load(); fn != nil {
		n = (*fn)()
	}
	first := !c.isReady()
	_, err := c.pool.Exec(ctx, c.q(`INSERT INTO {s}.nodes (name, started_at, last_seen, unforwarded)
VALUES ($1, clock_timestamp(), clock_timestamp(), $2)
ON CONFLICT (name) DO UPDATE SET last_seen = clock_timestamp(), unforwarded = $2,
	started_at = CASE WHEN $3 THEN clock_timestamp() ELSE nodes.started_at END`), c.cfg.Node, n, first)
	if err != nil {
		return err
	}
	if first {
		if err := c.releaseOwnLeases(ctx, nil); err != nil {
			return err
		}
	}
	var alive int64
	if err := c.pool.QueryRow(ctx, c.q(`SELECT count(*) FROM {s}.nodes
WHERE last_seen > clock_timestamp() - $1::bigint * interval '1 microsecond'`), micros(c.t.aliveFor)).Scan(&alive); err != nil {
		return err
	}
	c.alive.Store(max(alive, 1))
	return nil
}

// beat runs the heartbeat and retention until Close.
func (c *Cluster) beat() {
	defer c.wg.Done()
	tick := time.NewTicker(c.t.heartbeat)
	defer tick.Stop()
	lastRetention := time.Time{}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.t.heartbeat)
		if err := c.call(ctx, "heartbeat", c.heartbeat); err != nil && c.ctx.Err() == nil {
			c.log.Warn("heartbeat failed", zap.Error(err))
		}
		cancel()
		every := c.t.retention
		if c.cfg.Retention > 0 {
			every = min(every, c.cfg.Retention/4)
		}
		if time.Since(lastRetention) >= every {
			lastRetention = time.Now()
			ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
			if err := c.call(ctx, "retention", c.retain); err != nil && c.ctx.Err() == nil {
				c.log.Warn("retention failed", zap.Error(err))
			}
			cancel()
		}
	}
}

// retain erases delivered, failed and skipped leads older than Retention
// (when set), on one node at a time (an advisory lock; the others skip the
// round), and tombstones older than 30 days, and folds the counts.
func (c *Cluster) retain(ctx context.Context) error {
	total := int64(0)
	for c.cfg.Retention > 0 {
		var n int64
		err := c.tx(ctx, func(tx pgx.Tx) error {
			n = 0
			var mine bool
			if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", c.lockKey("retention")).Scan(&mine); err != nil || !mine {
				return err
			}
			return tx.QueryRow(ctx, c.q(`WITH gone AS (
	DELETE FROM {s}.leads WHERE id IN (
		SELECT id FROM {s}.leads WHERE created_at < clock_timestamp() - $1::bigint * interval '1 microsecond'
			AND status IN ('delivered', 'failed', 'skipped')
		ORDER BY created_at LIMIT 1000)
	RETURNING id),
d AS (DELETE FROM {s}.dedup WHERE lead_id IN (SELECT id FROM gone)),
f AS (DELETE FROM {s}.forwards WHERE stored_id IN (SELECT id FROM gone))
SELECT count(*) FROM gone`), micros(c.cfg.Retention)).Scan(&n)
		})
		if err != nil {
			return err
		}
		total += n
		if n < 1000 {
			break
		}
	}
	if _, err := c.pool.Exec(ctx, c.q("DELETE FROM {s}.tombstones WHERE at < clock_timestamp() - interval '30 days'")); err != nil {
		return err
	}
	// The counts are folded here too, so they stay short when nothing
	// reads the stats.
	if err := c.tx(ctx, func(tx pgx.Tx) error { return c.foldCounts(ctx, tx) }); err != nil {
		return err
	}
	if total > 0 {
		c.log.Info("purged leads past retention", zap.Int64("count", total))
	}
	return nil
}

// listen wakes the dispatcher on the schema's NOTIFY channel (new and
// retried deliveries, freed slots), reconnecting while the server is
// away; polling covers what it misses.
func (c *Cluster) listen() {
	defer c.wg.Done()
	wait := 100 * time.Millisecond
	for c.ctx.Err() == nil {
		connected, err := c.listenOnce()
		if c.ctx.Err() != nil {
			return
		}
		if connected {
			wait = 100 * time.Millisecond
		}
		c.log.Debug("listener disconnected", zap.Error(err))
		if !sleep(c.ctx, wait) {
			return
		}
		wait = min(wait*2, c.t.retryMax)
	}
}

func (c *Cluster) listenOnce() (connected bool, err error) {
	conn, err := pgx.ConnectConfig(c.ctx, c.connCfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(c.ctx, "LISTEN "+pgx.Identifier{c.channel}.Sanitize()); err != nil {
		return false, err
	}
	c.eng.notify() // what was missed while away
	for {
		if _, err := conn.WaitForNotification(c.ctx); err != nil {
			return true, err
		}
		c.eng.notify()
	}
}

// releaseOwnLeases returns to the queue the leases held under this node's
// name except keep's tokens, with their rate slots (free Per from now:
// their requests, if sent, went out before), instead of waiting out the
// lease (minutes). One process runs per node name, so such a lease is
// one no attempt of this process holds:
//   - at registration (keep nil), a previous process's, that died (kill
//     -9, power loss) with attempts in flight; an attempt that reached
//     the CRM before the crash is sent again, as after any crash;
//   - after a claim failed (keep: the attempts in flight), the claim's
//     own, when its COMMIT landed but the reply was lost.
func (c *Cluster) releaseOwnLeases(ctx context.Context, keep []int64) error {
	if keep == nil {
		keep = []int64{} // NULL would match nothing
	}
	var n int64
	err := c.pool.QueryRow(ctx, c.q(`WITH old AS (
	SELECT lead_id, dest, lease_token FROM {s}.deliveries WHERE lease_node = $1 AND lease_token IS NOT NULL
		AND NOT lease_token = ANY ($2::bigint[]) FOR UPDATE),
r AS (UPDATE {s}.deliveries d SET lease_token = NULL, lease_until = NULL, lease_node = NULL, due_at = clock_timestamp()
	FROM old WHERE d.lead_id = old.lead_id AND d.dest = old.dest RETURNING 1),
s AS (UPDATE {s}.rate_slots s SET next_free = greatest(clock_timestamp() + a.per, a.paused_until), holder = NULL
	FROM {s}.rate_accounts a WHERE a.account = s.account AND s.holder IN (SELECT lease_token FROM old))
SELECT count(*) FROM r`), c.cfg.Node, keep).Scan(&n)
	if err == nil && n > 0 {
		c.log.Info("leases no attempt of this process holds returned to the queue", zap.Int64("count", n))
	}
	return err
}
