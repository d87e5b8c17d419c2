package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordoledger/ordo/p2p"
	"github.com/ordoledger/ordo/pbft"
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

// registerLive exports the transport's counters and the core's position as
// they are when scraped.
func (n *Node) registerLive() {
	counter := func(name, help string, f func(p2p.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(n.host.Stats())) })
	}
	gauge := func(name, help string, f func(*pbft.Status) uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f(n.status.Load())) })
	}
	n.metrics.reg.MustRegister(
		counter("ordo_p2p_frames_sent_total", "Protocol frames flushed to peers.", func(s p2p.Stats) uint64 { return s.FramesSent }),
		counter("ordo_p2p_frames_received_total", "Protocol frames received from peers.", func(s p2p.Stats) uint64 { return s.FramesReceived }),
		counter("ordo_p2p_frames_dropped_total", "Frames dropped because a peer's send queue was full.", func(s p2p.Stats) uint64 { return s.FramesDropped }),
		counter("ordo_p2p_frames_refused_total", "Frames refused: too large, unknown peer, no memory.", func(s p2p.Stats) uint64 { return s.FramesRefused }),
		counter("ordo_p2p_frames_lost_total", "Frames on a stream that failed before they were flushed.", func(s p2p.Stats) uint64 { return s.FramesLost }),
		counter("ordo_p2p_reconnects_total", "Protocol streams re-established after a failure.", func(s p2p.Stats) uint64 { return s.Reconnects }),
		gauge("ordo_view", "The replica's current view.", func(s *pbft.Status) uint64 { return s.View }),
		gauge("ordo_committed_seq", "Highest seq known committed.", func(s *pbft.Status) uint64 { return s.Committed }),
		gauge("ordo_delivered_seq", "Highest seq the core delivered for execution.", func(s *pbft.Status) uint64 { return s.Delivered }),
		gauge("ordo_stable_checkpoint", "The last stable checkpoint (low watermark).", func(s *pbft.Status) uint64 { return s.StableCheckpoint }),
		gauge("ordo_equivocations_total", "Conflicting signed messages seen from one replica (evidence).", func(s *pbft.Status) uint64 { return s.Equivocations }),
		gauge("ordo_view_changes_total", "View changes this replica started.", func(s *pbft.Status) uint64 { return s.ViewChanges }),
		gauge("ordo_pending_requests", "Client requests waiting to be ordered.", func(s *pbft.Status) uint64 { return uint64(s.Pending) }),
	)
}
