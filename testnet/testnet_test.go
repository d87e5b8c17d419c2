package testnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// env is one testnet in a temporary directory, driven through the script.
type env struct {
	t    *testing.T
	dir  string
	port int
	ordo string
	vars []string // extra environment for the script and the nodes it starts
}

// freeBase finds a base port P such that P..P+n-1 and P+100..P+100+n-1 are
// free. It stays below the kernel's ephemeral range (32768 and up), where any
// outgoing connection could take a port between this check and a node's bind.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	for p := 10000 + os.Getpid()%10000; p+100+n < 32768; p += 211 {
		ok := true
		for i := 0; i < n && ok; i++ {
			for _, port := range []int{p + i, p + 100 + i} {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port range")
	return 0
}

// upNetwork starts four validators through the script in a fresh directory,
// with vars in the environment of the build and the nodes, and stops them when
// the test ends.
func upNetwork(t *testing.T, vars ...string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), port: freeBase(t, 4), vars: vars}
	e.ordo = filepath.Join(e.dir, "bin", "ordo")
	e.script("up", "--nodes", "4")
	t.Cleanup(func() { e.script("down") })
	return e
}

func (e *env) script(args ...string) string {
	e.t.Helper()
	all := append(args, "--dir", e.dir)
	if args[0] == "up" || args[0] == "demo" {
		all = append(all, "--base-port", fmt.Sprint(e.port))
	}
	cmd := exec.Command("bash", append([]string{"testnet.sh"}, all...)...)
	cmd.Env = append(os.Environ(), e.vars...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("testnet.sh %s: %v\n%s", strings.Join(all, " "), err, out.String())
	}
	return out.String()
}

func (e *env) ordoCmd(args ...string) ([]byte, error) {
	cmd := exec.Command(e.ordo, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ordo %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func (e *env) api(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", e.port+i) }

func (e *env) appendEvent(node int, stream string, n int) {
	e.t.Helper()
	e.appendVia([]int{node}, stream, n)
}

// appendVia appends one event, the client trying the given nodes in turn.
func (e *env) appendVia(nodes []int, stream string, n int) {
	e.t.Helper()
	var urls []string
	for _, i := range nodes {
		urls = append(urls, e.api(i))
	}
	out, err := e.ordoCmd("append", "--node", strings.Join(urls, ","), "--key", filepath.Join(e.dir, "client.key"), "--timeout", "30s",
		"--stream", stream, "--type", "tested", "--data", fmt.Sprintf(`{"n":%d}`, n))
	if err != nil {
		e.t.Fatal(err)
	}
	var res struct {
		Positions []uint64 `json:"positions"`
		Replies   int      `json:"replies"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Positions) != 1 || res.Replies < 2 {
		e.t.Fatalf("append output %q: %v", out, err)
	}
}

type status struct {
	ExecutedSeq uint64 `json:"executed_seq"`
	HeadHash    string `json:"head_hash"`
	View        uint64 `json:"view"`
}

func (e *env) status(i int) (status, error) {
	var st status
	out, err := e.ordoCmd("status", "--node", e.api(i))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(out, &st)
}

// converged waits until every node reports the same executed seq and head.
func (e *env) converged(n int, deadline time.Duration) status {
	e.t.Helper()
	nodes := make([]int, n)
	for i := range nodes {
		nodes[i] = i
	}
	return e.convergedAmong(nodes, deadline)
}

// convergedAmong waits until the given nodes report the same executed seq and head.
func (e *env) convergedAmong(nodes []int, deadline time.Duration) status {
	e.t.Helper()
	end := time.Now().Add(deadline)
	for {
		var first status
		same := true
		for k, i := range nodes {
			st, err := e.status(i)
			if err != nil {
				same = false
				break
			}
			if k == 0 {
				first = st
			} else if st != first {
				same = false
			}
		}
		if same {
			return first
		}
		if time.Now().After(end) {
			e.t.Fatalf("nodes did not converge within %v:\n%s", deadline, e.script("status"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTestnetProcesses runs four `ordo node` processes through the script:
// appends through different nodes, a backup killed with SIGKILL, appends
// without it, its restart and catch-up, and `ordo verify` on every node.
func TestTestnetProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs four processes; covered in the full run")
	}
	e := upNetwork(t)

	for i := 0; i < 8; i++ {
		e.appendEvent(i%4, "orders", i)
	}
	before := e.converged(4, 20*time.Second)

	e.script("kill", "3")
	for i := 0; i < 6; i++ {
		e.appendEvent(i%3, "orders", 100+i)
	}
	e.script("start", "3")
	after := e.converged(4, 30*time.Second)
	if after.ExecutedSeq <= before.ExecutedSeq {
		t.Fatalf("no progress while node 3 was down: %d then %d", before.ExecutedSeq, after.ExecutedSeq)
	}
	// Read-your-writes through the projection API on the restarted node.
	out, err := e.ordoCmd("query", "--node", e.api(3), "streams", "orders", "--min-position", "14")
	if err != nil {
		t.Fatal(err)
	}
	var row struct {
		Version uint64 `json:"version"`
		Events  uint64 `json:"events"`
	}
	if err := json.Unmarshal(out, &row); err != nil || row.Version != 13 || row.Events != 14 {
		t.Fatalf("streams row %s (%v), want version 13 and 14 events", out, err)
	}
	for i := 0; i < 4; i++ {
		e.verify(i, after.HeadHash, 14)
	}
}

// verify runs `ordo verify` against node i and wants ok, head and events.
func (e *env) verify(i int, head string, events uint64) {
	e.t.Helper()
	out, err := e.ordoCmd("verify", "--node", e.api(i), "--genesis", filepath.Join(e.dir, "genesis.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var v struct {
		Entries uint64 `json:"entries"`
		Events  uint64 `json:"events"`
		Head    string `json:"head"`
		OK      bool   `json:"ok"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		e.t.Fatalf("verify output %q: %v", out, err)
	}
	if !v.OK || v.Head != head || v.Events != events {
		e.t.Fatalf("node %d: verify %+v, want ok with head %s and %d events", i, v, head, events)
	}
}

// TestByzantineValidator runs a test build of ordo (-tags byzantine) in which
// one validator lies: first the primary sends conflicting PRE-PREPAREs to
// different backups, then a backup votes for digests nobody proposed. The
// honest three keep committing, agree on one head, and verify from genesis.
func TestByzantineValidator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a test binary and runs four processes; covered in the full run")
	}
	e := upNetwork(t, "GOFLAGS=-tags=byzantine")
	honest := []int{1, 2, 3}

	// Node 0 is the primary of view 0: restart it as an equivocator.
	e.script("kill", "0")
	e.vars = append(e.vars, "ORDO_BYZANTINE=equivocate")
	e.script("start", "0")
	e.vars = e.vars[:1]
	for i := 0; i < 10; i++ {
		e.appendEvent(1+i%3, "byz", i)
	}
	e.lied(0, "equivocate")
	st := e.convergedAmong(honest, 30*time.Second)
	for _, i := range honest {
		e.verify(i, st.HeadHash, 10)
	}

	// Node 3 votes for wrong digests; node 0 is honest again.
	e.script("kill", "0")
	e.script("start", "0")
	e.script("kill", "3")
	e.vars = append(e.vars, "ORDO_BYZANTINE=wrong-digest")
	e.script("start", "3")
	e.vars = e.vars[:1]
	for i := 10; i < 20; i++ {
		e.appendEvent(i%3, "byz", i)
	}
	e.lied(3, "wrong-digest")
	honest = []int{0, 1, 2}
	st = e.convergedAmong(honest, 30*time.Second)
	for _, i := range honest {
		e.verify(i, st.HeadHash, 20)
	}
}

// lied checks node i's log shows it ran in the given Byzantine mode, so a
// passing test cannot come from a build that ignored the flag.
func (e *env) lied(i int, mode string) {
	e.t.Helper()
	log, err := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("node%d", i), "node.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.Contains(string(log), "BYZANTINE TEST MODE") || !strings.Contains(string(log), "mode="+mode) {
		e.t.Fatalf("node %d did not run as %s", i, mode)
	}
}

// TestPrimaryCrash kills the primary with SIGKILL: the backups change view and
// appends resume; the old primary restarts and rejoins in the new view; a
// backup loses its disk and rebuilds from its peers; every node verifies.
func TestPrimaryCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four processes through a view change; covered in the full run")
	}
	e := upNetwork(t)

	e.appendEvent(1, "vc", 0)
	e.script("kill", "0")
	for i := 1; i <= 5; i++ {
		e.appendVia([]int{1, 2, 3}, "vc", i)
	}
	st := e.convergedAmong([]int{1, 2, 3}, 30*time.Second)
	if st.View == 0 {
		t.Fatalf("appends committed without the primary but the view is still 0: %+v", st)
	}
	e.script("start", "0")
	for i := 6; i <= 8; i++ {
		e.appendEvent(0, "vc", i)
	}
	e.script("wipe", "2")
	e.script("start", "2")
	e.appendEvent(3, "vc", 9)
	st = e.converged(4, 30*time.Second)
	for i := 0; i < 4; i++ {
		e.verify(i, st.HeadHash, 10)
	}
}
