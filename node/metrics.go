package node

import (
	"time"

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
	forwards *prometheus.CounterVec
	batches  prometheus.Counter
	requests prometheus.Counter
	events   prometheus.Counter
	fsyncs   prometheus.Counter
	fetched  prometheus.Counter
	halted   prometheus.Gauge

	// Where the time goes, per stage.
	submitSeconds   prometheus.Histogram // HTTP submit to verified reply bundle
	roundSeconds    prometheus.Histogram // one driver round: inputs, protocol write, sends
	protocolWrite   prometheus.Histogram // the group-committed protocol-state write
	verifySeconds   prometheus.Histogram // decoding and batch-verifying one chunk of inbound frames
	applySeconds    prometheus.Histogram // applying one committed batch (before the fsync)
	logSyncSeconds  prometheus.Histogram // the executor's group fsync
	batchRequests   prometheus.Histogram // requests per executed batch
	verifyChunkSigs prometheus.Histogram // signatures per verification chunk
	submitCheckSigs prometheus.Histogram // HTTP submit signatures per batch check
	// requests per batch submit (POST /v1/requests/batch)
	submitBatchRequests prometheus.Histogram
}

// secondsBuckets span 50 µs to about 3.3 s.
var secondsBuckets = prometheus.ExponentialBuckets(50e-6, 2, 17)

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
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
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordo_requests_forwarded_total", Help: "Requests submitted here and forwarded to other replicas: to the primary, or to all when no reply came in time (often means a primary in trouble).",
		}, []string{"to"}),
		batches:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_batches_executed_total", Help: "Committed batches applied to the event log."}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_requests_executed_total", Help: "Client requests executed."}),
		events:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_events_appended_total", Help: "Events appended to the log."}),
		fsyncs:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_protocol_fsyncs_total", Help: "Group-committed writes of protocol state (each before votes leave)."}),
		fetched:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ordo_entries_fetched_total", Help: "Entries fetched from peers while catching up."}),
		halted:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ordo_halted", Help: "1 when storage failed and this replica stopped voting or executing."}),

		submitSeconds:       histogram("ordo_submit_seconds", "HTTP submits answered with a reply bundle: from the request's arrival to the answer.", secondsBuckets),
		roundSeconds:        histogram("ordo_driver_round_seconds", "One round of the protocol driver: its inputs, the protocol-state write and the sends.", secondsBuckets),
		protocolWrite:       histogram("ordo_protocol_write_seconds", "The durable write of a round's protocol state, before its votes leave.", secondsBuckets),
		verifySeconds:       histogram("ordo_verify_seconds", "Decoding and batch-verifying one chunk of inbound frames.", secondsBuckets),
		applySeconds:        histogram("ordo_apply_seconds", "Applying one committed batch to the log and ledger (before the fsync).", secondsBuckets),
		logSyncSeconds:      histogram("ordo_log_sync_seconds", "The executor's group fsync of applied batches.", secondsBuckets),
		batchRequests:       histogram("ordo_batch_requests", "Client requests per executed batch.", prometheus.ExponentialBuckets(1, 2, 12)),
		verifyChunkSigs:     histogram("ordo_verify_chunk_signatures", "Signatures checked together in one verification chunk.", prometheus.ExponentialBuckets(1, 2, 12)),
		submitCheckSigs:     histogram("ordo_submit_check_signatures", "HTTP submits whose signatures the gateway checked together.", prometheus.ExponentialBuckets(1, 2, 8)),
		submitBatchRequests: histogram("ordo_submit_batch_requests", "Signed requests per batch submit (POST /v1/requests/batch).", prometheus.ExponentialBuckets(1, 2, 9)),
	}
	m.reg.MustRegister(m.refusals, m.submits, m.forwards, m.batches, m.requests, m.events, m.fsyncs, m.fetched, m.halted,
		m.submitSeconds, m.roundSeconds, m.protocolWrite, m.verifySeconds, m.applySeconds, m.logSyncSeconds,
		m.batchRequests, m.verifyChunkSigs, m.submitCheckSigs, m.submitBatchRequests,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) refused(reason string) { m.refusals.WithLabelValues(reason).Inc() }

// since observes the seconds elapsed since start.
func since(h prometheus.Histogram, start time.Time) { h.Observe(time.Since(start).Seconds()) }

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
