package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics is one node's Prometheus registry (not the global one: tests run
// several nodes in one process).
type metrics struct {
	reg      *prometheus.Registry
	refusals *prometheus.CounterVec
	submits  *prometheus.CounterVec
	batches  prometheus.Counter
	requests prometheus.Counter
	events   prometheus.Counter
	fsyncs   prometheus.Counter
	fetched  prometheus.Counter
	halted   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordo_refused_total", Help: "Inputs refused, by reason (bad signatures, malformed messages, unknown frames, ...).",
		}, []string{"reason"}),
		submits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordo_http_requests_total", Help: "Client requests submitted over HTTP, by outcome code.",
		}, []string{"code"}),
		batches:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_batches_executed_total", Help: "Committed batches applied to the event log."}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_requests_executed_total", Help: "Client requests executed."}),
		events:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_events_appended_total", Help: "Events appended to the log."}),
		fsyncs:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_protocol_fsyncs_total", Help: "Group-committed writes of protocol state (each before votes leave)."}),
		fetched:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_entries_fetched_total", Help: "Entries fetched from peers while catching up."}),
		halted:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ordo_halted", Help: "1 when storage failed and this replica stopped voting or executing."}),
	}
	m.reg.MustRegister(m.refusals, m.submits, m.batches, m.requests, m.events, m.fsyncs, m.fetched, m.halted,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }
