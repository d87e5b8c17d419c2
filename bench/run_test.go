package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/plotter"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// contractKeys are the summary.json keys INTERFACE.md promises.
var contractKeys = []string{"nodes", "clients", "payload_bytes", "duration_s", "events_per_sec",
	"latency_ms", "projection_lag_ms", "sig_verify_bound_events_per_sec"}

func targetOptions(fn *fakeNode) Options {
	return Options{
		Targets: []string{fn.srv.URL}, Genesis: fn.genesis, Key: fn.admitted,
		Clients: 3, PayloadBytes: 100, Duration: 1500 * time.Millisecond,
	}
}

// A whole run against a fake node: the summary has the contract's keys
// with values that agree with what the node saw, and the report files are
// written.
func TestBenchRunAgainstNodesWritesTheReport(t *testing.T) {
	fn := newFakeNode(t, true)
	lag := 42.0
	fn.lagMs = &lag
	var log bytes.Buffer
	o := targetOptions(fn)
	o.Log = &log
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteReport(dir, res); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, k := range contractKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}
	for _, k := range []string{"p50", "p90", "p99", "max"} {
		if _, ok := m["latency_ms"].(map[string]any)[k]; !ok {
			t.Errorf("latency_ms lacks %q", k)
		}
	}
	lagBlock := m["projection_lag_ms"].(map[string]any)
	if lagBlock["p50"] != json.Number("42") || lagBlock["p99"] != json.Number("42") {
		t.Errorf("projection_lag_ms %v, want the node's worst lag, 42", lagBlock)
	}
	for k, want := range map[string]string{"nodes": "4", "clients": "3", "payload_bytes": "100", "dropped_by_generator": "0", "failed": "0"} {
		if m[k] != json.Number(want) {
			t.Errorf("%s = %v, want %s", k, m[k], want)
		}
	}

	s := res.Summary
	if s.Completed == 0 || s.EventsPerSec <= 0 || s.EventsPerSecSource != "node_last_position" {
		t.Errorf("summary %+v", s)
	}
	// The fake node makes one entry of one event per request.
	if s.BatchesCommitted != s.EventsCommitted || s.EventsPerBatch != 1 {
		t.Errorf("%d batches and %v events per batch for %d events, want one event per batch", s.BatchesCommitted, s.EventsPerBatch, s.EventsCommitted)
	}
	// Only our load writes to the fake node, so its rate and the clients'
	// agree (they are measured over windows a few milliseconds apart).
	if r := s.EventsPerSec / s.ClientEventsPerSec; r < 0.8 || r > 1.25 {
		t.Errorf("node counted %v events/s, clients %v", s.EventsPerSec, s.ClientEventsPerSec)
	}
	if s.DurationS < 1.5 || s.DurationS > 3 {
		t.Errorf("duration_s %v for a 1.5 s window", s.DurationS)
	}
	if s.LatencyMs.P50 <= 0 || s.LatencyMs.P50 > s.LatencyMs.P90 || s.LatencyMs.P90 > s.LatencyMs.P99 || s.LatencyMs.P99 > s.LatencyMs.Max {
		t.Errorf("latency %+v is not ordered", s.LatencyMs)
	}
	wantBound := float64(s.Cores) / (4 * s.SigVerifyPerSignatureNs * 1e-9)
	if s.SigVerifyBoundPerSec <= 0 || s.SigVerifyBoundPerSec < 0.99*wantBound || s.SigVerifyBoundPerSec > 1.01*wantBound {
		t.Errorf("bound %v, want cores/(n × per-signature time) = %v", s.SigVerifyBoundPerSec, wantBound)
	}
	if s.SigVerifyFraction <= 0 || s.ClientKeys != 3 || s.LocalCluster || s.Mode != "closed_loop" {
		t.Errorf("summary %+v", s)
	}
	if len(s.Processes) != 1 || s.Processes[0].Name != "bench" || s.Processes[0].PID != os.Getpid() {
		t.Errorf("processes %+v, want only this one", s.Processes)
	}
	// CPU per event: the generator's own, and none for nodes that are not local.
	if p := s.Processes[0]; p.CPUPercentMean <= 0 || math.Abs(p.CPUMsPerEvent-p.CPUPercentMean*10/s.EventsPerSec) > 1e-3 {
		t.Errorf("generator at %v %% of a core and %v events/s: %v ms of CPU per event", p.CPUPercentMean, s.EventsPerSec, p.CPUMsPerEvent)
	}
	if s.NodesCPUMsPerEvent != 0 {
		t.Errorf("nodes_cpu_ms_per_event %v without local nodes", s.NodesCPUMsPerEvent)
	}
	if _, clients, _ := fn.counts(); clients != 3 {
		t.Errorf("node saw %d client keys, want 3 (one per client)", clients)
	}

	f, err := os.Open(filepath.Join(dir, TimeseriesFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "t_s" || rows[0][len(rows[0])-2] != "bench_cpu_percent" {
		t.Fatalf("timeseries: %d rows, header %q; want a header and 2 seconds", len(rows), rows[0])
	}
	if rows[2][8] != "42" {
		t.Errorf("second row %q: projection lag %q, want 42", rows[2], rows[2][8])
	}
	for _, name := range []string{ThroughputPlot, LatencyPlot} {
		checkPNG(t, filepath.Join(dir, name))
	}
	if !strings.Contains(log.String(), "verifies in") {
		t.Errorf("log %q does not report the signature timing", log.String())
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("%s is %dx%d", path, b.Dx(), b.Dy())
	}
	// Not blank: some pixel differs from the corner's.
	corner := img.At(b.Min.X, b.Min.Y)
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			if img.At(x, y) != corner {
				return
			}
		}
	}
	t.Fatalf("%s is blank", path)
}

// Plots render even when a series is empty (no node count, no completions).
func TestBenchReportWithEmptySeries(t *testing.T) {
	dir := t.TempDir()
	res := &Result{Summary: Summary{Nodes: 4, Clients: 1, PayloadBytes: 2}, Series: []Second{{T: 1}}}
	if err := WriteReport(dir, res); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ThroughputPlot, LatencyPlot} {
		checkPNG(t, filepath.Join(dir, name))
	}
	raw, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	// Without projections the lag block is there, with nulls.
	if !bytes.Contains(raw, []byte(`"projection_lag_ms": {
    "p50": null,
    "p99": null
  }`)) {
		t.Errorf("summary without projections:\n%s", raw)
	}
}

// A plot's Y axis ends on a round number that leaves the legend a band above
// every line, however high the line's peak.
func TestPlotAxisLeavesTheLegendABand(t *testing.T) {
	for _, tc := range []struct {
		peaks []float64
		want  float64
	}{
		{nil, 1.5},
		{[]float64{0}, 1.5},
		{[]float64{80, 2239.4}, 3000},
		{[]float64{1405.7}, 2000},
		{[]float64{9.7}, 15},
		{[]float64{830}, 1000},
		{[]float64{850}, 1500},
		{[]float64{0.3}, 1.5},
	} {
		var s series
		for i, y := range tc.peaks {
			s.xys = append(s.xys, plotter.XY{X: float64(i), Y: y})
		}
		got := yTop([]series{s, {}})
		if got != tc.want {
			t.Errorf("peaks %v: axis top %v, want %v", tc.peaks, got, tc.want)
		}
		for _, y := range tc.peaks {
			if got < legendHeadroom*y {
				t.Errorf("peaks %v: axis top %v leaves no band above %v", tc.peaks, got, y)
			}
		}
	}
}

// An open-loop run against an allowlist network: every client signs with the
// one admitted key, and a node without /v1/projections gives a null lag.
func TestBenchRunOpenLoopSharedKey(t *testing.T) {
	fn := newFakeNode(t, false)
	o := targetOptions(fn)
	o.Rate = 200
	o.Duration = time.Second
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if s.Mode != "open_loop" || s.RateEventsPerSec != 200 || s.ClientKeys != 1 || s.Completed == 0 {
		t.Errorf("summary %+v", s)
	}
	if s.ProjectionLagMs.P50 != nil || s.ProjectionLagMs.P99 != nil {
		t.Errorf("lag %+v from a node without projections", s.ProjectionLagMs)
	}
	if _, clients, _ := fn.counts(); clients != 1 {
		t.Errorf("node saw %d client keys, want the one admitted", clients)
	}
}

// With SubmitBatch the clients share a client.Batcher; a node without batch
// submits (this fake) gets each request on the single submit, and the summary
// says what was asked.
func TestBenchRunSubmitBatch(t *testing.T) {
	fn := newFakeNode(t, false)
	o := targetOptions(fn)
	o.SubmitBatch = 8
	o.Duration = time.Second
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Summary; s.SubmitBatch != 8 || s.Completed == 0 || s.Failed != 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestBenchRunRefusesBadOptions(t *testing.T) {
	fn := newFakeNode(t, false)
	stranger, err := crypto.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	base := targetOptions(fn)
	for name, change := range map[string]func(o *Options){
		"no genesis":       func(o *Options) { o.Genesis = nil },
		"no key":           func(o *Options) { o.Key = crypto.PrivateKey{} },
		"key not admitted": func(o *Options) { o.Key = stranger },
		"no clients":       func(o *Options) { o.Clients = 0 },
		"too many clients": func(o *Options) { o.Clients = WorkersMax + 1 },
		"payload":          func(o *Options) { o.PayloadBytes = 1 },
		"short duration":   func(o *Options) { o.Duration = time.Millisecond },
		"negative warmup":  func(o *Options) { o.Warmup = -time.Second },
		"negative rate":    func(o *Options) { o.Rate = -5 },
		"negative batch":   func(o *Options) { o.SubmitBatch = -1 },
		"batch too large":  func(o *Options) { o.SubmitBatch = pbft.SubmitBatchMax + 1 },
		"local, no nodes":  func(o *Options) { o.Targets = nil; o.Nodes = 0; o.Executable = "/bin/true" },
		"local, no binary": func(o *Options) { o.Targets = nil; o.Nodes = 4 },
		"local, too many":  func(o *Options) { o.Targets = nil; o.Nodes = NodesMax + 1; o.Executable = "/bin/true" },
	} {
		o := base
		change(&o)
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A payload the network refuses fails the run at the first append.
	o := base
	o.PayloadBytes = fn.genesis.Params.RequestBytesMax
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "first append") {
		t.Errorf("oversized payload: %v", err)
	}
}

func TestBenchSigVerifyBound(t *testing.T) {
	s := SigVerify{PerSignatureNs: 50_000, Cores: 2}
	// 2 cores / (4 replicas × 50 µs) = 10 000 requests/s.
	if got := s.BoundEventsPerSec(4); got < 9999.9 || got > 10000.1 {
		t.Errorf("bound %v, want 10000", got)
	}
	if s.BoundEventsPerSec(0) != 0 || (SigVerify{}).BoundEventsPerSec(4) != 0 {
		t.Error("a bound without replicas or timing must be 0")
	}
	m, err := MeasureSigVerify()
	if err != nil {
		t.Fatal(err)
	}
	if m.Signatures < SigBatchSize || m.Signatures%SigBatchSize != 0 || m.PerSignatureNs <= 0 || m.Cores < 1 {
		t.Errorf("measurement %+v", m)
	}
}
