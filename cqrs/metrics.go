package cqrs

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics exports the engine's state. Positions and lag are read at scrape
// time from the runners, so they are never stale.
type metrics struct {
	e            *Engine
	batchSeconds *prometheus.HistogramVec

	position      *prometheus.Desc
	lagPositions  *prometheus.Desc
	lagSeconds    *prometheus.Desc
	failed        *prometheus.Desc
	rebuilding    *prometheus.Desc
	rebuildRatio  *prometheus.Desc
	skipped       *prometheus.Desc
	eventsApplied *prometheus.Desc
	subscriptions *prometheus.Desc
}

func newMetrics(e *Engine) *metrics {
	label := []string{"projection"}
	return &metrics{
		e: e,
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ordo_projection_batch_seconds",
			Help:    "Time to read and apply one batch of events to a projection.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, label),
		position:      prometheus.NewDesc("ordo_projection_position", "Last log position the projection's served rows applied.", label, nil),
		lagPositions:  prometheus.NewDesc("ordo_projection_lag_positions", "Log positions the projection is behind the log head.", label, nil),
		lagSeconds:    prometheus.NewDesc("ordo_projection_lag_seconds", "Age of the oldest event the projection has not applied.", label, nil),
		failed:        prometheus.NewDesc("ordo_projection_failed", "1 when the projection (or its rebuild) stopped at an event it cannot apply, or its storage fails.", label, nil),
		rebuilding:    prometheus.NewDesc("ordo_projection_rebuilding", "1 while the projection is rebuilt into a shadow generation.", label, nil),
		rebuildRatio:  prometheus.NewDesc("ordo_projection_rebuild_ratio", "Progress of the running rebuild, 0..1.", label, nil),
		skipped:       prometheus.NewDesc("ordo_projection_skipped_events", "Events the served generation skipped (for example without the key field).", label, nil),
		eventsApplied: prometheus.NewDesc("ordo_projection_events_processed_total", "Events this process read and applied (or filtered out) for the projection.", label, nil),
		subscriptions: prometheus.NewDesc("ordo_subscriptions_open", "Open server-sent event subscriptions.", nil, nil),
	}
}

// Collectors returns the engine's Prometheus collectors, for the node's
// registry.
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.metrics, e.metrics.batchSeconds}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.position, m.lagPositions, m.lagSeconds, m.failed, m.rebuilding, m.rebuildRatio, m.skipped, m.eventsApplied, m.subscriptions} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range m.e.Status() {
		gauge(m.position, float64(s.Position), s.Name)
		gauge(m.lagPositions, float64(s.LagPositions), s.Name)
		gauge(m.lagSeconds, float64(s.LagMs)/1000, s.Name)
		gauge(m.failed, flag(s.Status == StatusFailed), s.Name)
		gauge(m.rebuilding, flag(s.Rebuilding), s.Name)
		gauge(m.rebuildRatio, s.RebuildPercent/100, s.Name)
		gauge(m.skipped, float64(s.SkippedEvents), s.Name)
		ch <- prometheus.MustNewConstMetric(m.eventsApplied, prometheus.CounterValue, float64(s.EventsApplied), s.Name)
	}
	ch <- prometheus.MustNewConstMetric(m.subscriptions, prometheus.GaugeValue, float64(m.e.subscribers.open()))
}
