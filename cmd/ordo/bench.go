package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/bench"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure committed events/s, latency and resource use of a local or running network",
		Description: "Without --node it starts a temporary local network of --nodes `ordo node` processes\n" +
			"(open admission, ports found free on 127.0.0.1), measures it and stops it. With --node it\n" +
			"measures that running network, verifying replies against --genesis.\n" +
			"Closed loop by default: --clients workers, each with its own key, append one event of\n" +
			"--payload bytes at a time. --rate R makes it an open loop at R events/s, with at most\n" +
			"--clients requests outstanding; events due while all are busy count as dropped_by_generator.\n" +
			"The clients share HTTP exchanges: up to --submit-batch requests per batch submit to a node.\n" +
			"Prints summary.json on stdout; --out DIR also writes summary.json, timeseries.csv,\n" +
			"throughput.png and latency.png there.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Usage: fmt.Sprintf("validators of the local network (%d..%d)", bench.NodesMin, bench.NodesMax), Value: bench.DefaultNodes},
			&cli.DurationFlag{Name: "duration", Usage: "measured window", Value: bench.DefaultDuration},
			&cli.DurationFlag{Name: "warmup", Usage: "load before the measured window, not measured", Value: bench.DefaultWarmup},
			&cli.IntFlag{Name: "clients", Usage: "concurrent clients, each with its own key (open loop: the bound on outstanding requests)", Value: bench.DefaultClients},
			&cli.IntFlag{Name: "payload", Usage: "bytes of JSON data per event", Value: bench.DefaultPayloadBytes},
			&cli.Float64Flag{Name: "rate", Usage: "open loop at this many events/s; 0 is closed loop"},
			&cli.IntFlag{Name: "submit-batch", Usage: fmt.Sprintf("the clients' requests go to each node in shared batch submits of up to this many (1..%d), each still signed, checked and answered on its own; 0 gives each request an HTTP exchange of its own", pbft.SubmitBatchMax), Value: bench.DefaultSubmitBatch},
			&cli.StringFlag{Name: "out", Usage: "directory for summary.json, timeseries.csv and the plots (default: print the summary only)"},
			&cli.StringSliceFlag{Name: "node", Usage: "measure the running network at these API URLs instead of a local one"},
			genesisFlag(),
			&cli.StringFlag{Name: "key", Usage: "with --node and a genesis that admits only listed clients: an admitted key, shared by every client"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the local network's directory (keys, genesis, data, node logs)"},
			&cli.StringFlag{Name: "profile", Usage: "write Go CPU profiles of the load generator (bench.cpu.pprof) and, for a local network, of every node (nodeI.cpu.pprof) into this directory"},
			&cli.StringFlag{Name: "cluster-dir", Usage: "where the local network's temporary directory is made (default: the system's temp dir)"},
		},
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	o := bench.Options{
		Clients:       c.Int("clients"),
		PayloadBytes:  c.Int("payload"),
		Rate:          c.Float64("rate"),
		SubmitBatch:   c.Int("submit-batch"),
		Duration:      c.Duration("duration"),
		Warmup:        c.Duration("warmup"),
		Keep:          c.Bool("keep"),
		ClusterParent: c.String("cluster-dir"),
		Log:           c.App.ErrWriter,
		Progress:      terminal(c.App.ErrWriter),
		Logger:        warnLogger(c),
	}
	if c.IsSet("node") {
		if err := benchTargets(c, &o); err != nil {
			return err
		}
	} else {
		if err := benchLocal(c, &o); err != nil {
			return err
		}
	}
	if dir := strings.TrimSpace(c.String("profile")); dir != "" {
		stop, err := benchProfiles(dir, &o)
		if err != nil {
			return err
		}
		defer stop(o.Logger)
	}
	res, err := bench.Run(c.Context, o)
	if err != nil {
		return err
	}
	if out := strings.TrimSpace(c.String("out")); out != "" {
		if err := bench.WriteReport(out, res); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "ordo bench: report written to %s\n", out)
	}
	return printJSON(c.App.Writer, &res.Summary)
}

// benchProfiles makes dir, points the local nodes' profiles at it and starts
// profiling this process, until the returned stop.
func benchProfiles(dir string, o *bench.Options) (stop func(*slog.Logger), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--profile: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("--profile: %w", err)
	}
	o.ProfileDir = abs
	return startCPUProfile(filepath.Join(abs, "bench.cpu.pprof"))
}

// benchTargets fills o for a running network: its URLs, the genesis the
// replies are checked against, and --key if given.
func benchTargets(c *cli.Context, o *bench.Options) error {
	for _, name := range []string{"nodes", "keep", "cluster-dir"} {
		if c.IsSet(name) {
			return fmt.Errorf("--%s is for a local network and cannot be used with --node", name)
		}
	}
	urls, err := nodeURLs(c)
	if err != nil {
		return err
	}
	keyPath := strings.TrimSpace(c.String("key"))
	g, err := clientGenesis(c, keyPath)
	if err != nil {
		return err
	}
	if keyPath != "" {
		key, err := crypto.ReadKeyFile(keyPath)
		if err != nil {
			return err
		}
		o.Key = key
	}
	o.Targets, o.Genesis = urls, g
	return nil
}

// benchLocal fills o for a local network of this very binary.
func benchLocal(c *cli.Context, o *bench.Options) error {
	for _, name := range []string{"genesis", "key"} {
		if c.IsSet(name) {
			return fmt.Errorf("--%s is for measuring a running network and needs --node", name)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ordo binary to start nodes with: %w", err)
	}
	o.Nodes, o.Executable = c.Int("nodes"), exe
	return nil
}

// terminal returns w if it is a terminal, for the progress bar; nil otherwise,
// so that logs and pipes get no control characters.
func terminal(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return f
}
