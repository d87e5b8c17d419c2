package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Report files, in the output directory.
const (
	SummaryFile    = "summary.json"
	TimeseriesFile = "timeseries.csv"
	ThroughputPlot = "throughput.png"
	LatencyPlot    = "latency.png"
	// plotWidth and plotHeight are the size of each plot.
	plotWidth  = 8 * vg.Inch
	plotHeight = 4 * vg.Inch
)

// LatencyMs is the latency block of the summary, in milliseconds.
type LatencyMs struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// LagMs is the projection-lag block; both are null when the node has no
// projections to sample.
type LagMs struct {
	P50 *float64 `json:"p50"`
	P99 *float64 `json:"p99"`
}

// Summary is summary.json. The first eight keys are the contract of
// INTERFACE.md; the rest explain them.
type Summary struct {
	Nodes                   int       `json:"nodes"`
	Clients                 int       `json:"clients"`
	PayloadBytes            int       `json:"payload_bytes"`
	DurationS               float64   `json:"duration_s"`
	EventsPerSec            float64   `json:"events_per_sec"`
	LatencyMs               LatencyMs `json:"latency_ms"`
	ProjectionLagMs         LagMs     `json:"projection_lag_ms"`
	SigVerifyBoundPerSec    float64   `json:"sig_verify_bound_events_per_sec"`
	SigVerifyFraction       float64   `json:"sig_verify_fraction"`
	SigVerifyPerSignatureNs float64   `json:"sig_verify_per_signature_ns"`
	Cores                   int       `json:"cores"`
	Mode                    string    `json:"mode"` // "closed_loop" or "open_loop"
	RateEventsPerSec        float64   `json:"rate_events_per_sec"`
	WarmupS                 float64   `json:"warmup_s"`
	// SubmitBatch is --submit-batch: 0 when each request had an HTTP
	// exchange of its own, else the most requests in one batch submit.
	SubmitBatch        int    `json:"submit_batch"`
	EventsPerSecSource string `json:"events_per_sec_source"` // "node_last_position" or "client_completions"
	EventsCommitted    uint64 `json:"events_committed"`
	// BatchesCommitted and EventsPerBatch are from the sampled node's
	// executed_seq over the same window: most of a node's work is per batch
	// (signatures, fsyncs, messages), so they say how far it is spread.
	BatchesCommitted uint64  `json:"batches_committed,omitempty"`
	EventsPerBatch   float64 `json:"events_per_batch,omitempty"`
	// NodesCPUMsPerEvent is the CPU time per committed event of every
	// local node together (see ProcSummary.CPUMsPerEvent); absent when the
	// nodes are not local.
	NodesCPUMsPerEvent float64       `json:"nodes_cpu_ms_per_event,omitempty"`
	ClientEventsPerSec float64       `json:"client_events_per_sec"`
	Attempted          uint64        `json:"attempted"`
	Completed          uint64        `json:"completed"`
	Failed             uint64        `json:"failed"`
	DroppedByGenerator uint64        `json:"dropped_by_generator"`
	FirstError         string        `json:"first_error,omitempty"`
	ClientKeys         int           `json:"client_keys"`
	Targets            []string      `json:"targets"`
	SampledNode        string        `json:"sampled_node"`
	LocalCluster       bool          `json:"local_cluster"`
	ClusterDir         string        `json:"cluster_dir,omitempty"`
	Processes          []ProcSummary `json:"processes"`
	StartedAt          string        `json:"started_at"` // RFC 3339
}

// Second is one row of the time series: the second ending T seconds after
// the window opened.
type Second struct {
	T float64
	// NodeEventsPerSec is from the sampled node's last_position; nil when
	// it did not answer.
	NodeEventsPerSec   *float64
	ClientEventsPerSec float64
	Interval
	// ProjectionLagMs is the largest lag among the node's projections; nil
	// when there are none to sample.
	ProjectionLagMs *float64
	Procs           []ProcSample
}

// Result is everything a run measured.
type Result struct {
	Summary   Summary
	Series    []Second
	ProcNames []string // the processes of Second.Procs, in order
}

// round rounds x to the given number of decimals.
func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}

// WriteReport writes summary.json, timeseries.csv and the two plots into
// dir, creating it if needed.
func WriteReport(dir string, r *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	b, err := json.MarshalIndent(&r.Summary, "", "  ")
	if err != nil {
		return fmt.Errorf("report: summary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, SummaryFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := writeCSV(filepath.Join(dir, TimeseriesFile), r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := plotThroughput(filepath.Join(dir, ThroughputPlot), r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := plotLatency(filepath.Join(dir, LatencyPlot), r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func formatFloat(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func optFloat(x *float64) string {
	if x == nil {
		return ""
	}
	return formatFloat(*x)
}

func writeCSV(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	header := []string{"t_s", "events_per_sec", "client_events_per_sec", "completed", "failed",
		"dropped_by_generator", "latency_p50_ms", "latency_p99_ms", "projection_lag_ms"}
	for _, name := range r.ProcNames {
		header = append(header, name+"_cpu_percent", name+"_rss_mb")
	}
	// csv.Writer keeps its first error; Error reports it after Flush.
	_ = w.Write(header)
	for _, s := range r.Series {
		row := []string{formatFloat(round(s.T, 3)), optFloat(s.NodeEventsPerSec), formatFloat(round(s.ClientEventsPerSec, 1)),
			strconv.FormatUint(s.Completed, 10), strconv.FormatUint(s.Failed, 10), strconv.FormatUint(s.Dropped, 10), "", "",
			optFloat(s.ProjectionLagMs)}
		if s.Completed > 0 {
			row[6], row[7] = formatFloat(s.Latency.P50), formatFloat(s.Latency.P99)
		}
		for _, p := range s.Procs {
			if p.OK {
				row = append(row, formatFloat(round(p.CPUPercent, 1)), formatFloat(round(p.RSSMB, 1)))
			} else {
				row = append(row, "", "")
			}
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// series is one line of a plot.
type series struct {
	name  string
	color color.Color
	xys   plotter.XYs
}

var (
	colorBlue = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorRed  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
)

func plotThroughput(path string, r *Result) error {
	node := series{name: "committed (node last_position)", color: colorBlue}
	cl := series{name: "verified replies (clients)", color: colorRed}
	for _, s := range r.Series {
		if s.NodeEventsPerSec != nil {
			node.xys = append(node.xys, plotter.XY{X: s.T, Y: *s.NodeEventsPerSec})
		}
		cl.xys = append(cl.xys, plotter.XY{X: s.T, Y: s.ClientEventsPerSec})
	}
	title := fmt.Sprintf("ordo: %d nodes, %d clients, %d-byte events", r.Summary.Nodes, r.Summary.Clients, r.Summary.PayloadBytes)
	return drawLines(path, title, "events/s", []series{node, cl})
}

func plotLatency(path string, r *Result) error {
	p50 := series{name: "p50", color: colorBlue}
	p99 := series{name: "p99", color: colorRed}
	for _, s := range r.Series {
		if s.Completed > 0 {
			p50.xys = append(p50.xys, plotter.XY{X: s.T, Y: s.Latency.P50})
			p99.xys = append(p99.xys, plotter.XY{X: s.T, Y: s.Latency.P99})
		}
	}
	title := fmt.Sprintf("ordo: submit to verified reply, %d nodes, %d clients", r.Summary.Nodes, r.Summary.Clients)
	return drawLines(path, title, "latency (ms)", []series{p50, p99})
}

// legendHeadroom is the least of the plots' Y range over their highest
// point: at least the top sixth of each plot is the legend's.
const legendHeadroom = 1.2

// yTop is where a plot's Y axis ends: legendHeadroom over the lines'
// highest point (1 if none is above 0), rounded up to a round number so
// that the axis gets round ticks.
func yTop(lines []series) float64 {
	top := 1.0
	for _, s := range lines {
		for _, xy := range s.xys {
			top = max(top, xy.Y)
		}
	}
	top *= legendHeadroom
	unit := math.Pow10(int(math.Floor(math.Log10(top))))
	for _, m := range []float64{1, 1.5, 2, 3, 4, 5, 6, 8} {
		if top <= m*unit {
			return m * unit
		}
	}
	return 10 * unit
}

func drawLines(path, title, yLabel string, lines []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time in the measured window (s)"
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	// The legend sits top right, in a band kept above the highest point:
	// inside the data it hid the ends of the lines and read as part of them.
	p.Legend.Top = true
	p.Y.Max = yTop(lines)
	for _, s := range lines {
		if len(s.xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xys)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		l.Color = s.color
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	if err := p.Save(plotWidth, plotHeight, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
