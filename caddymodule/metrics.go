package caddymodule

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collectors are created once per process and registered in every config's
// registry (Caddy makes a new one per config load and serves it on the
// admin endpoint's /metrics), so counts survive reloads (the
// caddy-ratelimit pattern). The app, the leadproxy handler and the
// dashboard each register them: a config may hold any of them alone.
var (
	capturedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_leads_captured_total", Help: "Leads captured, by form and mechanism (those held by dry_run are in leadproxy_leads_dry_run_total).",
	}, []string{"form", "mechanism"})
	captureFailedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_capture_failures_total", Help: "Form posts not captured, by reason (too_large, read, spool, parse, no_contact, store, panic; refused by a budget: budget_client, budget_site, store_full; a marker cookie without a valid token: marker_unsigned, marker_forged, marker_stale).",
	}, []string{"reason"})
	deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_deliveries_total", Help: "Delivery attempts, by destination and outcome: delivered, retry (a retryable error), failed (a permanent error), cancelled (Caddy stopped mid-attempt).",
	}, []string{"destination", "outcome"})
	deliveryDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "leadproxy_delivery_duration_seconds", Help: "Time of one delivery attempt, by destination.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"destination"})
	injectTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_inject_total", Help: "HTML responses seen by the injector, by result.",
	}, []string{"result"})
	injectScansTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_inject_scans_total", Help: "HTML heads read to a verdict, by source: cache (the page started as the last one on its path did) or tokenizer.",
	}, []string{"source"})
	collectRejectedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leadproxy_collect_rejected_total", Help: "Script reports rejected, by reason.",
	}, []string{"reason"})
	queueDepth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "leadproxy_queue_depth", Help: "Deliveries not yet delivered or failed.",
	}, func() float64 { return statValue(func(s statsView) float64 { return float64(s.QueueDepth) }) })
	oldestPending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "leadproxy_oldest_pending_seconds", Help: "Age of the oldest undelivered delivery.",
	}, func() float64 { return statValue(func(s statsView) float64 { return s.OldestPendingSeconds }) })
)

type statsView struct {
	QueueDepth           int
	OldestPendingSeconds float64
}

// statValue reads the current store's stats for the gauges, at most once a
// second however often /metrics is scraped.
func statValue(f func(statsView) float64) float64 {
	p := current.Load()
	if p == nil {
		return 0
	}
	statsCache.Lock()
	defer statsCache.Unlock()
	if time.Since(statsCache.at) > time.Second {
		if s, err := p.book.Stats(); err == nil {
			statsCache.v = statsView{QueueDepth: s.QueueDepth, OldestPendingSeconds: s.OldestPendingSeconds}
			statsCache.at = time.Now()
		}
	}
	return f(statsCache.v)
}

var statsCache struct {
	sync.Mutex
	at time.Time
	v  statsView
}

func registerMetrics(reg prometheus.Registerer) error {
	collectors := []prometheus.Collector{capturedTotal, captureFailedTotal, deliveriesTotal, deliveryDuration,
		injectTotal, injectScansTotal, collectRejectedTotal, queueDepth, oldestPending, formsFlagged, dryRunTotal}
	return registerCollectors(reg, append(collectors, visitCollectors...))
}

// registerCollectors registers cs in reg; one already there is fine.
func registerCollectors(reg prometheus.Registerer, cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
