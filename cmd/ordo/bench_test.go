package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/bench"
)

// A short run against a (fake) running network: stdout is exactly the
// summary, one JSON line with the contract's keys; --out holds the report.
func TestBenchCommandAgainstRunningNetwork(t *testing.T) {
	c := newCluster(t)
	out := filepath.Join(t.TempDir(), "report")
	profiles := filepath.Join(t.TempDir(), "profiles")
	stdout, stderr, code := ordo(t, "bench", "--node", c.node.srv.URL, "--genesis", c.genesis,
		"--duration", "1s", "--warmup", "0s", "--clients", "2", "--payload", "64", "--out", out, "--profile", profiles)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// With --node only the load generator runs here: its profile alone.
	if fi, err := os.Stat(filepath.Join(profiles, "bench.cpu.pprof")); err != nil || fi.Size() == 0 {
		t.Errorf("generator profile: %v", err)
	}
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout is not one line: %q", stdout)
	}
	var printed map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &printed); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	for _, k := range []string{"nodes", "clients", "payload_bytes", "duration_s", "events_per_sec",
		"latency_ms", "projection_lag_ms", "sig_verify_bound_events_per_sec"} {
		if _, ok := printed[k]; !ok {
			t.Errorf("summary lacks %q: %s", k, stdout)
		}
	}
	var s bench.Summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Nodes != 4 || s.Clients != 2 || s.PayloadBytes != 64 || s.Completed == 0 || s.Failed != 0 || s.ClientKeys != 2 {
		t.Errorf("summary %+v", s)
	}
	// The file holds the same summary as stdout.
	raw, err := os.ReadFile(filepath.Join(out, bench.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	if compact.String() != strings.TrimSpace(stdout) {
		t.Errorf("summary.json differs from stdout:\n%s\n%s", compact.String(), stdout)
	}
	for _, f := range []string{bench.TimeseriesFile, bench.ThroughputPlot, bench.LatencyPlot} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// stderr is not a terminal here: step lines, no progress bar.
	if strings.Contains(stderr, "\r") || !strings.Contains(stderr, "report written to") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestBenchCommandRefusesBadFlags(t *testing.T) {
	c := newCluster(t)
	url := c.node.srv.URL
	// The same validators, admitting only c's client key.
	var vals []string
	for _, k := range c.keys {
		vals = append(vals, k.Public().String())
	}
	allowlist := filepath.Join(t.TempDir(), "allowlist.json")
	mustOrdo(t, "genesis", "--validators", strings.Join(vals, ","), "--clients", c.clientKey, "--out", allowlist)
	stranger := filepath.Join(t.TempDir(), "stranger.key")
	mustOrdo(t, "keygen", "--out", stranger)
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"--nodes is for a local network", []string{"--node", url, "--genesis", c.genesis, "--nodes", "3"}},
		{"--keep is for a local network", []string{"--node", url, "--genesis", c.genesis, "--keep"}},
		{"--genesis is for measuring a running network", []string{"--genesis", c.genesis}},
		{"--key is for measuring a running network", []string{"--key", c.clientKey}},
		{"--nodes 0", []string{"--nodes", "0"}},
		{"--nodes 65", []string{"--nodes", "65"}},
		{"--rate -1", []string{"--node", url, "--genesis", c.genesis, "--rate", "-1"}},
		{"--duration 10ms", []string{"--node", url, "--genesis", c.genesis, "--duration", "10ms"}},
		{"--clients 0", []string{"--node", url, "--genesis", c.genesis, "--clients", "0"}},
		{"--payload 1", []string{"--node", url, "--genesis", c.genesis, "--payload", "1"}},
		{"--submit-batch 257", []string{"--node", url, "--genesis", c.genesis, "--submit-batch", "257"}},
		{"unexpected argument", []string{"extra"}},
		{"admits only listed clients", []string{"--node", url, "--genesis", allowlist}},
		{"does not admit client key", []string{"--node", url, "--genesis", allowlist, "--key", stranger}},
	} {
		_, stderr, code := ordo(t, append([]string{"bench"}, tc.args...)...)
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if code != 1 || !strings.HasPrefix(lines[len(lines)-1], "ordo: ") || !strings.Contains(lines[len(lines)-1], tc.want) {
			t.Errorf("bench %q: exit %d, stderr %q; want one line with %q", tc.args, code, stderr, tc.want)
		}
	}
}
