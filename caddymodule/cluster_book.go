package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/leadproxy/leadproxy/lead"
	"github.com/leadproxy/leadproxy/queue"
)

// fleetBook is the lead book in cluster mode: the fleet's list, with this
// node's local copies behind it for a lead not forwarded yet (Get, Retry)
// and erased with it (Delete). Every call is counted and traced by
// clusterCallHook.
type fleetBook struct {
	fl    fleet
	local *queue.Store
}

var _ leadBook = (*fleetBook)(nil)

// List is the fleet's list; the dry-run leads, which stay on the node that
// held them until resend releases them, are this node's (status=dry_run).
func (b *fleetBook) List(f queue.Filter) (leads []*lead.Lead, next string, err error) {
	if f.Status == lead.StatusDryRun {
		return b.local.List(f)
	}
	leads, next, err = b.fl.List(f)
	return leads, next, b.down(err)
}

// Get reads the fleet's lead; one this node captured but has not forwarded
// yet (the engine down or not connected yet, or a moment after capture) is
// read locally. A
// local copy already forwarded is not shown: the engine not finding it
// means it was erased (the copy goes at the next erasure round).
func (b *fleetBook) Get(id string) (l *lead.Lead, err error) {
	l, err = b.fl.Get(id)
	if err != nil {
		if ll, lerr := b.local.Get(id); lerr == nil && unforwarded(ll) {
			return ll, nil
		}
	}
	return l, b.down(err)
}

// unforwarded reports whether a local copy still waits to be forwarded
// for some destination.
func unforwarded(l *lead.Lead) bool {
	for _, d := range l.Deliveries {
		if d.Status != lead.StatusDelivered {
			return true
		}
	}
	return false
}

// Retry resends the fleet's lead; one this node has not forwarded yet (not
// in the engine, or the engine not reachable or not connected yet) is
// retried locally: its forward is tried again at once.
func (b *fleetBook) Retry(id string) (err error) {
	err = b.fl.Retry(id)
	if err != nil {
		if ll, lerr := b.local.Get(id); lerr == nil && unforwarded(ll) {
			if lerr := b.local.Retry(id); lerr == nil {
				return nil
			}
		} else if errors.Is(err, queue.ErrNotFound) && b.local.Retry(id) == nil {
			return nil
		}
	}
	return b.down(err)
}

// Delete erases the lead fleet-wide (the engine keeps a tombstone every
// node applies to its local copies) and this node's copy at once.
func (b *fleetBook) Delete(id string) (err error) {
	err = b.fl.Delete(id)
	lerr := b.local.Delete(id)
	if lerr == nil {
		erasedLocalTotal.Inc()
	}
	if errors.Is(err, queue.ErrNotFound) && lerr == nil {
		return nil
	}
	return b.down(err)
}

func (b *fleetBook) Stats() (s queue.Stats, err error) {
	s, err = b.fl.Stats()
	return s, b.down(err)
}

func (b *fleetBook) Each(from, to time.Time, fn func(*lead.Lead) bool) (err error) {
	return b.down(b.fl.Each(from, to, fn))
}

// SetPreview and SendDryRun act on this node's held leads: a dry-run lead
// is not forwarded until SendDryRun releases it (the forwarder then moves
// it to the fleet as it does any other).
func (b *fleetBook) SetPreview(ctx context.Context, id, dest string, preview []lead.Request, errMsg string) error {
	return b.local.SetPreview(ctx, id, dest, preview, errMsg)
}

func (b *fleetBook) SendDryRun(id string) (int, error) { return b.local.SendDryRun(id) }

func (b *fleetBook) LoadToken(key string) (v string, err error) {
	return b.fl.LoadToken(key)
}

func (b *fleetBook) SaveToken(key, value string) (err error) {
	return b.fl.SaveToken(key, value)
}

// down marks an error the engine gave while unreachable, so the admin API
// and the dashboard answer 503 rather than blame the request.
func (b *fleetBook) down(err error) error {
	if err != nil && !errors.Is(err, queue.ErrNotFound) && !b.fl.Up() {
		return &engineDownError{err}
	}
	return err
}

type engineDownError struct{ err error }

func (e *engineDownError) Error() string { return "cluster engine unreachable: " + e.err.Error() }
func (e *engineDownError) Unwrap() error { return e.err }

// isEngineDown reports whether err says the cluster engine is unreachable.
func isEngineDown(err error) bool {
	var e *engineDownError
	return errors.As(err, &e)
}

// Metrics of the cluster engine's calls; registered with the others
// (metrics.go).
var (
	clusterCallsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_cluster_calls_total", Help: "Calls to the cluster engine (PostgreSQL), by call (cluster.Ops: forward, claim, record, list, get, heartbeat, ...) and outcome (ok, not_found, error).",
	}, []string{"call", "outcome"})
	clusterCallDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "leadproxy_cluster_call_duration_seconds", Help: "Time of one call to the cluster engine, by call.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	}, []string{"call"})
	fallbackTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_cluster_fallback_deliveries_total", Help: "Deliveries this node made itself while the cluster engine was unreachable (fallback_after), by destination and outcome.",
	}, []string{"destination", "outcome"})
	clusterUp = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "leadproxy_cluster_up", Help: "1 when the last call to the cluster engine succeeded, 0 when it is unreachable; only in cluster mode.",
	}, func() float64 {
		if p := current.Load(); p != nil && p.fleet != nil && p.fleet.Up() {
			return 1
		}
		return 0
	})
	clusterUnforwarded = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "leadproxy_cluster_unforwarded", Help: "Leads captured on this node and not yet forwarded to the cluster engine.",
	}, func() float64 {
		if p := current.Load(); p != nil && p.fleet != nil {
			return float64(p.unforwarded())
		}
		return 0
	})
	erasedLocalTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leadproxy_cluster_erased_local_total", Help: "Local copies of leads this node erased after the fleet erased them (admin delete, dashboard, retention).",
	})
	clusterCollectors = []prometheus.Collector{clusterCallsTotal, clusterCallDuration, fallbackTotal, clusterUp, clusterUnforwarded, erasedLocalTotal}
)

// adminOps are the engine calls made for the admin API and the dashboard:
// with a tracer provider known (observe.go) each is a span of its own; the
// engine's background calls (claims, heartbeats) are spans only under a
// traced caller, or they would flood the trace store.
var adminOps = map[string]bool{"list": true, "get": true, "retry": true, "delete": true, "stats": true, "each": true, "nodes": true}

// clusterCallHook is cluster.Config.Calls: every call into the engine
// counted and timed by operation, and a span under the caller's (a
// forward's, a delivery's) or, for the admin API's calls, a span of its own.
func clusterCallHook(ctx context.Context, op string) (context.Context, func(error)) {
	start := time.Now()
	var span trace.Span
	if parent := trace.SpanFromContext(ctx); parent.SpanContext().IsValid() {
		ctx, span = parent.TracerProvider().Tracer(tracerName).Start(ctx, "leadproxy.cluster."+op, trace.WithSpanKind(trace.SpanKindClient))
	} else if tp := deliveryTracerProvider(); tp != nil && adminOps[op] {
		ctx, span = tp.Tracer(tracerName).Start(ctx, "leadproxy.cluster."+op, trace.WithSpanKind(trace.SpanKindClient))
	}
	return ctx, func(err error) {
		outcome := "ok"
		switch {
		case errors.Is(err, queue.ErrNotFound):
			outcome, err = "not_found", nil
		case err != nil:
			outcome = "error"
		}
		clusterCallsTotal.WithLabelValues(op, outcome).Inc()
		clusterCallDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if span != nil {
			span.SetAttributes(attribute.String("leadproxy.outcome", outcome))
			endSpan(span, err, "cluster "+op+" failed")
		}
	}
}

// startForwardSpan wraps one forward, as a child of the lead's capture
// span (its stored traceparent), like a delivery attempt.
func startForwardSpan(ctx context.Context, dest string, l *lead.Lead) (context.Context, func(error)) {
	var span trace.Span
	if tp := deliveryTracerProvider(); tp != nil {
		parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": l.Traceparent})
		ctx, span = tp.Tracer(tracerName).Start(parent, "leadproxy.cluster.forward", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("leadproxy.destination", dest), attribute.String("leadproxy.lead_id", l.ID)))
	}
	return ctx, func(err error) {
		if span != nil {
			endSpan(span, err, "forward failed")
		}
	}
}
