package caddymodule

// Cluster mode on the node (docs/cluster.md). The capture path does not
// change: a lead is written to the local nutsdb store, fsync'd, before the
// request goes on, except that each destination d is stored as the pseudo
// destination "cluster:d". The local delivery engine's sender for it is a
// forwarder, which moves the lead into the cluster engine (PostgreSQL):
// forwarding gets the local queue's retries, leases and crash safety, and
// a node's unforwarded leads are its local queue. The cluster engine
// delivers to the CRMs from every node, at one rate per CRM account.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// fleet is what the node needs of the cluster engine (*cluster.Cluster,
// through clusterAdapter): an interface so the forwarder's fallback and
// bookkeeping can be tested against a fake engine too.
type fleet interface {
	leadLister
	Close() error
	Up() bool
	DownFor() time.Duration
	Node() string
	Forward(ctx context.Context, l *lead.Lead, dest string, done *fallbackDone) (storedID string, dup bool, err error)
	Configure(cfg queue.EngineConfig, accounts map[string]string)
	Start()
	Stop(ctx context.Context) error
	ErasedSince(ctx context.Context, after int64) (ids []string, next int64, err error)
	SetUnforwarded(fn func() int)
	Nodes(ctx context.Context) ([]nodeState, error)
	AliveNodes() int
}

// fallbackDone is a delivery this node made itself while the engine was
// down (fallback_after): forwarded with it, the cluster records the
// delivery as done and never sends it again.
type fallbackDone struct {
	CRMID string    `json:"crm_id"`
	At    time.Time `json:"at"`
}

// nodeState is one node of the fleet, as /leadproxy/stats shows it.
type nodeState struct {
	Name        string    `json:"name"`
	LastSeen    time.Time `json:"last_heartbeat"`
	Unforwarded int       `json:"unforwarded"`
	Alive       bool      `json:"alive"`
}

// clusterPrefix marks a pseudo destination: "cluster:amo" is the lead's
// way into the cluster engine for the destination amo.
const clusterPrefix = "cluster:"

// Local token keys (the local store's token bucket holds them; they are
// never a destination's keys, which are "<destination>:<name>").
const (
	// fallbackKeyPrefix + "<lead id>:<destination>": a direct delivery made
	// while the engine was down, kept until the cluster has it.
	fallbackKeyPrefix = "leadproxy.fallback:"
	// erasedCursorKey: how far this node has applied the engine's erasures.
	erasedCursorKey = "leadproxy.erased_cursor"
	// fallbackGaveUp is stored instead of a fallbackDone when the CRM
	// refused the lead for good: the node stops trying on its own and the
	// cluster engine shows the failure once it has the lead.
	fallbackGaveUp = "permanent"
)

// Forwarding policy of the local engine in cluster mode: it retries until
// the engine takes the lead (a lead is never given up on the node; the
// destination's retry_for applies in the cluster), and soon after the
// engine is back.
const (
	forwardRetryFor   = 100 * 365 * 24 * time.Hour
	forwardBackoffMin = time.Second
	forwardBackoffMax = 30 * time.Second
	// erasePoll is how often a node applies the fleet's erasures to its
	// local copies.
	erasePoll = 10 * time.Second
	// forwardConcurrency is how many leads of one destination a node
	// forwards at once: the forwards waiting together share one
	// transaction (cluster's batches), so a burst is forwarded in a few
	// transactions instead of one per lead. Direct deliveries in fallback
	// keep the usual queue.DefaultConcurrency per destination.
	forwardConcurrency = 64
)

// localDests maps the destinations of a capture to what the local store
// holds: in cluster mode each becomes its pseudo destination.
func (p *pooledStore) localDests(dests []string) []string {
	if p == nil || p.fleet == nil {
		return dests
	}
	out := make([]string, len(dests))
	for i, d := range dests {
		out[i] = clusterPrefix + d
	}
	return out
}

// forwarder is the local engine's sender for "cluster:<dest>" (and for a
// plain "<dest>" delivery captured before the node joined the cluster).
type forwarder struct {
	p             *pooledStore
	dest          string
	real          lead.Sender // for fallback deliveries
	account       string
	rate          queue.Rate // the account's; zero: no limit
	fallbackAfter time.Duration
	direct        chan struct{} // bounds the direct deliveries in flight
}

// Send forwards l into the cluster engine for f.dest. With fallback_after,
// once the engine has been unreachable that long, it delivers to the CRM
// itself first (at the account's rate divided by the nodes alive), records
// that durably, and goes on forwarding: the cluster then marks the
// delivery done and never sends it again.
func (f *forwarder) Send(ctx context.Context, l *lead.Lead) (string, error) {
	key := fallbackKeyPrefix + l.ID + ":" + f.dest
	done, gaveUp, err := f.p.loadFallback(key)
	if err != nil {
		return "", fmt.Errorf("reading the fallback record: %w", err)
	}
	if done == nil && !gaveUp && f.fallbackDue() {
		if done, err = f.deliverDirect(ctx, l, key); err != nil {
			return "", err
		}
	}
	if err := f.p.paceForward(ctx); err != nil {
		return "", &lead.SendError{Msg: "the forward was cut short while it waited for captures to pause", Err: err}
	}
	ctx, end := startForwardSpan(ctx, f.dest, l)
	id, _, err := f.p.fleet.Forward(ctx, l, f.dest, done)
	end(err)
	if err != nil {
		msg := "cluster engine unreachable; the lead waits on this node"
		if done != nil {
			msg = "delivered by this node while the cluster engine was unreachable; recorded in the cluster once it is back"
		}
		return "", &lead.SendError{Msg: msg, Err: err}
	}
	if done != nil || gaveUp {
		f.p.forgetFallback(key)
	}
	return clusterPrefix + id, nil
}

func (f *forwarder) fallbackDue() bool {
	return f.fallbackAfter > 0 && f.real != nil && f.p.fleet.DownFor() > f.fallbackAfter
}

// deliverDirect sends l to the CRM from this node. It returns nil, nil when
// the engine came back while the send waited for its rate slot (forward as
// usual), or an error that keeps the pseudo delivery retrying.
func (f *forwarder) deliverDirect(ctx context.Context, l *lead.Lead, key string) (*fallbackDone, error) {
	if f.direct != nil {
		select {
		case f.direct <- struct{}{}:
			defer func() { <-f.direct }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	lim := f.p.fallbackLimiter(f.account, f.rate)
	if err := lim.wait(ctx, f.p.fleet.AliveNodes(), f.fallbackDue); err != nil {
		return nil, err
	}
	if !f.fallbackDue() {
		return nil, nil
	}
	octx, end := observeDelivery(ctx, f.dest, l)
	crmID, err := f.real.Send(octx, l)
	end(crmID, err)
	fallbackTotal.WithLabelValues(f.dest, deliveryOutcome(octx, err)).Inc()
	if err != nil {
		if ra := lead.RetryAfterOf(err); ra > 0 {
			lim.pause(ra)
		}
		if lead.IsPermanent(err) {
			// The CRM refused it: stop trying on our own; the cluster
			// engine tries (and shows the failure) once it has the lead.
			if serr := f.p.store.SaveToken(key, fallbackGaveUp); serr != nil {
				f.p.logger.Error("cluster fallback: recording a refused lead failed", zap.String("lead", l.ID), zap.Error(serr))
			}
			return nil, &lead.SendError{Msg: "the CRM refused the lead on a direct delivery (fallback_after); the cluster engine retries it once reachable", Err: err}
		}
		return nil, err
	}
	done := &fallbackDone{CRMID: crmID, At: time.Now().UTC()}
	f.p.saveFallback(key, done)
	f.p.logger.Info("lead delivered by this node while the cluster engine is unreachable (fallback_after)",
		zap.String("lead", l.ID), zap.String("destination", f.dest))
	return done, nil
}

// loadFallback reads a direct delivery's record: the delivery, or gaveUp
// when the CRM refused it.
func (p *pooledStore) loadFallback(key string) (done *fallbackDone, gaveUp bool, err error) {
	p.fbMu.Lock()
	if d, ok := p.fbDone[key]; ok {
		p.fbMu.Unlock()
		return d, false, nil
	}
	p.fbMu.Unlock()
	v, err := p.store.LoadToken(key)
	if err != nil || v == "" {
		return nil, false, err
	}
	if v == fallbackGaveUp {
		return nil, true, nil
	}
	done = new(fallbackDone)
	if err := json.Unmarshal([]byte(v), done); err != nil {
		return nil, false, fmt.Errorf("fallback record %s: %w", key, err)
	}
	return done, false, nil
}

// saveFallback records a direct delivery durably, and in memory as well:
// if the disk write fails the process still never sends it twice.
func (p *pooledStore) saveFallback(key string, done *fallbackDone) {
	p.fbMu.Lock()
	p.fbDone[key] = done
	p.fbMu.Unlock()
	b, _ := json.Marshal(done)
	if err := p.store.SaveToken(key, string(b)); err != nil {
		p.logger.Error("cluster fallback: recording a direct delivery failed; kept in memory until forwarded", zap.Error(err))
	}
}

func (p *pooledStore) forgetFallback(key string) {
	if err := p.store.SaveToken(key, ""); err != nil {
		p.logger.Warn("cluster fallback: removing a forwarded record failed", zap.Error(err))
		return
	}
	p.fbMu.Lock()
	delete(p.fbDone, key)
	p.fbMu.Unlock()
}

// unforwarded counts the local deliveries not yet forwarded: in cluster
// mode every local delivery is a forward.
func (p *pooledStore) unforwarded() int {
	s, err := p.store.Stats()
	if err != nil {
		return 0
	}
	return s.QueueDepth
}

// eraseLoop applies the fleet's erasures (admin delete, dashboard delete,
// retention) to this node's local copies, from the cursor it last reached.
func (p *pooledStore) eraseLoop(stop <-chan struct{}) {
	t := time.NewTicker(erasePoll)
	defer t.Stop()
	for {
		p.applyErasures()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (p *pooledStore) applyErasures() {
	var after int64
	if v, err := p.store.LoadToken(erasedCursorKey); err == nil && v != "" {
		fmt.Sscan(v, &after)
	}
	for range 100 { // a bounded catch-up per round
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ids, next, err := p.fleet.ErasedSince(ctx, after)
		cancel()
		if err != nil || len(ids) == 0 {
			return // the engine is down (the next round retries), or nothing new
		}
		for _, id := range ids {
			p.eraseLocal(id)
		}
		if next <= after {
			return
		}
		after = next
		if err := p.store.SaveToken(erasedCursorKey, fmt.Sprint(after)); err != nil {
			p.logger.Warn("cluster: saving the erasure cursor failed", zap.Error(err))
			return
		}
	}
}

// eraseLocal deletes the local copy of an erased lead (the engine's
// tombstones name the leads merged into it too).
func (p *pooledStore) eraseLocal(id string) {
	switch err := p.store.Delete(id); {
	case err == nil:
		erasedLocalTotal.Inc()
	case !errors.Is(err, queue.ErrNotFound):
		p.logger.Warn("cluster: erasing a local copy failed", zap.String("lead", id), zap.Error(err))
	}
}

// fallbackLimiter returns this node's limiter for account, shared by
// every destination on it and kept across reloads.
func (p *pooledStore) fallbackLimiter(account string, r queue.Rate) *nodeShare {
	p.fbMu.Lock()
	defer p.fbMu.Unlock()
	l := p.limiters[account]
	if l == nil || l.rate != r {
		l = &nodeShare{rate: r}
		p.limiters[account] = l
	}
	return l
}

// nodeShare limits this node's direct deliveries to one account to its
// share of the account's rate: N per Per divided by the nodes alive. It
// counts the starts of the last window (a sliding log), like the engines.
type nodeShare struct {
	rate queue.Rate

	mu     sync.Mutex
	starts []time.Time
	until  time.Time // a Retry-After: nothing before
}

// share is this node's part of the rate when alive nodes share it: k
// starts per window w, never more in sum than the account allows.
func (s *nodeShare) share(alive int) (k int, w time.Duration) {
	alive = max(alive, 1)
	n, per := s.rate.N, s.rate.Per
	if n >= alive {
		return n / alive, per
	}
	return 1, time.Duration((int64(per)*int64(alive) + int64(n) - 1) / int64(n))
}

// wait takes a start slot, waiting for one while still(); it returns at
// once (no slot taken) when still() turns false.
func (s *nodeShare) wait(ctx context.Context, alive int, still func() bool) error {
	for {
		d := s.take(alive)
		if d == 0 {
			return nil
		}
		t := time.NewTimer(min(d, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if !still() {
			return nil
		}
	}
}

// take records a start now if the window has room and returns 0, else
// how long until it may.
func (s *nodeShare) take(alive int) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Before(s.until) {
		return s.until.Sub(now)
	}
	if !s.rate.Limited() {
		return 0
	}
	k, w := s.share(alive)
	live := s.starts[:0]
	for _, t := range s.starts {
		if now.Sub(t) < w {
			live = append(live, t)
		}
	}
	s.starts = live
	if len(s.starts) < k {
		s.starts = append(s.starts, now)
		return 0
	}
	return max(w-now.Sub(s.starts[0]), time.Millisecond)
}

func (s *nodeShare) pause(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := time.Now().Add(d); u.After(s.until) {
		s.until = u
	}
}
