package caddymodule

// Observability: Prometheus counters (the collectors are in metrics.go),
// OpenTelemetry spans for capture, store and each delivery attempt.
//
// Tracer providers. Caddy installs no global one: its `tracing` directive
// builds a provider (one per process, shared by every `tracing` handler and
// kept across reloads while any config uses it) and puts the request's span
// in the request context. Capture and store spans come from that span's
// provider. A delivery attempt runs later, off any request, so it uses the
// provider of the most recent traced capture, remembered here; its span is a
// child of the capture span, whose W3C traceparent the lead stores
// (lead.Traceparent), so a lead's attempts, however late, sit in the trace
// of the request that captured it. After a restart, attempts made before
// the first traced capture have metrics but no spans. No span carries field
// values or a CRM's error text: those can quote the visitor's data.

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/leadproxy/leadproxy/lead"
)

func countInject(result string)            { injectTotal.WithLabelValues(result).Inc() }
func countCaptured(form, mechanism string) { capturedTotal.WithLabelValues(form, mechanism).Inc() }
func countCaptureFailure(reason string)    { captureFailedTotal.WithLabelValues(reason).Inc() }
func countCollectRejected(reason string)   { collectRejectedTotal.WithLabelValues(reason).Inc() }

// countScan counts a page head read to a verdict, by the cache or the tokenizer.
func countScan(cached bool) {
	if cached {
		injectScansTotal.WithLabelValues("cache").Inc()
	} else {
		injectScansTotal.WithLabelValues("tokenizer").Inc()
	}
}

// tracerName is the instrumentation scope of every leadproxy span.
const tracerName = "github.com/leadproxy/leadproxy"

// Span names.
const (
	spanCapture  = "leadproxy.capture"
	spanStore    = "leadproxy.store"
	spanDelivery = "leadproxy.delivery"
)

// Delivery outcomes, the outcome label of leadproxy_deliveries_total.
const (
	outcomeDelivered = "delivered" // the CRM took it
	outcomeRetry     = "retry"     // a retryable error: tried again later
	outcomeFailed    = "failed"    // a permanent error: not tried again unless retried by hand
	outcomeCancelled = "cancelled" // Caddy stopped mid-attempt; the delivery went back to the queue
)

var deliveryOutcomes = []string{outcomeDelivered, outcomeRetry, outcomeFailed}

// lastTracerProvider is the provider of the most recent traced capture.
var lastTracerProvider atomic.Value // tracerProviderBox

type tracerProviderBox struct{ tp trace.TracerProvider }

func deliveryTracerProvider() trace.TracerProvider {
	if b, ok := lastTracerProvider.Load().(tracerProviderBox); ok {
		return b.tp
	}
	return nil
}

// startCaptureSpan starts the capture span from the request's tracer
// provider (Caddy installs no global one) and stores its traceparent on
// the lead; end records the outcome. Without Caddy's `tracing` there is no
// request span, and nothing is traced.
func startCaptureSpan(ctx context.Context, r *http.Request, l *lead.Lead) (context.Context, func(error)) {
	parent := trace.SpanFromContext(ctx) // ctx derives from r.Context()
	if !parent.SpanContext().IsValid() {
		return ctx, func(error) {}
	}
	tp := parent.TracerProvider()
	lastTracerProvider.Store(tracerProviderBox{tp})
	ctx, span := tp.Tracer(tracerName).Start(ctx, spanCapture, trace.WithAttributes(
		attribute.String("leadproxy.form", l.Form),
		attribute.String("leadproxy.mechanism", l.Mechanism),
		attribute.String("leadproxy.site", l.Site),
		attribute.String("url.path", r.URL.Path),
	))
	l.Traceparent = traceparent(ctx)
	return ctx, func(err error) {
		if l.ID != "" {
			span.SetAttributes(attribute.String("leadproxy.lead_id", l.ID))
		}
		endSpan(span, err, "lead not stored")
	}
}

// startStoreSpan wraps the durable write of a lead, under the capture span.
func startStoreSpan(ctx context.Context, dests []string) (context.Context, func(stored *lead.Lead, dup bool, err error)) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return ctx, func(*lead.Lead, bool, error) {}
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, spanStore,
		trace.WithAttributes(attribute.StringSlice("leadproxy.destinations", dests)))
	return ctx, func(stored *lead.Lead, dup bool, err error) {
		if stored != nil {
			span.SetAttributes(attribute.String("leadproxy.lead_id", stored.ID), attribute.Bool("leadproxy.duplicate", dup))
		}
		endSpan(span, err, "store failed")
	}
}

// observeDelivery is the engine's hook around each delivery attempt
// (queue.EngineConfig.Observe): metrics and the attempt's span. The queue
// records the attempt itself in the delivery's history.
func observeDelivery(ctx context.Context, dest string, l *lead.Lead) (context.Context, func(string, error)) {
	start := time.Now()
	var span trace.Span
	if tp := deliveryTracerProvider(); tp != nil {
		parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": l.Traceparent})
		ctx, span = tp.Tracer(tracerName).Start(parent, spanDelivery, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("leadproxy.destination", dest), attribute.String("leadproxy.lead_id", l.ID)))
	}
	attemptCtx := ctx
	return ctx, func(crmID string, err error) {
		took := time.Since(start)
		outcome := deliveryOutcome(attemptCtx, err)
		deliveriesTotal.WithLabelValues(dest, outcome).Inc()
		if outcome != outcomeCancelled {
			deliveryDuration.WithLabelValues(dest).Observe(took.Seconds())
		}
		status := lead.HTTPStatusOf(err)
		if span == nil {
			return
		}
		span.SetAttributes(attribute.String("leadproxy.outcome", outcome))
		if crmID != "" {
			span.SetAttributes(attribute.String("leadproxy.crm_id", crmID))
		}
		if status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		endSpan(span, err, "delivery "+outcome)
	}
}

func deliveryOutcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return outcomeDelivered
	case errors.Is(ctx.Err(), context.Canceled):
		return outcomeCancelled
	case lead.IsPermanent(err):
		return outcomeFailed
	}
	return outcomeRetry
}

// endSpan ends a span with an error status whose description is generic:
// error texts can quote the visitor's data.
func endSpan(span trace.Span, err error, what string) {
	if err != nil {
		span.SetStatus(codes.Error, what)
	}
	span.End()
}

// traceparent is the W3C traceparent of ctx's span.
func traceparent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c.Get("traceparent")
}

// initDeliveryMetrics gives each destination its series at zero, so rates
// and alerts work before the first attempt.
func initDeliveryMetrics(dests []string) {
	for _, d := range dests {
		for _, o := range deliveryOutcomes {
			deliveriesTotal.WithLabelValues(d, o)
		}
		deliveryDuration.WithLabelValues(d)
	}
}
