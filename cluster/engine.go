package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// engine is this node's share of the fleet's delivery engine: a
// dispatcher that claims due deliveries of the destinations this node has a
// sender for, and one goroutine per attempt. See docs/cluster.md, "Engine
// internals".
type engine struct {
	c *Cluster

	mu       sync.Mutex
	cfg      queue.EngineConfig
	dests    map[string]*destination
	accounts map[string]queue.Rate // account -> the strictest rate of its destinations
	ratesGen int                   // bumped by Configure; ratesDone is the one written
	ratesOK  int
	running  bool
	stopCh   chan struct{}
	doneCh   chan struct{}
	hard     context.Context // cancelled when Stop runs out of time
	cancel   context.CancelFunc
	inflight map[int64]*claim

	wake     chan struct{}
	attempts sync.WaitGroup
	dead     atomic.Bool // kill(): a crashed node records nothing
	nextReap time.Time   // the dispatcher's own
	strays   bool        // the dispatcher's own: a claim failed, and may have leased rows

	// onRecord, if set (tests), is called when an attempt's outcome is
	// written (status "" when the lease was lost) or given up.
	onRecord func(cl *claim, lost bool, status string, err error)
	// replyLost, if set (tests), turns a committed claim or record (op)
	// into the error a connection that broke before its reply gives.
	replyLost func(op string) bool
}

type destination struct {
	sender  lead.Sender // nil: not configured now
	account string
	conc    int
	busy    int
}

// claim is one leased delivery being attempted.
type claim struct {
	id, dest, account string
	token             int64
	limited           bool
	slot              int32 // the rate slot it holds, when limited
	lead              *lead.Lead
	until             time.Time // this node's estimate of the lease's end

	// The row as the claim leased it: while the lease holds only its
	// holder changes attempts and history; since changes only by Retry,
	// which the record's update checks (recordOnce).
	known    bool
	attempts int
	since    time.Time
	history  []byte
}

func newEngine(c *Cluster) *engine {
	e := &engine{
		c:        c,
		dests:    map[string]*destination{},
		accounts: map[string]queue.Rate{},
		inflight: map[int64]*claim{},
		wake:     make(chan struct{}, 1),
		hard:     context.Background(),
		cancel:   func() {},
	}
	e.cfg = queue.EngineConfig{}.Normalized()
	return e
}

// Configure swaps the senders and policies of this node's engine; safe
// while running (a reload). accounts maps a destination name to its
// account key (lead.Accounted; default the destination name): the rate
// limit is the account's, shared by every destination on it and every
// node. When destinations of one account have different rates, the
// strictest applies. Rates are written to the engine, so the fleet's
// last-configured node sets an account's rate.
func (c *Cluster) Configure(cfg queue.EngineConfig, accounts map[string]string) {
	e := c.eng
	cfg = cfg.Normalized()
	e.mu.Lock()
	for _, d := range e.dests {
		d.sender = nil
	}
	acc := map[string]queue.Rate{}
	for name, snd := range cfg.Senders {
		if name == "" || snd == nil {
			continue
		}
		account := accounts[name]
		if account == "" {
			account = name
		}
		rate := slotted(cfg.RateOf(name, snd))
		if r, seen := acc[account]; !seen || rate.Stricter(r) {
			acc[account] = rate
		}
		d := e.dests[name]
		if d == nil {
			d = &destination{}
			e.dests[name] = d
		}
		d.sender, d.account, d.conc = snd, account, cfg.Concurrency
	}
	cfg.Senders, cfg.Rates = nil, nil
	e.cfg = cfg
	e.accounts = acc
	e.ratesGen++
	e.mu.Unlock()
	e.notify()
}

// maxSlots bounds an account's slot rows.
const maxSlots = 256

// slotted is the rate an account's slots enforce: r itself, or above
// maxSlots requests per Per, N/k per ceil(Per/k) for the smallest k that
// brings N/k under maxSlots. A slot is then used at most k times in any
// window of length Per, so no window sees more than N; the fleet gets a
// little less than N when N is not a multiple of k.
func slotted(r queue.Rate) queue.Rate {
	if !r.Limited() || r.N <= maxSlots {
		return r
	}
	k := (r.N + maxSlots - 1) / maxSlots
	return queue.Rate{N: r.N / k, Per: (r.Per + time.Duration(k) - 1) / time.Duration(k)}
}

// Start starts this node's dispatcher; idempotent.
func (c *Cluster) Start() {
	e := c.eng
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running || e.dead.Load() {
		return
	}
	e.running = true
	e.stopCh, e.doneCh = make(chan struct{}), make(chan struct{})
	e.hard, e.cancel = context.WithCancel(context.Background())
	go e.run(e.stopCh, e.doneCh)
}

// Stop stops claiming, then waits for attempts in flight. If ctx ends
// first, their sends are cancelled and their leases returned (the delivery
// is due again, no attempt counted), and Stop returns.
func (c *Cluster) Stop(ctx context.Context) error { return c.eng.stop(ctx) }

func (e *engine) stop(ctx context.Context) error {
	e.mu.Lock()
	if !e.running {
		e.mu.Unlock()
		return nil
	}
	e.running = false
	close(e.stopCh)
	done, cancel := e.doneCh, e.cancel
	e.mu.Unlock()
	<-done
	finished := make(chan struct{})
	go func() { e.attempts.Wait(); close(finished) }()
	select {
	case <-finished:
		cancel()
		return nil
	case <-ctx.Done():
	}
	cancel() // the attempts see it and return their leases
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-finished:
		return nil
	case <-t.C:
	}
	// A sender that ignores its context: return its lease now; its late
	// result is refused by the fencing token.
	e.mu.Lock()
	claims := make([]*claim, 0, len(e.inflight))
	for _, cl := range e.inflight {
		claims = append(claims, cl)
	}
	e.mu.Unlock()
	for _, cl := range claims {
		e.release(cl)
	}
	return nil
}

// kill stops the dispatcher as a crash would: nothing released.
func (e *engine) kill() {
	e.dead.Store(true)
	e.mu.Lock()
	if e.running {
		e.running = false
		close(e.stopCh)
		e.cancel()
	}
	done := e.doneCh
	e.mu.Unlock()
	if done != nil {
		<-done
	}
}

// notify wakes the dispatcher.
func (e *engine) notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *engine) run(stop, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-e.wake:
		case <-timer.C:
		}
		timer.Reset(max(e.dispatch(), 0))
	}
}

// dispatch claims what this node may send now and starts the attempts; it
// returns how long to wait if nothing wakes it before.
func (e *engine) dispatch() time.Duration {
	c := e.c
	poll := c.t.poll
	if !c.isReady() || e.dead.Load() {
		return poll
	}
	ctx := e.hard
	type want struct {
		dest, account string
		n             int
		limited       bool
	}
	e.mu.Lock()
	gen, ok := e.ratesGen, e.ratesOK
	accounts := make(map[string]queue.Rate, len(e.accounts))
	for a, r := range e.accounts {
		accounts[a] = r
	}
	var wants []want
	for name, d := range e.dests {
		if d.sender != nil && d.busy < d.conc {
			wants = append(wants, want{name, d.account, d.conc - d.busy, e.accounts[d.account].Limited()})
		}
	}
	e.mu.Unlock()
	if gen != ok {
		if err := c.call(ctx, "rates", func(ctx context.Context) error { return e.writeRates(ctx, accounts) }); err != nil {
			e.logErr("writing the rates failed", err)
			return min(poll, time.Second)
		}
		e.mu.Lock()
		e.ratesOK = gen
		e.mu.Unlock()
	}
	next := poll
	// Reap at the first lease expiry it saw, and at least every poll: a
	// lease taken since expires leaseFor later, long after.
	if now := time.Now(); !now.Before(e.nextReap) {
		wait, err := e.reap(ctx)
		switch {
		case err != nil:
			e.logErr("reaping expired leases failed", err)
			next = min(next, time.Second)
		case wait > 0:
			next = min(next, wait)
			e.nextReap = now.Add(min(wait, poll))
		default:
			e.nextReap = now.Add(poll)
		}
	} else {
		next = min(next, time.Until(e.nextReap))
	}
	if e.strays {
		// Every claim this process holds is in flight (dispatch alone
		// claims, and launches before it returns): any other lease under
		// this node's name is a failed claim's.
		e.mu.Lock()
		keep := make([]int64, 0, len(e.inflight))
		for token := range e.inflight {
			keep = append(keep, token)
		}
		e.mu.Unlock()
		if err := c.call(ctx, "release", func(ctx context.Context) error { return c.releaseOwnLeases(ctx, keep) }); err != nil {
			e.logErr("returning a failed claim's leases failed", err)
			return min(poll, time.Second)
		}
		e.strays = false
	}
	for _, w := range wants {
		claims, wait, err := e.claim(ctx, w.dest, w.account, w.n, w.limited)
		if err != nil {
			e.logErr("claiming deliveries failed", err)
			next = min(next, time.Second)
			continue
		}
		if wait > 0 {
			next = min(next, wait)
		}
		for _, cl := range claims {
			e.launch(cl)
		}
	}
	return next
}

func (e *engine) logErr(msg string, err error) {
	if e.c.ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	e.c.log.Warn("delivery engine: "+msg, zap.Error(err))
}

// micros is a duration as the statements take it ($n * 1 microsecond).
func micros(d time.Duration) int64 { return d.Microseconds() }

// writeRates makes the engine's accounts match this node's: one row per
// account (its rate, and the Retry-After pause) and N slot rows for a
// limited one.
func (e *engine) writeRates(ctx context.Context, accounts map[string]queue.Rate) error {
	c := e.c
	return c.tx(ctx, func(tx pgx.Tx) error {
		for a, r := range accounts {
			n, per := 0, time.Duration(0)
			if r.Limited() {
				n, per = r.N, r.Per
			}
			if _, err := tx.Exec(ctx, c.q(`INSERT INTO {s}.rate_accounts (account, n, per) VALUES ($1, $2, $3::bigint * interval '1 microsecond')
ON CONFLICT (account) DO UPDATE SET n = excluded.n, per = excluded.per
WHERE (rate_accounts.n, rate_accounts.per) IS DISTINCT FROM (excluded.n, excluded.per)`), a, n, micros(per)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, c.q(`INSERT INTO {s}.rate_slots (account, slot) SELECT $1, g FROM generate_series(0, $2::int - 1) g
ON CONFLICT (account, slot) DO NOTHING`), a, n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, c.q("DELETE FROM {s}.rate_slots WHERE account = $1 AND slot >= $2"), a, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// reap returns expired leases to the queue (due now, no attempt counted)
// and says when the next lease expires.
func (e *engine) reap(ctx context.Context) (time.Duration, error) {
	c := e.c
	var n int64
	var wait *float64
	err := c.call(ctx, "reap", func(ctx context.Context) error {
		return c.pool.QueryRow(ctx, c.q(`WITH r AS (
	UPDATE {s}.deliveries SET lease_token = NULL, lease_until = NULL, lease_node = NULL, due_at = clock_timestamp()
	WHERE lease_token IS NOT NULL AND lease_until <= clock_timestamp() RETURNING 1)
SELECT (SELECT count(*) FROM r),
	(SELECT extract(epoch FROM min(lease_until) - clock_timestamp())::float8 FROM {s}.deliveries
	 WHERE lease_token IS NOT NULL AND lease_until > clock_timestamp())`)).Scan(&n, &wait)
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		c.log.Info("expired leases returned to the queue", zap.Int64("count", n))
		e.notifyFleet(ctx)
	}
	return seconds(wait), nil
}

// notifyFleet wakes every node's dispatcher.
func (e *engine) notifyFleet(ctx context.Context) {
	c := e.c
	_, _ = c.pool.Exec(ctx, "SELECT pg_notify($1, 'due')", c.channel)
}

// seconds turns a statement's "seconds until" into a wait: none (0) when
// it had nothing to say, a short one when the moment has come (the rows
// are locked by another node's claim right now).
func seconds(s *float64) time.Duration {
	switch {
	case s == nil:
		return 0
	case *s <= 0:
		return 10 * time.Millisecond
	}
	return time.Duration(*s*float64(time.Second)) + time.Millisecond
}

var errNothing = errors.New("nothing to claim")

// claim leases up to n due deliveries of dest in one transaction, each
// with a fencing token from the sequence and, for a limited account, one
// of its rate slots (the slot statement of docs/cluster.md). When nothing
// can be claimed it returns how long until something may be.
func (e *engine) claim(ctx context.Context, dest, account string, n int, limited bool) (claims []*claim, wait time.Duration, err error) {
	c := e.c
	t := c.t
	e.mu.Lock()
	hold := t.attemptTimeout + e.accounts[account].Per + 30*time.Second
	e.mu.Unlock()
	err = c.call(ctx, "claim", func(ctx context.Context) error {
		return c.pipelined(ctx, func(w *writes) error {
			claims, wait = nil, 0
			tx := w.tx
			var ids []string
			rb := &pgx.Batch{}
			rb.Queue("BEGIN")
			rb.Queue(c.q(`SELECT lead_id FROM {s}.deliveries
WHERE dest = $1 AND lease_token IS NULL AND due_at <= clock_timestamp()
	AND NOT EXISTS (SELECT 1 FROM {s}.rate_accounts a WHERE a.account = $3 AND a.paused_until > clock_timestamp())
ORDER BY due_at, lead_id LIMIT $2 FOR UPDATE SKIP LOCKED`), dest, n, account).Query(func(rows pgx.Rows) error {
				var err error
				ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			if err := tx.SendBatch(ctx, rb).Close(); err != nil {
				return err
			}
			if len(ids) == 0 {
				var s *float64
				err := tx.QueryRow(ctx, c.q(`SELECT extract(epoch FROM greatest(
	(SELECT min(due_at) FROM {s}.deliveries WHERE dest = $1 AND lease_token IS NULL AND due_at IS NOT NULL),
	(SELECT paused_until FROM {s}.rate_accounts WHERE account = $2 AND paused_until > clock_timestamp())) - clock_timestamp())::float8`), dest, account).Scan(&s)
				if err != nil {
					return err
				}
				wait = seconds(s)
				return errNothing
			}
			var slots []int32
			if limited {
				// Any free slots (the account's few rows, next_free not
				// indexed so these updates stay HOT), updated by their
				// primary key: a claim touches the rows it takes.
				rows, err := tx.Query(ctx, c.q(`UPDATE {s}.rate_slots SET next_free = clock_timestamp() + $3::bigint * interval '1 microsecond', holder = NULL
WHERE account = $1 AND slot = ANY (ARRAY(SELECT slot FROM {s}.rate_slots WHERE account = $1 AND next_free <= clock_timestamp()
	LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING slot`), account, len(ids), micros(hold))
				if err != nil {
					return err
				}
				if slots, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
					return err
				}
				if len(slots) == 0 {
					var s *float64
					err := tx.QueryRow(ctx, c.q(`SELECT extract(epoch FROM greatest(min(next_free), clock_timestamp()) - clock_timestamp())::float8
FROM {s}.rate_slots WHERE account = $1`), account).Scan(&s)
					if err != nil {
						return err
					}
					wait = seconds(s)
					return errNothing // rolls back: the due rows stay as they were
				}
				ids = ids[:len(slots)]
			}
			until := time.Now().Add(t.leaseFor - t.leaseFor/10)
			b := w.b // sent with the COMMIT
			for i, id := range ids {
				slot := int32(-1)
				if limited {
					slot = slots[i]
				}
				b.Queue(c.q(`WITH d AS (
	UPDATE {s}.deliveries SET lease_token = nextval('{s}.fencing'), lease_until = clock_timestamp() + $3::bigint * interval '1 microsecond',
		lease_node = $4, due_at = NULL
	WHERE lead_id = $1 AND dest = $2 RETURNING lead_id, lease_token, attempts, since, history),
s AS (UPDATE {s}.rate_slots SET holder = (SELECT lease_token FROM d) WHERE account = $5 AND slot = $6)
SELECT d.lease_token, l.body, d.attempts, d.since, d.history FROM d JOIN {s}.leads l ON l.id = d.lead_id`), id, dest, micros(t.leaseFor), c.cfg.Node, account, slot).QueryRow(func(row pgx.Row) error {
					cl := &claim{id: id, dest: dest, account: account, limited: limited, until: until, known: true}
					var body []byte
					if err := row.Scan(&cl.token, &body, &cl.attempts, &cl.since, &cl.history); err != nil {
						return err
					}
					var l lead.Lead
					if err := json.Unmarshal(body, &l); err != nil {
						return err
					}
					cl.lead = &l
					if limited {
						cl.slot = slot
					}
					claims = append(claims, cl)
					return nil
				})
			}
			return nil
		})
	})
	if err == nil && e.replyLost != nil && e.replyLost("claim") {
		err = errReplyLost
	}
	if errors.Is(err, errNothing) {
		return nil, wait, nil
	}
	if err != nil {
		// Most likely not committed, but a COMMIT whose reply was lost
		// leased rows no attempt holds: the next dispatch returns them
		// (releaseOwnLeases) rather than leave them to expire.
		claims = nil
		e.strays = true
	}
	return claims, wait, err
}

// launch starts an attempt for a claimed delivery, or gives the claim back
// when its destination lost its sender since.
func (e *engine) launch(cl *claim) {
	e.mu.Lock()
	d := e.dests[cl.dest]
	if d == nil || d.sender == nil || !e.running {
		e.mu.Unlock()
		e.release(cl)
		return
	}
	d.busy++
	e.inflight[cl.token] = cl
	sender, cfg, hard := d.sender, e.cfg, e.hard
	e.attempts.Add(1)
	e.mu.Unlock()
	go e.attempt(hard, cl, sender, cfg)
}

func (e *engine) attempt(hard context.Context, cl *claim, sender lead.Sender, cfg queue.EngineConfig) {
	defer e.attempts.Done()
	defer func() {
		e.mu.Lock()
		if d := e.dests[cl.dest]; d != nil {
			d.busy--
		}
		delete(e.inflight, cl.token)
		e.mu.Unlock()
		e.notify()
	}()
	log := e.c.log
	ctx, cancel := context.WithTimeout(hard, e.c.t.attemptTimeout)
	defer cancel()
	var end func(string, error)
	if cfg.Observe != nil {
		ctx, end = queue.Observe(ctx, cfg.Observe, cl.dest, cl.lead, log)
	}
	started := time.Now()
	crmID, err := queue.SafeSend(ctx, sender, cl.lead, cl.dest, log)
	if end != nil {
		end(crmID, err)
	}
	if e.dead.Load() {
		return
	}
	if err != nil && hard.Err() != nil {
		e.release(cl) // Stop ran out of time: not the destination's fault
		return
	}
	e.record(hard, cl, started, crmID, err, cfg)
}

// record writes an attempt's outcome if the attempt still holds the lease
// (its fencing token), and gives the rate slot back. While the server is
// unreachable it tries again until this node's lease would have expired.
func (e *engine) record(hard context.Context, cl *claim, started time.Time, crmID string, sendErr error, cfg queue.EngineConfig) {
	c := e.c
	fields := []zap.Field{zap.String("lead", cl.id), zap.String("destination", cl.dest)}
	for wait := 50 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		lost, status, attempts, err := e.recordOnce(cl, started, crmID, sendErr, cfg)
		if e.onRecord != nil && (err == nil || e.dead.Load() || time.Now().After(cl.until) || c.ctx.Err() != nil) {
			e.onRecord(cl, lost, status, err)
		}
		switch {
		case err == nil && lost:
			c.log.Warn("attempt finished after its lease was taken back; result dropped", fields...)
			return
		case err == nil && status == lead.StatusDelivered:
			c.log.Info("lead delivered", append(fields, zap.Int("attempts", attempts))...)
			return
		case err == nil:
			// The CRM's message can quote the visitor's data: it is kept
			// on the lead, never logged.
			fields = append(fields, zap.String("status", status), zap.Int("attempts", attempts))
			if st := lead.HTTPStatusOf(sendErr); st != 0 {
				fields = append(fields, zap.Int("http_status", st))
			}
			c.log.Warn("delivery attempt failed", fields...)
			return
		}
		if e.dead.Load() || time.Now().After(cl.until) {
			c.log.Error("delivery engine: recording an attempt failed; the lease will expire and the delivery be tried again",
				append(fields, zap.Error(err))...)
			return
		}
		if !sleep(c.ctx, wait) { // Close: the lease will expire
			return
		}
	}
}

func (e *engine) recordOnce(cl *claim, started time.Time, crmID string, sendErr error, cfg queue.EngineConfig) (lost bool, status string, attempts int, err error) {
	c := e.c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cl.known {
		// One round trip: the row as the claim read it, updated only if
		// its lease holds and Retry has not restarted its retry_for.
		var held bool
		err = c.call(ctx, "record", func(ctx context.Context) error {
			return c.pipelined(ctx, func(w *writes) error {
				held = false
				w.queue("BEGIN")
				status, attempts = e.queueOutcome(w.b, cl, cl.attempts, cl.since, cl.history, started, crmID, sendErr, cfg,
					" AND lease_token = $9 AND since = $10 RETURNING true", cl.token, cl.since)
				w.b.QueuedQueries[w.b.Len()-1].QueryRow(func(row pgx.Row) error {
					return noRows(row.Scan(&held))
				})
				w.queue(c.q(statusSQL), cl.id)
				e.queueSlot(w.b, cl, lead.RetryAfterOf(sendErr))
				w.queue("SELECT pg_notify($1, 'due')", c.channel)
				return nil
			})
		})
		if err == nil && e.replyLost != nil && e.replyLost("record") {
			err = errReplyLost
		}
		if err != nil || held {
			return false, status, attempts, err
		}
		// The lease was lost, or Retry ran meanwhile: read the row.
		cl.known = false
	}
	err = c.call(ctx, "record", func(ctx context.Context) error {
		return c.pipelined(ctx, func(w *writes) error {
			lost, status, attempts = false, "", 0
			var since time.Time
			var hist []byte
			var err error
			rb := &pgx.Batch{}
			rb.Queue("BEGIN")
			var token *int64
			var rowStatus string
			rb.Queue(c.q(`SELECT attempts, since, history, lease_token, status FROM {s}.deliveries
WHERE lead_id = $1 AND dest = $2 FOR UPDATE`), cl.id, cl.dest).QueryRow(func(row pgx.Row) error {
				err = row.Scan(&attempts, &since, &hist, &token, &rowStatus)
				return noRows(err)
			})
			if berr := w.tx.SendBatch(ctx, rb).Close(); berr != nil {
				return berr
			}
			b := w.b // sent with the COMMIT
			switch {
			case err != nil && !errors.Is(err, pgx.ErrNoRows):
				return err
			case err == nil && token != nil && *token == cl.token:
				status, attempts = e.queueOutcome(b, cl, attempts, since, hist, started, crmID, sendErr, cfg, "")
				b.Queue(c.q(statusSQL), cl.id)
			case err == nil && recordedBy(hist, cl.token):
				// An earlier try of this record committed, and only its
				// reply was lost: the outcome is written, once.
				status = rowStatus
				return nil
			default:
				// Erased, or leased again since: another node's attempt
				// owns the row.
				lost, attempts = true, 0
			}
			// The slot and the pause, whether or not the lease still held:
			// the request went out either way.
			e.queueSlot(b, cl, lead.RetryAfterOf(sendErr))
			b.Queue("SELECT pg_notify($1, 'due')", c.channel)
			return nil
		})
	})
	return lost, status, attempts, err
}

// queueOutcome queues the update that records an attempt on a row that
// had attempts, since and hist: its status (queue.Outcome), history and
// due time, the lease returned. where and args narrow the update.
func (e *engine) queueOutcome(b *pgx.Batch, cl *claim, attempts int, since time.Time, hist []byte, started time.Time, crmID string,
	sendErr error, cfg queue.EngineConfig, where string, args ...any) (string, int) {
	now := time.Now()
	attempts++
	status, next, lastErr := queue.Outcome(since, now, attempts, sendErr, cfg)
	var h []history
	_ = json.Unmarshal(hist, &h)
	h = append(h, history{At: started.UnixMilli(), TookMs: now.Sub(started).Milliseconds(),
		Outcome: queue.AttemptOutcome(status), HTTP: lead.HTTPStatusOf(sendErr), CRMID: crmID, Token: cl.token})
	if len(h) > queue.MaxHistory {
		h = h[len(h)-queue.MaxHistory:]
	}
	hb, _ := json.Marshal(h)
	var due *int64
	if !next.IsZero() {
		d := micros(max(next.Sub(now), 0))
		due = &d
	}
	b.Queue(e.c.q(`UPDATE {s}.deliveries SET status = $3, attempts = $4,
	due_at = CASE WHEN $5::bigint IS NULL THEN NULL ELSE clock_timestamp() + $5::bigint * interval '1 microsecond' END,
	last_error = $6,
	crm_id = CASE WHEN $3 = 'delivered' THEN $7 ELSE crm_id END,
	delivered_at = CASE WHEN $3 = 'delivered' THEN clock_timestamp() ELSE delivered_at END,
	lease_token = NULL, lease_until = NULL, lease_node = NULL, history = $8
WHERE lead_id = $1 AND dest = $2`+where), append([]any{cl.id, cl.dest, status, attempts, due, lastErr, crmID, hb}, args...)...)
	return status, attempts
}

// errReplyLost is what replyLost makes of a committed claim or record.
var errReplyLost = errors.New("unexpected EOF (the reply was lost)")

// recordedBy reports whether the stored history hist holds the attempt
// that ran under the fencing token.
func recordedBy(hist []byte, token int64) bool {
	var h []history
	if json.Unmarshal(hist, &h) != nil {
		return false
	}
	for _, a := range h {
		if a.Token == token {
			return true
		}
	}
	return false
}

// runBatch sends the queued statements in one round trip and returns the
// first error.
func runBatch(ctx context.Context, tx interface {
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, b *pgx.Batch) error {
	br := tx.SendBatch(ctx, b)
	for i := 0; i < b.Len(); i++ {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

// queueSlot returns the attempt's rate slot, free again Per after now (the
// attempt has ended, so its request reached the CRM before now), and
// applies a Retry-After to the whole account: its pause, and every slot
// pushed past it.
func (e *engine) queueSlot(b *pgx.Batch, cl *claim, retryAfter time.Duration) {
	c := e.c
	if retryAfter > 0 {
		b.Queue(c.q(`INSERT INTO {s}.rate_accounts (account, n, per, paused_until)
VALUES ($1, 0, interval '0', clock_timestamp() + $2::bigint * interval '1 microsecond')
ON CONFLICT (account) DO UPDATE SET paused_until = greatest(rate_accounts.paused_until, excluded.paused_until)`),
			cl.account, micros(retryAfter))
	}
	if cl.limited {
		// By the slot's primary key; the holder check keeps a slot taken
		// since by another claim untouched.
		b.Queue(c.q(`UPDATE {s}.rate_slots s SET next_free = greatest(clock_timestamp() + a.per, a.paused_until), holder = NULL
FROM {s}.rate_accounts a WHERE a.account = s.account AND s.account = $1 AND s.slot = $3 AND s.holder = $2`), cl.account, cl.token, cl.slot)
	}
	if retryAfter > 0 {
		b.Queue(c.q(`UPDATE {s}.rate_slots s SET next_free = greatest(s.next_free, a.paused_until)
FROM {s}.rate_accounts a WHERE a.account = s.account AND s.account = $1`), cl.account)
	}
}

// release returns a claim without an attempt counted: due now, and its
// slot given back (as used: a request may have gone out).
func (e *engine) release(cl *claim) {
	c := e.c
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.call(ctx, "release", func(ctx context.Context) error {
		return c.tx(ctx, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(c.q(`UPDATE {s}.deliveries SET lease_token = NULL, lease_until = NULL, lease_node = NULL,
	due_at = clock_timestamp() WHERE lead_id = $1 AND dest = $2 AND lease_token = $3`), cl.id, cl.dest, cl.token)
			e.queueSlot(b, cl, 0)
			b.Queue("SELECT pg_notify($1, 'due')", c.channel)
			return runBatch(ctx, tx, b)
		})
	})
	if err != nil {
		c.log.Error("delivery engine: returning a claim failed; its lease will expire", zap.String("lead", cl.id),
			zap.String("destination", cl.dest), zap.Error(err))
	}
}
