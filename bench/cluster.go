package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/node"
)

// Bounds of the local cluster. The port layout is testnet.sh's: node I serves
// its API at base+I and libp2p at base+P2PPortOffset+I.
const (
	// NodesMin and NodesMax bound ClusterConfig.Nodes; NodesMax keeps the API
	// and libp2p port ranges apart.
	NodesMin = 1
	NodesMax = 64
	// P2PPortOffset is the distance between a node's API and libp2p ports.
	P2PPortOffset = 100
	// portLow and portHigh bound the base ports tried.
	portLow  = 20000
	portHigh = 60000
	// portStep separates the candidate bases: more than a whole layout.
	portStep = P2PPortOffset + NodesMax + 47
	// portCandidates is how many bases fit between portLow and portHigh.
	portCandidates = (portHigh - portLow - P2PPortOffset - NodesMax) / portStep
	// ReadyTimeout bounds the wait for every node to answer /v1/status and
	// see all its peers.
	ReadyTimeout = 60 * time.Second
	// readyPoll is the pause between readiness checks.
	readyPoll = 100 * time.Millisecond
	// readyAttemptTimeout bounds one /v1/status call while waiting.
	readyAttemptTimeout = 2 * time.Second
	// StopTimeout bounds the wait for the nodes to exit after SIGTERM, and
	// killTimeout the wait after SIGKILL.
	StopTimeout = 30 * time.Second
	killTimeout = 10 * time.Second
	// logTailBytes is how much of a failed node's log an error quotes.
	logTailBytes = 300
	// benchChainID is the chain id of the clusters made here.
	benchChainID = "ordo-bench"
)

// ClusterConfig configures a local cluster of `ordo node` processes.
type ClusterConfig struct {
	Nodes      int    // validators, NodesMin..NodesMax
	Executable string // the ordo binary, run as `EXE node --home …`
	// ParentDir is where the cluster's temporary directory is made (default
	// os.TempDir()). Its file system decides what an fsync costs.
	ParentDir string
	// Keep leaves the cluster's directory (keys, genesis, data, node logs)
	// in place after Stop.
	Keep bool
	// ProfileDir, if set, makes every node write a CPU profile of its whole
	// run to ProfileDir/nodeI.cpu.pprof, complete once Stop returns.
	ProfileDir string
	// Log receives one line per step (may be nil).
	Log io.Writer
}

// Cluster is a running local network.
type Cluster struct {
	Dir      string        // homes are Dir/nodeI
	Genesis  *node.Genesis // open admission
	BasePort int
	profiles string
	keep     bool
	log      io.Writer
	procs    []*nodeProc
}

type nodeProc struct {
	name string
	home string
	api  string
	cmd  *exec.Cmd
	logf *os.File
	done chan struct{} // closed when the process has exited
	err  error         // Wait's answer, valid after done
}

// APIPort and P2PPort are node i's ports for base port base.
func APIPort(base, i int) int { return base + i }

// P2PPort is node i's libp2p port.
func P2PPort(base, i int) int { return base + P2PPortOffset + i }

// nodeArgs is the command line of node i, after the executable; profiles is
// ClusterConfig.ProfileDir.
func nodeArgs(home string, base, i int, profiles string) []string {
	args := []string{
		"node", "--home", home,
		"--api", "127.0.0.1:" + strconv.Itoa(APIPort(base, i)),
		"--p2p", p2pAddr(base, i),
		"--log-level", "warn",
	}
	if profiles != "" {
		args = append(args, "--cpuprofile", filepath.Join(profiles, "node"+strconv.Itoa(i)+".cpu.pprof"))
	}
	return args
}

func p2pAddr(base, i int) string {
	return "/ip4/127.0.0.1/tcp/" + strconv.Itoa(P2PPort(base, i))
}

// checkNodes refuses a node count the layout cannot hold.
func checkNodes(n int) error {
	if n < NodesMin || n > NodesMax {
		return fmt.Errorf("%d nodes: want %d..%d", n, NodesMin, NodesMax)
	}
	return nil
}

// portFree reports whether a TCP port on 127.0.0.1 can be listened on now.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// freeBasePort returns the first base among candidates whose 2n ports all
// pass free. A port can still be taken between the probe and the node's
// start; the node then fails to start and Launch says so.
func freeBasePort(n int, candidates []int, free func(port int) bool) (int, error) {
	if err := checkNodes(n); err != nil {
		return 0, err
	}
	for _, base := range candidates {
		if base < 1024 || P2PPort(base, n-1) > 65535 {
			continue
		}
		ok := true
		for i := 0; i < n && ok; i++ {
			ok = free(APIPort(base, i)) && free(P2PPort(base, i))
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free range of ports for %d nodes among %d candidates in %d..%d", n, len(candidates), portLow, portHigh)
}

// baseCandidates lists every candidate base, starting at a random one, so
// that two benchmarks started together rarely probe the same ports.
func baseCandidates() []int {
	first := rand.IntN(portCandidates)
	out := make([]int, portCandidates)
	for k := range out {
		out[k] = portLow + ((first+k)%portCandidates)*portStep
	}
	return out
}

// Launch creates keys, an open-admission genesis and a home per node in a
// new temporary directory, starts the nodes and waits until every one
// answers /v1/status and is connected to all its peers. On failure it stops
// what it started and keeps the directory for its logs.
func Launch(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if err := checkNodes(cfg.Nodes); err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	if cfg.Executable == "" {
		return nil, errors.New("launch: no ordo executable given")
	}
	base, err := freeBasePort(cfg.Nodes, baseCandidates(), portFree)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	dir, err := os.MkdirTemp(cfg.ParentDir, "ordo-bench-*")
	if err != nil {
		return nil, fmt.Errorf("launch: temporary directory: %w", err)
	}
	c := &Cluster{Dir: dir, BasePort: base, profiles: cfg.ProfileDir, keep: cfg.Keep, log: cfg.Log}
	c.logf("creating a %d-node network in %s (API ports %d.., libp2p %d..)", cfg.Nodes, dir, base, P2PPort(base, 0))
	if err := c.create(cfg.Nodes); err != nil {
		c.keep = true
		return nil, errors.Join(fmt.Errorf("launch: %w", err), c.Stop())
	}
	for i := 0; i < cfg.Nodes; i++ {
		if err := c.start(cfg.Executable, i); err != nil {
			c.keep = true
			return nil, errors.Join(fmt.Errorf("launch: %w", err), c.Stop())
		}
	}
	if err := c.waitReady(ctx); err != nil {
		c.keep = true
		return nil, errors.Join(fmt.Errorf("launch: %w", err), c.Stop())
	}
	c.logf("%d nodes ready", cfg.Nodes)
	return c, nil
}

func (c *Cluster) logf(format string, args ...any) {
	if c.log != nil {
		fmt.Fprintf(c.log, "ordo bench: "+format+"\n", args...)
	}
}

func (c *Cluster) home(i int) string { return filepath.Join(c.Dir, "node"+strconv.Itoa(i)) }

// create writes node.key and genesis.json into every home, as testnet.sh does.
func (c *Cluster) create(n int) error {
	g := &node.Genesis{
		ChainID:   benchChainID,
		Params:    node.DefaultParams(),
		Admission: node.Admission{Mode: node.AdmissionOpen},
	}
	for i := 0; i < n; i++ {
		if err := os.Mkdir(c.home(i), 0o755); err != nil {
			return fmt.Errorf("node%d home: %w", i, err)
		}
		key, err := crypto.GenerateKey(nil)
		if err != nil {
			return fmt.Errorf("node%d key: %w", i, err)
		}
		if err := crypto.WriteKeyFile(filepath.Join(c.home(i), "node.key"), key); err != nil {
			return fmt.Errorf("node%d key: %w", i, err)
		}
		g.Validators = append(g.Validators, node.Validator{
			Name: "node" + strconv.Itoa(i), PublicKey: key.Public(), P2PAddrs: []string{p2pAddr(c.BasePort, i)},
		})
	}
	paths := []string{filepath.Join(c.Dir, "genesis.json")}
	for i := 0; i < n; i++ {
		paths = append(paths, filepath.Join(c.home(i), "genesis.json"))
	}
	for _, path := range paths {
		if err := node.WriteGenesis(path, g); err != nil {
			return err
		}
	}
	c.Genesis = g
	return nil
}

func (c *Cluster) start(exe string, i int) error {
	home := c.home(i)
	logf, err := os.OpenFile(filepath.Join(home, "node.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node%d log: %w", i, err)
	}
	cmd := exec.Command(exe, nodeArgs(home, c.BasePort, i, c.profiles)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting node%d (%s): %w", i, exe, err)
	}
	p := &nodeProc{
		name: "node" + strconv.Itoa(i), home: home, cmd: cmd, logf: logf, done: make(chan struct{}),
		api: "http://127.0.0.1:" + strconv.Itoa(APIPort(c.BasePort, i)),
	}
	go func() {
		p.err = cmd.Wait()
		p.logf.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return nil
}

// APIs returns the nodes' API base URLs in replica order.
func (c *Cluster) APIs() []string {
	out := make([]string, len(c.procs))
	for i, p := range c.procs {
		out[i] = p.api
	}
	return out
}

// Processes returns the nodes' names and process ids in replica order.
func (c *Cluster) Processes() []Process {
	out := make([]Process, len(c.procs))
	for i, p := range c.procs {
		out[i] = Process{Name: p.name, PID: p.cmd.Process.Pid}
	}
	return out
}

// Exited returns an error naming the first node that is no longer running.
func (c *Cluster) Exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return p.exitError()
		default:
		}
	}
	return nil
}

func (p *nodeProc) exitError() error {
	return fmt.Errorf("%s exited (%v); last log lines: %s (log %s)", p.name, p.err,
		logTail(filepath.Join(p.home, "node.log")), filepath.Join(p.home, "node.log"))
}

// logTail returns the end of a log file on one line.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\n", " | "))
	if s == "" {
		return "(empty)"
	}
	return strconv.Quote(s)
}

// waitReady polls every node until all answer /v1/status with every peer
// connected, a node exits, ctx ends, or ReadyTimeout passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	cl, err := client.New(client.Config{Nodes: c.APIs(), Timeout: readyAttemptTimeout})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	peersWanted := len(c.procs) - 1
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.notReady(ctx, cl, peersWanted)
		case <-pause.C:
		}
		if err := c.Exited(); err != nil {
			return fmt.Errorf("during start-up: %w", err)
		}
		ready := 0
		for _, p := range c.procs {
			if st, err := cl.StatusOf(ctx, p.api); err == nil && st.PeersConnected >= peersWanted {
				ready++
			}
		}
		if ready == len(c.procs) {
			return nil
		}
		pause.Reset(readyPoll)
	}
}

// notReady explains why waitReady gave up.
func (c *Cluster) notReady(ctx context.Context, cl *client.Client, peersWanted int) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("waiting for the nodes: %w", ctx.Err())
	}
	check, cancel := context.WithTimeout(context.Background(), readyAttemptTimeout)
	defer cancel()
	var pending []string
	for _, p := range c.procs {
		st, err := cl.StatusOf(check, p.api)
		switch {
		case err != nil:
			pending = append(pending, fmt.Sprintf("%s does not answer (log %s)", p.name, filepath.Join(p.home, "node.log")))
		case st.PeersConnected < peersWanted:
			pending = append(pending, fmt.Sprintf("%s sees %d of %d peers", p.name, st.PeersConnected, peersWanted))
		}
	}
	return fmt.Errorf("nodes not ready within %v: %s", ReadyTimeout, strings.Join(pending, "; "))
}

// Stop sends SIGTERM to every node, waits up to StopTimeout for them to exit,
// kills the rest with SIGKILL, and removes the directory unless Keep was set
// (or launching failed). It reports nodes that had to be killed.
func (c *Cluster) Stop() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
		default:
			// An error here means the process is already gone; done says so.
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	// One deadline for all: they shut down in parallel.
	graceful, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	var errs []error
	for _, p := range c.procs {
		select {
		case <-p.done:
			continue
		case <-graceful.Done():
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("%s did not exit within %v of SIGTERM and was killed (log %s)",
				p.name, StopTimeout, filepath.Join(p.home, "node.log")))
		case <-time.After(killTimeout):
			errs = append(errs, fmt.Errorf("%s (pid %d) still runs %v after SIGKILL", p.name, p.cmd.Process.Pid, killTimeout))
		}
	}
	if c.keep || len(errs) > 0 {
		c.logf("kept the network's directory %s", c.Dir)
	} else if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", c.Dir, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("stopping the network: %w", errors.Join(errs...))
	}
	return nil
}
