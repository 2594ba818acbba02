package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nutsdb/nutsdb"
	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
)

// EngineConfig is what the Caddy app hands the engine on every (re)load.
type EngineConfig struct {
	Senders     map[string]lead.Sender // destination name → sender
	Rates       map[string]Rate        // per destination; zero → the sender's lead.Rated default, else no limit
	RetryFor    time.Duration          // default 72h; then the delivery is "failed"
	Concurrency int                    // per destination, default 4
	Backoff     Backoff                // zero → full jitter exponential from 5s up to 1h
	// Observe, if set, is called around each attempt (metrics, tracing).
	Observe func(ctx context.Context, dest string, l *lead.Lead) (context.Context, func(crmID string, err error))
}

// Engine defaults.
const (
	DefaultRetryFor    = 72 * time.Hour
	DefaultConcurrency = 4
	// errNotConfigured is shown on deliveries whose destination left the config.
	errNotConfigured = "destination not configured"
	// safetyWake bounds how long the dispatcher sleeps with nothing to do:
	// new leads and finished attempts wake it at once; this only guards
	// against a wake-up lost to a bug.
	safetyWake = time.Minute
	// planCap bounds the deliveries one dispatch parks, unparks or reaps.
	planCap = 512
	// maxErrorLen bounds last_error.
	maxErrorLen = 1000
)

// Engine delivers the store's due deliveries: per destination, at most
// Concurrency attempts at once and never more than its Rate; failures are
// retried with backoff until RetryFor runs out. One dispatcher goroutine
// claims due deliveries (leases, see the layout) and starts one goroutine
// per attempt, so a slow or failing destination only holds its own slots.
type Engine struct {
	s     *Store
	log   *zap.Logger
	owner string        // random: lease tokens are owner.seq
	seq   atomic.Uint64 // lease sequence

	// attemptTimeout bounds one Send; leaseFor (longer) is how long a
	// claim stays exclusive before another dispatcher may reap it.
	attemptTimeout time.Duration
	leaseFor       time.Duration

	mu       sync.Mutex
	cfg      EngineConfig
	dests    map[string]*destination
	inflight map[string]*claim // by lease token
	unpark   bool              // Configure ran: parked deliveries may have a sender again
	running  bool
	stop     chan struct{}
	done     chan struct{}
	hard     context.Context // cancelled when Stop runs out of time
	cancel   context.CancelFunc

	wake     chan struct{}
	attempts sync.WaitGroup
}

// destination is the engine's runtime state for one destination name.
type destination struct {
	sender lead.Sender // nil: not configured now
	rate   Rate
	window *window
	conc   int
	busy   int
}

// claim is one leased delivery being attempted.
type claim struct {
	id, dest, token string
	lead            *lead.Lead
}

// NewEngine returns a stopped engine for s. Configure and Start it.
func NewEngine(s *Store, logger *zap.Logger) *Engine {
	if logger == nil {
		logger = zap.NewNop()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	e := &Engine{
		s:              s,
		log:            logger,
		owner:          hex.EncodeToString(b[:]),
		attemptTimeout: 5 * time.Minute,
		leaseFor:       10 * time.Minute,
		dests:          map[string]*destination{},
		inflight:       map[string]*claim{},
		wake:           make(chan struct{}, 1),
	}
	e.Configure(EngineConfig{})
	return e
}

// Configure swaps senders, rates and policies; safe while running (a
// reload). Attempts in flight finish with the sender they started with.
// Rate windows survive when a destination's rate is unchanged, so a reload
// does not grant a fresh burst.
func (e *Engine) Configure(cfg EngineConfig) {
	cfg = cfg.Normalized()
	e.mu.Lock()
	defer e.Notify()
	defer e.mu.Unlock()
	for _, d := range e.dests {
		d.sender = nil
	}
	for name, snd := range cfg.Senders {
		if err := validDest(name); err != nil || snd == nil {
			e.log.Error("destination ignored", zap.String("destination", name), zap.Error(err))
			continue
		}
		rate := cfg.RateOf(name, snd)
		d := e.dests[name]
		if d == nil {
			d = &destination{}
			e.dests[name] = d
		}
		if d.window == nil || d.rate != rate {
			d.rate, d.window = rate, newWindow(rate)
		}
		d.sender, d.conc = snd, cfg.Concurrency
	}
	cfg.Senders, cfg.Rates = nil, nil // kept in dests; the maps are the caller's
	e.cfg = cfg
	e.unpark = true
}

// Normalized fills EngineConfig's defaults (RetryFor, Concurrency,
// Backoff), as Configure does.
func (cfg EngineConfig) Normalized() EngineConfig {
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	cfg.Backoff = cfg.Backoff.Normalized()
	return cfg
}

// RateOf is destination name's rate: the configured one, else the
// sender's lead.Rated default, else no limit.
func (cfg EngineConfig) RateOf(name string, snd lead.Sender) Rate {
	rate := cfg.Rates[name]
	if !rate.Limited() {
		if r, ok := snd.(lead.Rated); ok {
			rate.N, rate.Per = r.DefaultRate()
		}
	}
	return rate
}

// Start starts the dispatcher; idempotent.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return
	}
	e.running = true
	e.stop, e.done = make(chan struct{}), make(chan struct{})
	e.hard, e.cancel = context.WithCancel(context.Background())
	e.unpark = true
	e.s.register(e, true)
	go e.run(e.stop, e.done)
}

// Stop stops claiming, then waits for attempts in flight. If ctx ends
// first, their sends are cancelled and their leases returned to the queue
// (the delivery is due again, no attempt counted), and Stop returns.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	if !e.running {
		e.mu.Unlock()
		return nil
	}
	e.running = false
	close(e.stop)
	done, cancel := e.done, e.cancel
	e.mu.Unlock()
	e.s.register(e, false)
	<-done
	finished := make(chan struct{})
	go func() { e.attempts.Wait(); close(finished) }()
	select {
	case <-finished:
		cancel()
		return nil
	case <-ctx.Done():
	}
	cancel()
	e.mu.Lock()
	claims := make([]*claim, 0, len(e.inflight))
	for _, c := range e.inflight {
		claims = append(claims, c)
	}
	e.mu.Unlock()
	released := 0
	err := e.s.write(context.Background(), func(tx *nutsdb.Tx) error {
		released = 0
		now := time.Now().UnixMilli()
		for _, c := range claims {
			ok, err := releaseLease(tx, c.id, c.dest, c.token, now)
			if err != nil {
				return err
			}
			if ok {
				released++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: stop: release in-flight deliveries: %w", err)
	}
	e.log.Info("delivery engine stopped with attempts in flight; returned them to the queue", zap.Int("released", released))
	return nil
}

// Notify wakes the dispatcher: a lead was added or a slot freed.
func (e *Engine) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) run(stop, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(safetyWake)
	defer timer.Stop()
	for {
		next := e.dispatch()
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-stop:
			return
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// dispatch claims what can be sent now and starts the attempts. It returns
// when to look again if nothing wakes the engine before.
func (e *Engine) dispatch() time.Time {
	now := time.Now()
	next := now.Add(safetyWake)
	want := map[string]int{}
	configured := map[string]bool{}
	e.mu.Lock()
	for name, d := range e.dests {
		if d.sender == nil {
			continue
		}
		configured[name] = true
		if d.busy >= d.conc {
			continue // a finishing attempt wakes us
		}
		n, back := d.window.available(now)
		if n == 0 {
			if !back.IsZero() && back.Before(next) {
				next = back
			}
			continue
		}
		want[name] = min(d.conc-d.busy, n)
	}
	unpark := e.unpark
	e.unpark = false
	e.mu.Unlock()

	p, err := e.s.plan(now.UnixMilli(), want, configured, unpark)
	if errors.Is(err, ErrClosed) {
		return next // the app closes the store after stopping us; nothing to do
	}
	if err != nil {
		e.log.Error("delivery engine: reading the queue failed", zap.Error(err))
		return now.Add(time.Second)
	}
	if p.again {
		next = now
		e.mu.Lock()
		e.unpark = e.unpark || unpark
		e.mu.Unlock()
	}
	for _, ms := range []int64{p.nextDue, p.nextLease} {
		if ms != 0 && time.UnixMilli(ms).Before(next) {
			next = time.UnixMilli(ms)
		}
	}
	if p.empty() {
		return next
	}
	claims, err := e.s.claim(p, now.UnixMilli(), now.Add(e.leaseFor).UnixMilli(), e.newToken)
	if err != nil {
		e.log.Error("delivery engine: claiming deliveries failed", zap.Error(err))
		return now.Add(time.Second)
	}
	if p.changed() {
		next = now // reaped or unparked deliveries are due now
	}
	for _, c := range claims {
		e.launch(c)
	}
	return next
}

func (e *Engine) newToken() string {
	return fmt.Sprintf("%s.%d", e.owner, e.seq.Add(1))
}

// launch starts an attempt for a claimed delivery, or gives the claim back
// if its destination lost its sender or tokens since the plan was made.
func (e *Engine) launch(c *claim) {
	e.mu.Lock()
	d := e.dests[c.dest]
	token, ok := 0, false
	if d != nil && d.sender != nil {
		token, ok = d.window.reserve(time.Now())
	}
	if !ok {
		e.mu.Unlock()
		e.release(c)
		return
	}
	d.busy++
	e.inflight[c.token] = c
	sender, win, cfg := d.sender, d.window, e.cfg
	hard := e.hard
	e.attempts.Add(1)
	e.mu.Unlock()
	go e.attempt(hard, c, sender, win, token, cfg)
}

func (e *Engine) release(c *claim) {
	err := e.s.write(context.Background(), func(tx *nutsdb.Tx) error {
		_, err := releaseLease(tx, c.id, c.dest, c.token, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		e.log.Error("delivery engine: returning a claim failed", zap.String("lead", c.id), zap.String("destination", c.dest), zap.Error(err))
	}
}

func (e *Engine) attempt(hard context.Context, c *claim, sender lead.Sender, win *window, token int, cfg EngineConfig) {
	defer e.attempts.Done()
	defer func() {
		e.mu.Lock()
		if d := e.dests[c.dest]; d != nil {
			d.busy--
		}
		delete(e.inflight, c.token)
		e.mu.Unlock()
		e.Notify()
	}()
	ctx, cancel := context.WithTimeout(hard, e.attemptTimeout)
	defer cancel()
	var end func(string, error)
	if cfg.Observe != nil {
		ctx, end = Observe(ctx, cfg.Observe, c.dest, c.lead, e.log)
	}
	win.start(token)
	started := time.Now()
	crmID, err := SafeSend(ctx, sender, c.lead, c.dest, e.log)
	if end != nil {
		end(crmID, err)
	}
	if err != nil && hard.Err() != nil {
		e.release(c) // Stop ran out of time: not the destination's fault
		return
	}
	e.record(c, started, crmID, err, cfg)
}

// Observe runs EngineConfig.Observe around one attempt; a panicking hook
// is logged and ignored, it must not take the engine down. Exported for
// the cluster engine.
func Observe(ctx context.Context, fn func(context.Context, string, *lead.Lead) (context.Context, func(string, error)), dest string, l *lead.Lead, log *zap.Logger) (out context.Context, end func(string, error)) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("delivery observer panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			out, end = ctx, nil
		}
	}()
	out, end = fn(ctx, dest, l)
	if out == nil {
		out = ctx
	}
	return out, end
}

// SafeSend calls the sender; a panic becomes a retryable failure.
// Exported for the cluster engine.
func SafeSend(ctx context.Context, s lead.Sender, l *lead.Lead, dest string, log *zap.Logger) (crmID string, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("destination panicked", zap.String("lead", l.ID), zap.String("destination", dest),
				zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			crmID, err = "", &lead.SendError{Msg: fmt.Sprintf("internal error: destination panicked: %v", p)}
		}
	}()
	return s.Send(ctx, l)
}

// record writes an attempt's outcome, if the attempt still holds the lease.
func (e *Engine) record(c *claim, started time.Time, crmID string, sendErr error, cfg EngineConfig) {
	var out deliveryRec
	lost := false
	err := e.s.write(context.Background(), func(tx *nutsdb.Tx) error {
		var rec deliveryRec
		found, err := getJSON(tx, bDelivery, deliveryKey(c.id, c.dest), &rec)
		if err != nil {
			return err
		}
		lost = !found || rec.Lease != c.token
		if lost {
			return nil
		}
		old := rec
		now := time.Now()
		outcome(&rec, now, crmID, sendErr, cfg)
		addHistory(&rec, started, now, crmID, sendErr)
		out = rec
		return putDelivery(tx, c.id, c.dest, &old, &rec)
	})
	fields := []zap.Field{zap.String("lead", c.id), zap.String("destination", c.dest)}
	switch {
	case err != nil:
		e.log.Error("delivery engine: recording an attempt failed", append(fields, zap.Error(err))...)
	case lost:
		e.log.Warn("attempt finished after its lease was taken back; result dropped", fields...)
	case out.Status == lead.StatusDelivered:
		e.log.Info("lead delivered", append(fields, zap.Int("attempts", out.Attempts))...)
	default:
		// The CRM's message can quote the visitor's data: it is kept on the
		// lead (the admin API's and the dashboard's last error), never logged.
		fields = append(fields, zap.String("status", out.Status), zap.Int("attempts", out.Attempts))
		if status := lead.HTTPStatusOf(sendErr); status != 0 {
			fields = append(fields, zap.Int("http_status", status))
		}
		if out.Due != 0 {
			fields = append(fields, zap.Time("next_at", msTime(out.Due)))
		}
		e.log.Warn("delivery attempt failed", fields...)
	}
}

// outcome applies an attempt's result to its delivery (Outcome).
func outcome(rec *deliveryRec, now time.Time, crmID string, err error, cfg EngineConfig) {
	rec.Lease, rec.LeaseUntil, rec.Due = "", 0, 0
	rec.Attempts++
	status, next, lastErr := Outcome(msTime(rec.Since), now, rec.Attempts, err, cfg)
	rec.Status, rec.LastError = status, lastErr
	if status == lead.StatusDelivered {
		rec.CRMID, rec.DeliveredAt = crmID, now.UnixMilli()
	}
	if !next.IsZero() {
		rec.Due = next.UnixMilli()
	}
}

// Outcome is what an attempt's result makes of a delivery whose retry_for
// counts from since, after attempts attempts (this one included):
// delivered; failed at once on a permanent error or when retry_for is
// spent; else retrying at next, after the backoff and never before the
// CRM's Retry-After, with one last try as retry_for ends. lastError is the
// text to show ("" when delivered). Exported so the cluster engine retries
// exactly as this one does.
func Outcome(since, now time.Time, attempts int, err error, cfg EngineConfig) (status string, next time.Time, lastError string) {
	if err == nil {
		return lead.StatusDelivered, time.Time{}, ""
	}
	lastError = truncate(err.Error(), maxErrorLen)
	if lead.IsPermanent(err) {
		return lead.StatusFailed, time.Time{}, lastError
	}
	ms := now.UnixMilli()
	deadline := since.UnixMilli() + cfg.RetryFor.Milliseconds()
	if ms >= deadline {
		return lead.StatusFailed, time.Time{}, truncate(fmt.Sprintf("gave up after retry_for %s: %s", cfg.RetryFor, err), maxErrorLen)
	}
	wait := lead.RetryAfterOf(err)
	delay := max(cfg.Backoff.Delay(attempts), wait)
	due := ms + delay.Milliseconds()
	if due > deadline && ms+wait.Milliseconds() <= deadline {
		due = deadline // one last try as retry_for ends
	}
	return lead.StatusRetrying, msTime(max(due, ms)), lastError
}

// AttemptOutcome is the history's word for a delivery status after an
// attempt: delivered, failed or retry.
func AttemptOutcome(status string) string {
	switch status {
	case lead.StatusDelivered:
		return "delivered"
	case lead.StatusFailed:
		return "failed"
	}
	return "retry"
}

// addHistory appends the attempt that rec's latest outcome came from,
// dropping the oldest beyond MaxHistory.
func addHistory(rec *deliveryRec, started, now time.Time, crmID string, err error) {
	a := attemptRec{At: started.UnixMilli(), TookMs: now.Sub(started).Milliseconds(), CRMID: crmID}
	a.Outcome = AttemptOutcome(rec.Status)
	a.HTTP = lead.HTTPStatusOf(err)
	if len(rec.History) >= MaxHistory {
		rec.History = append(rec.History[:0], rec.History[len(rec.History)-MaxHistory+1:]...)
	}
	rec.History = append(rec.History, a)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // do not cut a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}
