package bench

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The launcher's processes are exercised by the end-to-end run of
// `ordo bench`; these tests cover its arguments and ports.

func TestBenchNodeArgsFollowTheTestnetLayout(t *testing.T) {
	got := nodeArgs("/tmp/x/node2", 7700, 2, "")
	want := []string{"node", "--home", "/tmp/x/node2", "--api", "127.0.0.1:7702",
		"--p2p", "/ip4/127.0.0.1/tcp/7802", "--log-level", "warn"}
	if !slices.Equal(got, want) {
		t.Errorf("node args %q, want %q", got, want)
	}
	got = nodeArgs("/tmp/x/node2", 7700, 2, "/tmp/prof")
	want = append(want, "--cpuprofile", "/tmp/prof/node2.cpu.pprof")
	if !slices.Equal(got, want) {
		t.Errorf("profiled node args %q, want %q", got, want)
	}
}

func TestBenchFreeBasePortSkipsBusyRanges(t *testing.T) {
	busy := map[int]bool{30003: true, 40100: true}
	free := func(p int) bool { return !busy[p] }
	// 30000: API port 30003 busy (node 3). 40000: libp2p port 40100 busy
	// (node 0). 50000 is free.
	base, err := freeBasePort(4, []int{30000, 40000, 50000}, free)
	if err != nil || base != 50000 {
		t.Errorf("base %d, %v; want 50000", base, err)
	}
	// Node 3's API port is only used with 4 nodes or more.
	if base, err := freeBasePort(3, []int{30000}, free); err != nil || base != 30000 {
		t.Errorf("3 nodes: base %d, %v; want 30000", base, err)
	}
	if _, err := freeBasePort(4, []int{30000, 40000}, free); err == nil {
		t.Error("no free range, but no error")
	}
	// Bases whose layout leaves the port space, or that are privileged, are skipped.
	for _, base := range []int{80, 65535 - P2PPortOffset - 2} {
		if _, err := freeBasePort(4, []int{base}, func(int) bool { return true }); err == nil {
			t.Errorf("base %d accepted", base)
		}
	}
	for _, n := range []int{0, -1, NodesMax + 1} {
		if _, err := freeBasePort(n, []int{50000}, free); err == nil || !strings.Contains(err.Error(), "nodes") {
			t.Errorf("%d nodes: %v", n, err)
		}
	}
}

func TestBenchBaseCandidatesFitTheLayout(t *testing.T) {
	c := baseCandidates()
	if len(c) != portCandidates || portCandidates < 100 {
		t.Fatalf("%d candidates of %d", len(c), portCandidates)
	}
	seen := map[int]bool{}
	for _, base := range c {
		if base < portLow || P2PPort(base, NodesMax-1) >= portHigh || seen[base] {
			t.Errorf("candidate %d outside %d..%d or repeated", base, portLow, portHigh)
		}
		seen[base] = true
	}
	// Two candidates' layouts never overlap.
	slices.Sort(c)
	for i := 1; i < len(c); i++ {
		if c[i]-c[i-1] <= P2PPortOffset+NodesMax {
			t.Errorf("candidates %d and %d overlap", c[i-1], c[i])
		}
	}
}

func TestBenchFreeBasePortWithRealPorts(t *testing.T) {
	// Occupy a port inside the first candidate's range: it must be skipped.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	first := taken - 1
	base, err := freeBasePort(2, append([]int{first}, baseCandidates()...), portFree)
	if err != nil {
		t.Fatal(err)
	}
	if base == first {
		t.Fatalf("base %d chosen though its port %d is taken", base, taken)
	}
	for i := 0; i < 2; i++ {
		for _, p := range []int{APIPort(base, i), P2PPort(base, i)} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				t.Errorf("port %d of the chosen range: %v", p, err)
				continue
			}
			l.Close()
		}
	}
}

func TestBenchLaunchRefusesBadArguments(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]ClusterConfig{
		"no nodes":      {Nodes: 0, Executable: exe},
		"too many":      {Nodes: NodesMax + 1, Executable: exe},
		"no executable": {Nodes: 4},
	} {
		if c, err := Launch(context.Background(), cfg); err == nil {
			c.Stop()
			t.Errorf("%s: launched", name)
		}
	}
}

// A node that exits during start-up fails the launch with its name, and the
// directory is kept for its log.
func TestBenchLaunchReportsANodeThatExits(t *testing.T) {
	exe, err := exec.LookPath("false")
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	var log strings.Builder
	_, err = Launch(context.Background(), ClusterConfig{Nodes: 2, Executable: exe, ParentDir: parent, Log: &log})
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "node.log") {
		t.Fatalf("launch with a failing binary: %v", err)
	}
	dirs, err := filepath.Glob(filepath.Join(parent, "ordo-bench-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("cluster directories %v, %v; want one, kept", dirs, err)
	}
	for _, f := range []string{"genesis.json", "node0/node.key", "node0/genesis.json", "node1/node.key", "node1/node.log"} {
		if _, err := os.Stat(filepath.Join(dirs[0], f)); err != nil {
			t.Errorf("kept directory lacks %s: %v", f, err)
		}
	}
	if !strings.Contains(log.String(), "kept the network's directory") {
		t.Errorf("log %q does not say the directory was kept", log.String())
	}
}
