package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// clusterParams is what the node opens the cluster engine with.
type clusterParams struct {
	resolvedCluster
	Retention   time.Duration
	DedupWindow time.Duration
}

// openCluster opens the cluster engine: it parses the DSN and returns at
// once; connecting, migrating and registering the node go on in the
// background (cluster_open.go).
var openCluster func(ctx context.Context, cp clusterParams, log *zap.Logger) (fleet, error)

// openFleet opens the cluster engine with the store (the same UsagePool
// lifetime): called once per store, never by `caddy validate`.
func (p *pooledStore) openFleet(a *App) error {
	if openCluster == nil {
		return errors.New("cluster: this build has no cluster engine")
	}
	fl, err := openCluster(context.Background(), clusterParams{resolvedCluster: *a.cluster,
		Retention: time.Duration(a.Retention), DedupWindow: time.Duration(a.DedupWindow)}, a.logger.Named("cluster"))
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	p.fleet, p.clusterKey = fl, a.cluster.key()
	p.book = &fleetBook{fl: fl, local: p.store}
	p.fbDone, p.limiters = map[string]*fallbackDone{}, map[string]*nodeShare{}
	fl.SetUnforwarded(p.unforwarded)
	return nil
}

// startFleet starts the cluster engine's workers and the erasure loop,
// once per open store.
func (p *pooledStore) startFleet() {
	p.fleetOnce.Do(func() {
		p.fleet.Start()
		p.eraseStop, p.eraseDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(p.eraseDone)
			p.eraseLoop(p.eraseStop)
		}()
	})
}

// closeFleet stops the cluster engine (attempts in flight finish or their
// leases lapse) and closes its connections.
func (p *pooledStore) closeFleet(ctx context.Context) error {
	if p.fleet == nil {
		return nil
	}
	if p.eraseStop != nil {
		close(p.eraseStop)
		<-p.eraseDone
	}
	return errors.Join(p.fleet.Stop(ctx), p.fleet.Close())
}

// accounts maps each destination to the CRM account its rate limit counts
// (lead.Accounted), the destination's own name when the sender has none.
func (a *App) accounts() map[string]string {
	out := make(map[string]string, len(a.senders))
	for name, s := range a.senders {
		out[name] = name
		if acc, ok := s.(interface{ Account() string }); ok && acc.Account() != "" {
			out[name] = acc.Account()
		}
	}
	return out
}

// forwardConfig is the local engine's config in cluster mode: one
// forwarder per destination, under its pseudo destination and under its
// own name (a lead captured before the node joined the cluster is
// forwarded too), no rate (the cluster engine applies the CRMs'), retried
// until the engine takes it, forwardConcurrency at once.
func (a *App) forwardConfig(p *pooledStore) queue.EngineConfig {
	accounts := a.accounts()
	cfg := queue.EngineConfig{Senders: map[string]lead.Sender{}, RetryFor: forwardRetryFor, Backoff: a.backoff,
		Concurrency: forwardConcurrency}
	if cfg.Backoff == (queue.Backoff{}) {
		cfg.Backoff = queue.Backoff{Min: forwardBackoffMin, Max: forwardBackoffMax}
	}
	// An account's fallback rate is its strictest destination's, as in the
	// cluster engine (queue.Rate.Stricter).
	rates := map[string]queue.Rate{}
	for name, s := range a.senders {
		r, ok := s.(lead.Rated)
		if !ok {
			continue
		}
		var rate queue.Rate
		rate.N, rate.Per = r.DefaultRate()
		if old, seen := rates[accounts[name]]; !seen || rate.Stricter(old) {
			rates[accounts[name]] = rate
		}
	}
	for name, s := range a.senders {
		f := &forwarder{p: p, dest: name, real: s, account: accounts[name], rate: rates[accounts[name]], fallbackAfter: a.cluster.FallbackAfter,
			direct: make(chan struct{}, queue.DefaultConcurrency)}
		cfg.Senders[clusterPrefix+name] = f
		cfg.Senders[name] = f
	}
	return cfg
}

// clusterStats is the cluster part of /leadproxy/stats.
type clusterStats struct {
	Node        string      `json:"node"`
	Engine      engineState `json:"engine"`
	Unforwarded int         `json:"unforwarded"` // this node's
	Nodes       []nodeState `json:"nodes,omitempty"`
}

type engineState struct {
	Up             bool    `json:"up"`
	DownForSeconds float64 `json:"down_for_seconds,omitempty"`
	Error          string  `json:"error,omitempty"`
}

// stats is /leadproxy/stats: the lead book's counts, and in cluster mode
// each node (last heartbeat, unforwarded count) and the engine's state.
func (p *pooledStore) stats(ctx context.Context) (statsJSON, error) {
	s, err := p.book.Stats()
	out := statsJSON{Stats: s}
	if p.fleet == nil {
		return out, err
	}
	c := &clusterStats{Node: p.fleet.Node(), Unforwarded: p.unforwarded(),
		Engine: engineState{Up: p.fleet.Up(), DownForSeconds: p.fleet.DownFor().Seconds()}}
	out.Cluster = c
	if err != nil {
		c.Engine.Error = "the cluster engine did not answer: " + err.Error()
		return out, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var nerr error
	if c.Nodes, nerr = p.fleet.Nodes(ctx); nerr != nil {
		c.Engine.Error = "listing the nodes: " + nerr.Error()
	}
	return out, nil
}

// writeStats answers /leadproxy/stats; with the engine unreachable, a 503
// that still shows this node's state.
func writeStats(w http.ResponseWriter, s statsJSON, err error) error {
	if err == nil {
		return writeJSON(w, http.StatusOK, s)
	}
	if s.Cluster != nil {
		return writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": s.Cluster.Engine.Error, "cluster": s.Cluster})
	}
	return err
}
