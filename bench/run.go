package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/node"
	"github.com/ordoledger/ordo/pbft"
)

// Defaults and bounds of a run.
const (
	DefaultNodes        = 4
	DefaultClients      = 64
	DefaultPayloadBytes = 128
	DefaultDuration     = 30 * time.Second
	DefaultWarmup       = 3 * time.Second
	// DefaultSubmitBatch is ordo bench's --submit-batch: the clients share
	// batch submits of up to 64 requests per node (client.Batcher).
	DefaultSubmitBatch = 64
	// DurationMin and DurationMax bound the measured window; DurationMax
	// also bounds the per-second series.
	DurationMin = time.Second
	DurationMax = 24 * time.Hour
	// WarmupMax bounds the unmeasured start.
	WarmupMax = 10 * time.Minute
	// sampleEvery is the time-series resolution.
	sampleEvery = time.Second
	// sampleTimeout bounds one /v1/status or /v1/projections call of the sampler.
	sampleTimeout = 2 * time.Second
	// probeTimeout bounds the first append, which checks the setup (admission,
	// genesis, payload size) before any load.
	probeTimeout = 60 * time.Second
	// projectionsBytesMax bounds a /v1/projections answer.
	projectionsBytesMax = 1 << 20
	// progressThrottle bounds how often the progress bar redraws.
	progressThrottle = 200 * time.Millisecond
)

// Options configure Run.
type Options struct {
	// Nodes is the size of the local network Run launches when Targets is
	// empty.
	Nodes int
	// Targets are the API URLs of a running network; Genesis is its genesis.
	Targets []string
	Genesis *node.Genesis
	// Key is used by every worker when Genesis admits only listed clients;
	// with open admission each worker has a key of its own and Key is unused.
	Key          crypto.PrivateKey
	Clients      int
	PayloadBytes int
	Rate         float64 // events/s, 0 = closed loop
	// SubmitBatch, if above 0, sends the clients' requests to each node in
	// shared batch submits of up to this many (client.Batcher); 0 gives each
	// request an HTTP exchange of its own.
	SubmitBatch int
	Duration    time.Duration
	Warmup      time.Duration
	// Executable is the ordo binary for the local network.
	Executable string
	// ClusterParent is where the local network's directory is made (default
	// os.TempDir()); Keep leaves that directory in place.
	ClusterParent string
	Keep          bool
	// ProfileDir, if set, receives a CPU profile of each local node
	// (nodeI.cpu.pprof); see ClusterConfig.ProfileDir.
	ProfileDir string
	// Log receives one line per step; Progress, a progress bar; Logger, the
	// clients' warnings about refused reply bundles. Each may be nil.
	Log      io.Writer
	Progress io.Writer
	Logger   *slog.Logger
}

// Validate checks o's bounds and combinations.
func (o *Options) Validate() error {
	switch {
	case len(o.Targets) == 0 && (o.Nodes < NodesMin || o.Nodes > NodesMax):
		return fmt.Errorf("--nodes %d: want %d..%d", o.Nodes, NodesMin, NodesMax)
	case len(o.Targets) == 0 && o.Executable == "":
		return errors.New("no ordo executable to start the local network with")
	case len(o.Targets) > client.NodesMax:
		return fmt.Errorf("%d node URLs, at most %d", len(o.Targets), client.NodesMax)
	case len(o.Targets) > 0 && o.Genesis == nil:
		return errors.New("a genesis is needed to verify the network's replies")
	case o.Clients < 1 || o.Clients > WorkersMax:
		return fmt.Errorf("--clients %d: want 1..%d", o.Clients, WorkersMax)
	case o.PayloadBytes < PayloadBytesMin || o.PayloadBytes > PayloadBytesMax:
		return fmt.Errorf("--payload %d: want %d..%d bytes", o.PayloadBytes, PayloadBytesMin, PayloadBytesMax)
	case o.Rate < 0 || o.Rate > RateMax:
		return fmt.Errorf("--rate %g: want 0 (closed loop) up to %g events/s", o.Rate, RateMax)
	case o.SubmitBatch < 0 || o.SubmitBatch > pbft.SubmitBatchMax:
		return fmt.Errorf("--submit-batch %d: want 0 (off) up to %d", o.SubmitBatch, pbft.SubmitBatchMax)
	case o.Duration < DurationMin || o.Duration > DurationMax:
		return fmt.Errorf("--duration %v: want %v..%v", o.Duration, DurationMin, DurationMax)
	case o.Warmup < 0 || o.Warmup > WarmupMax:
		return fmt.Errorf("--warmup %v: want 0..%v", o.Warmup, WarmupMax)
	}
	if o.Genesis != nil && o.Genesis.Admission.Mode != node.AdmissionOpen {
		if o.Key.IsZero() {
			return errors.New("the genesis admits only listed clients: give --key with an admitted key")
		}
		if !o.Genesis.Admits(o.Key.Public()) {
			return fmt.Errorf("the genesis does not admit client key %v", o.Key.Public())
		}
	}
	return nil
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "ordo bench: "+format+"\n", args...)
	}
}

// Run measures a network: a local one it launches and stops, or the one at
// o.Targets. It fails if no request completed in the measured window.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	started := time.Now()
	// Measured before the network starts, so nothing competes with it.
	sig, err := MeasureSigVerify()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	o.logf("one signature in a batch of %d verifies in %.0f ns (%d cores)", SigBatchSize, sig.PerSignatureNs, sig.Cores)
	r := &runner{o: o, sig: sig, started: started}
	if len(o.Targets) == 0 {
		cl, err := Launch(ctx, ClusterConfig{
			Nodes: o.Nodes, Executable: o.Executable, ParentDir: o.ClusterParent, Keep: o.Keep, ProfileDir: o.ProfileDir, Log: o.Log,
		})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		r.cluster = cl
		r.targets, r.genesis = cl.APIs(), cl.Genesis
		r.procs = cl.Processes()
		res, err := r.run(ctx)
		if stopErr := cl.Stop(); stopErr != nil {
			// The measurement stands; a node that would not stop is news
			// for the log, not a failed benchmark.
			o.logf("warning: %v", stopErr)
		}
		return res, err
	}
	r.targets, r.genesis = o.Targets, o.Genesis
	return r.run(ctx)
}

// runner is one run's state.
type runner struct {
	o       Options
	sig     SigVerify
	started time.Time
	cluster *Cluster // nil with targets
	targets []string
	genesis *node.Genesis
	procs   []Process
	http    *http.Client
	batcher *client.Batcher // nil without SubmitBatch
	status  *client.Client
	// noProjections is set once the sampled node answered 404 for
	// /v1/projections.
	noProjections bool
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = r.o.Clients
	defer tr.CloseIdleConnections()
	r.http = &http.Client{Transport: tr}
	if r.o.SubmitBatch > 0 {
		var err error
		if r.batcher, err = client.NewBatcher(client.BatcherConfig{HTTPClient: r.http, Max: r.o.SubmitBatch}); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer r.batcher.Close()
	}
	submitters, keys, err := r.clients()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r.status, err = client.New(client.Config{Nodes: r.targets, Timeout: sampleTimeout, HTTPClient: r.http, Logger: r.o.Logger})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := r.probe(ctx, submitters[0]); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	mode := "closed loop"
	if r.o.Rate > 0 {
		mode = fmt.Sprintf("open loop at %g events/s", r.o.Rate)
	}
	r.o.logf("load: %d clients, %d-byte events, %s, %v warmup, %v measured", r.o.Clients, r.o.PayloadBytes, mode, r.o.Warmup, r.o.Duration)
	load, err := StartLoad(ctx, LoadConfig{Submitters: submitters, PayloadBytes: r.o.PayloadBytes, Rate: r.o.Rate})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer load.Stop()
	bar := r.newBar()
	res, err := r.measure(ctx, load, bar)
	if bar != nil {
		// Finish clears the bar; a failed redraw of stderr changes nothing.
		_ = bar.Finish()
	}
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.Summary.ClientKeys = keys
	if res.Summary.Completed == 0 {
		return nil, fmt.Errorf("bench: no request completed in the measured window (%d failed; first error: %s)",
			res.Summary.Failed, res.Summary.FirstError)
	}
	return res, nil
}

// clients makes one client per worker, each starting at a different node.
// With open admission each has its own key.
func (r *runner) clients() ([]Submitter, int, error) {
	shared := r.genesis.Admission.Mode != node.AdmissionOpen
	out := make([]Submitter, r.o.Clients)
	statements := client.NewStatementCache()
	for i := range out {
		key := r.o.Key
		if !shared {
			k, err := crypto.GenerateKey(nil)
			if err != nil {
				return nil, 0, fmt.Errorf("client key: %w", err)
			}
			key = k
		}
		nodes := make([]string, 0, len(r.targets))
		for k := range r.targets {
			nodes = append(nodes, r.targets[(i+k)%len(r.targets)])
		}
		c, err := client.New(client.Config{
			Nodes: nodes, Key: key, Chain: r.genesis.Hash(), Validators: r.genesis.Keys(),
			RequestBytesMax: r.genesis.Params.RequestBytesMax, HTTPClient: r.http, Logger: r.o.Logger,
			Statements: statements, Batcher: r.batcher,
		})
		if err != nil {
			return nil, 0, err
		}
		out[i] = c
	}
	if shared {
		return out, 1, nil
	}
	return out, len(out), nil
}

// probe appends one event of the configured size, so that a refused key, a
// wrong genesis or an oversized payload fails the run at once, with the
// network's reason.
func (r *runner) probe(ctx context.Context, s Submitter) error {
	payload, err := Payload(r.o.PayloadBytes)
	if err != nil {
		return err
	}
	l := &Load{payload: payload, run: "probe"}
	w, err := l.newWorker(0)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	reply, err := s.Submit(ctx, l.command(w))
	if err != nil {
		return fmt.Errorf("the first append failed: %w", err)
	}
	if reply.Result.Code != ledger.CodeOK {
		return fmt.Errorf("the first append was refused: %s: %s", reply.Result.Code, reply.Result.Message)
	}
	return nil
}

func (r *runner) newBar() *progressbar.ProgressBar {
	if r.o.Progress == nil {
		return nil
	}
	total := int64((r.o.Warmup + r.o.Duration + time.Second - 1) / time.Second)
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(r.o.Progress),
		progressbar.OptionSetDescription("warming up"),
		progressbar.OptionSetItsString("s"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(progressThrottle),
		progressbar.OptionClearOnFinish(),
	)
}

// statusSample is one reading of the sampled node's last_position and
// executed_seq.
type statusSample struct {
	ok       bool
	position uint64
	seq      uint64
	at       time.Time
}

func (r *runner) sampleStatus(ctx context.Context) statusSample {
	ctx, cancel := context.WithTimeout(ctx, sampleTimeout)
	defer cancel()
	st, err := r.status.StatusOf(ctx, r.targets[0])
	if err != nil {
		return statusSample{}
	}
	return statusSample{ok: true, position: st.LastPosition, seq: st.ExecutedSeq, at: time.Now()}
}

// projectionLag returns the largest lag_ms among the sampled node's
// projections, or nil when it has none (or no /v1/projections at all).
func (r *runner) projectionLag(ctx context.Context) *float64 {
	if r.noProjections {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sampleTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.status.Nodes()[0]+"/v1/projections", nil)
	if err != nil {
		return nil
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		r.noProjections = true
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var page struct {
		Projections []struct {
			LagMs *float64 `json:"lag_ms"`
		} `json:"projections"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, projectionsBytesMax)).Decode(&page); err != nil {
		return nil
	}
	var worst *float64
	for _, p := range page.Projections {
		if p.LagMs != nil && (worst == nil || *p.LagMs > *worst) {
			v := *p.LagMs
			worst = &v
		}
	}
	return worst
}

// measure waits out the warmup, then samples every second of the window.
func (r *runner) measure(ctx context.Context, load *Load, bar *progressbar.ProgressBar) (*Result, error) {
	begin := time.Now()
	progress := func(desc string) {
		if bar != nil {
			bar.Describe(desc)
			// A failed redraw of stderr changes nothing.
			_ = bar.Set64(int64(time.Since(begin) / time.Second))
		}
	}
	for end := begin.Add(r.o.Warmup); time.Now().Before(end); {
		if err := wait(ctx, min(time.Until(end), sampleEvery)); err != nil {
			return nil, fmt.Errorf("warmup: %w", err)
		}
		if err := r.exited(); err != nil {
			return nil, err
		}
		progress("warming up")
	}
	load.TakeInterval() // the warmup's activity is not part of the first second
	first := r.sampleStatus(ctx)
	opened := load.OpenWindow()
	procs := append(append([]Process(nil), r.procs...), Process{Name: "bench", PID: os.Getpid()})
	ps := newProcSampler(procs)
	lags := NewHistogram()
	lagSamples := 0
	var series []Second
	prev := first
	end := opened.Add(r.o.Duration)
	for k := 1; ; k++ {
		target := opened.Add(time.Duration(k) * sampleEvery)
		if target.After(end) {
			target = end
		}
		if err := wait(ctx, time.Until(target)); err != nil {
			return nil, fmt.Errorf("measuring: %w", err)
		}
		last := !target.Before(end)
		var closed time.Time
		if last {
			closed = load.CloseWindow()
		}
		iv := load.TakeInterval()
		now := time.Now()
		s := Second{T: now.Sub(opened).Seconds(), Interval: iv, Procs: ps.Sample()}
		// The interval's own length, from the previous row (or the opening).
		prevT := 0.0
		if len(series) > 0 {
			prevT = series[len(series)-1].T
		}
		if dt := s.T - prevT; dt > 0 {
			s.ClientEventsPerSec = float64(iv.Completed) / dt
		}
		st := r.sampleStatus(ctx)
		if st.ok && prev.ok && st.at.After(prev.at) && st.position >= prev.position {
			v := round(float64(st.position-prev.position)/st.at.Sub(prev.at).Seconds(), 1)
			s.NodeEventsPerSec = &v
		}
		if st.ok {
			prev = st
		}
		if lag := r.projectionLag(ctx); lag != nil {
			s.ProjectionLagMs = lag
			lags.Record(uint64(max(*lag, 0) * 1000))
			lagSamples++
		}
		series = append(series, s)
		if s.NodeEventsPerSec != nil {
			progress(fmt.Sprintf("%.0f events/s", *s.NodeEventsPerSec))
		} else {
			progress(fmt.Sprintf("%.0f replies/s", s.ClientEventsPerSec))
		}
		if err := r.exited(); err != nil {
			return nil, err
		}
		if last {
			return r.result(load, series, ps, lags, lagSamples, first, prev, closed.Sub(opened)), nil
		}
	}
}

// exited fails the run when a node of the local network has stopped.
func (r *runner) exited() error {
	if r.cluster == nil {
		return nil
	}
	if err := r.cluster.Exited(); err != nil {
		return fmt.Errorf("the network lost a node: %w", err)
	}
	return nil
}

func (r *runner) result(load *Load, series []Second, ps *procSampler, lags *Histogram, lagSamples int,
	first, last statusSample, window time.Duration) *Result {
	stats := load.Stats()
	lat := load.Latency()
	secs := window.Seconds()
	n := len(r.genesis.Validators)
	s := Summary{
		Nodes:                   n,
		Clients:                 r.o.Clients,
		PayloadBytes:            r.o.PayloadBytes,
		DurationS:               round(secs, 3),
		LatencyMs:               LatencyMs{P50: lat.P50, P90: lat.P90, P99: lat.P99, Max: lat.Max},
		SigVerifyBoundPerSec:    round(r.sig.BoundEventsPerSec(n), 1),
		SigVerifyPerSignatureNs: round(r.sig.PerSignatureNs, 1),
		Cores:                   r.sig.Cores,
		Mode:                    "closed_loop",
		RateEventsPerSec:        r.o.Rate,
		WarmupS:                 r.o.Warmup.Seconds(),
		SubmitBatch:             r.o.SubmitBatch,
		ClientEventsPerSec:      round(float64(stats.Completed)/secs, 1),
		Attempted:               stats.Attempted,
		Completed:               stats.Completed,
		Failed:                  stats.Failed,
		DroppedByGenerator:      stats.Dropped,
		FirstError:              stats.FirstError,
		Targets:                 r.targets,
		SampledNode:             r.status.Nodes()[0],
		LocalCluster:            r.cluster != nil,
		Processes:               ps.Summary(),
		StartedAt:               r.started.UTC().Format(time.RFC3339),
	}
	if r.o.Rate > 0 {
		s.Mode = "open_loop"
	}
	if r.cluster != nil {
		s.ClusterDir = r.cluster.Dir
	}
	// The node's count is the truth about what committed; the clients' count
	// is the cross-check, and the fallback when the node gave no count.
	if first.ok && last.ok && last.position > first.position && last.at.After(first.at) {
		s.EventsCommitted = last.position - first.position
		s.EventsPerSec = round(float64(s.EventsCommitted)/last.at.Sub(first.at).Seconds(), 1)
		s.EventsPerSecSource = "node_last_position"
		if last.seq > first.seq {
			s.BatchesCommitted = last.seq - first.seq
			s.EventsPerBatch = round(float64(s.EventsCommitted)/float64(s.BatchesCommitted), 1)
		}
	} else {
		s.EventsCommitted = stats.Completed
		s.EventsPerSec = s.ClientEventsPerSec
		s.EventsPerSecSource = "client_completions"
	}
	if bound := s.SigVerifyBoundPerSec; bound > 0 {
		s.SigVerifyFraction = round(s.EventsPerSec/bound, 4)
	}
	if s.EventsPerSec > 0 {
		// The sampler lists the local nodes first, then this process.
		var nodes float64
		for i := range s.Processes {
			p := &s.Processes[i]
			ms := p.CPUPercentMean * 10 / s.EventsPerSec
			p.CPUMsPerEvent = round(ms, 4)
			if i < len(r.procs) {
				nodes += ms
			}
		}
		s.NodesCPUMsPerEvent = round(nodes, 4)
	}
	if lagSamples > 0 {
		p50 := float64(lags.Quantile(0.50)) / 1000
		p99 := float64(lags.Quantile(0.99)) / 1000
		s.ProjectionLagMs = LagMs{P50: &p50, P99: &p99}
	}
	names := make([]string, len(ps.procs))
	for i, p := range ps.procs {
		names[i] = p.Name
	}
	return &Result{Summary: s, Series: series, ProcNames: names}
}
