package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ordoledger/ordo/cqrs"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/p2p"
	"github.com/ordoledger/ordo/pbft"
)

// Bounds and intervals of the node itself (protocol parameters live in genesis).
const (
	// tickInterval is how often the core learns the time while inputs come.
	// After tickIdleAfter without any, the driver ticks every tickIdleInterval
	// (the core's timers, retransmits and view-change timeouts of at least
	// 10 ms, need no finer grain), and the next input ticks first so the core
	// sees the time within tickInterval. A 1 ms ticker cost an idle node
	// about 2 % of a core in wakeups; a 10 ms tick under load cost about 10 %
	// of throughput (more CPU per event, batches waiting for the tick).
	tickInterval       = time.Millisecond
	tickIdleInterval   = 10 * time.Millisecond
	tickIdleAfter      = 50 * time.Millisecond
	retransmitInterval = 500 * time.Millisecond
	pendingRequestsMax = 1 << 16
	inboundQueueLen    = 8192
	submitQueueLen     = 4096
	executeQueueLen    = 1024
	executeGroupMax    = 64
	verifiedCacheLen   = 1 << 17
	driverDrainMax     = 512
	verifyQueueMax     = 4096 // frames the verifier holds off the transport
	verifyBatchMax     = 32   // signatures per batch verification: past this the per-signature gain is small and the wait grows
	replyTimeout       = 10 * time.Second
	submitsInFlightMax = 8192 // HTTP submits waiting for their replies at once
	// forwardAllAfterMax bounds how long a submitted request goes only to the
	// primary before every replica gets it (see forwardAllAfter).
	forwardAllAfterMax    = 500 * time.Millisecond
	admittedKeysMax       = 1 << 16
	shutdownTimeout       = 5 * time.Second
	httpReadHeaderTimeout = 5 * time.Second
	fetchEntriesMax       = 256
	fetchBytesMax         = 8 << 20
	executedKeepSeqs      = 4096
	// proposalsInFlightMax: as primary, propose a batch that is not full only
	// while fewer seqs than this await delivery (pbft.Config).
	proposalsInFlightMax = 1
)

// Config is everything a node needs; Run builds it from a home directory.
type Config struct {
	Genesis   *Genesis
	Key       crypto.PrivateKey
	DataDir   string
	InMemory  bool   // tests: keep the event log in memory
	APIListen string // host:port for the HTTP API; "" = no HTTP server
	P2PListen string // multiaddr; "" = this validator's first genesis p2p address
	Logger    *slog.Logger
	// ProjectionSpecs are declarative projections (Run loads them from
	// HOME/projections.json); Projections are Go projections of an embedder.
	ProjectionSpecs []cqrs.Spec
	Projections     []cqrs.Projection
	// Byzantine makes this validator lie, for tests: one of the Byzantine*
	// modes. Only binaries built with -tags byzantine accept it.
	Byzantine string
}

// Byzantine modes (test builds only).
const (
	ByzantineEquivocate  = "equivocate"   // as primary, conflicting PRE-PREPAREs to different replicas
	ByzantineWrongDigest = "wrong-digest" // PREPAREs and COMMITs for a digest nobody proposed
	ByzantineSilent      = "silent"       // sends no protocol message at all
)

// Node is one running validator.
type Node struct {
	cfg     Config
	log     *slog.Logger
	genesis *Genesis
	chain   crypto.Digest
	keys    []crypto.PublicKey
	self    uint32
	signer  *crypto.Signer

	store   *eventlog.Log // the committed log; written by the executor alone
	proto   *protoStore   // protocol state (votes, view) in its own file: a vote never waits behind a batch's write
	machine *ledger.Machine
	views   *cqrs.Engine
	host    *p2p.Host
	metrics *metrics

	replica       *pbft.Replica             // owned by the driver goroutine
	persisted     map[string]*pbft.Envelope // driver: protocol state on disk, by key
	envCounter    uint64                    // driver: orders persisted envelopes
	persistedView uint64                    // driver: the view on disk
	prunedView    uint64                    // driver: when the last pruning pass ran
	prunedStable  uint64
	prunedAt      time.Time
	lastTimestamp int64 // executor: log time of the applied head
	verified      *requestCache
	admitted      admittedKeys
	replies       *replyTracker

	submitCh     chan submission
	submitChecks chan *submitCheck
	stepCh       chan pbft.Message
	execCh       chan execItem
	appliedKick  chan struct{}
	fetchKick    chan uint64
	appliedSeq   atomic.Uint64
	appliedMu    sync.Mutex
	appliedNotes []appliedNote // executor → driver: batches made durable

	status atomic.Pointer[pbft.Status]
	halted atomic.Pointer[string] // why this replica stopped voting or executing; nil while healthy

	submitsInFlight atomic.Int64

	httpServer *http.Server
	apiAddr    string

	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// New opens storage and the transport and restores protocol state; Start runs it.
func New(cfg Config) (*Node, error) {
	if cfg.Genesis == nil {
		return nil, errors.New("node: no genesis")
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("node: no validator key")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch cfg.Byzantine {
	case "":
	case ByzantineEquivocate, ByzantineWrongDigest, ByzantineSilent:
		if !byzantineBuild {
			return nil, errors.New("node: this build has no Byzantine behaviours (they exist only in test builds: go build -tags byzantine)")
		}
	default:
		return nil, fmt.Errorf("node: unknown Byzantine mode %q (want %s, %s or %s)", cfg.Byzantine, ByzantineEquivocate, ByzantineWrongDigest, ByzantineSilent)
	}
	g := cfg.Genesis
	self := -1
	for i, v := range g.Validators {
		if v.PublicKey == cfg.Key.Public() {
			self = i
		}
	}
	if self < 0 {
		return nil, fmt.Errorf("node: key %v is not a validator in genesis %q", cfg.Key.Public(), g.ChainID)
	}
	n := &Node{
		cfg:          cfg,
		genesis:      g,
		chain:        g.Hash(),
		keys:         g.Keys(),
		self:         uint32(self),
		log:          cfg.Logger.With("node", g.Validators[self].Name),
		verified:     newRequestCache(verifiedCacheLen),
		submitCh:     make(chan submission, submitQueueLen),
		submitChecks: make(chan *submitCheck, submitChecksQueueLen),
		stepCh:       make(chan pbft.Message, inboundQueueLen),
		execCh:       make(chan execItem, executeQueueLen),
		appliedKick:  make(chan struct{}, 1),
		fetchKick:    make(chan uint64, 1),
		stop:         make(chan struct{}),
	}
	n.signer = crypto.NewSigner(cfg.Key, n.chain)
	n.metrics = newMetrics()
	n.replies = newReplyTracker(pbft.MaxFaulty(len(n.keys))+1, n.self)

	var err error
	n.store, err = eventlog.Open(eventlog.Options{
		Dir:        cfg.DataDir,
		InMemory:   cfg.InMemory,
		SyncWrites: false, // the driver and the executor group-commit with explicit syncs
		Genesis:    n.chain,
		Logger:     n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: open event log: %w", err)
	}
	protoDir := cfg.DataDir
	if cfg.InMemory {
		protoDir = ""
	}
	n.proto, err = openProtoStore(protoDir, n.chain, n.log)
	if err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node: open protocol state: %w", err)
	}
	n.machine, err = ledger.NewMachine(ledger.Config{})
	if err != nil {
		n.proto.Close()
		n.store.Close()
		return nil, fmt.Errorf("node: ledger: %w", err)
	}
	projDir := ""
	if !cfg.InMemory {
		projDir = filepath.Join(cfg.DataDir, "projections")
	}
	n.views, err = cqrs.Open(cqrs.Options{Dir: projDir, InMemory: cfg.InMemory, Log: n.store, Logger: n.log, Specs: cfg.ProjectionSpecs})
	if err != nil {
		n.proto.Close()
		n.store.Close()
		return nil, fmt.Errorf("node: projections: %w", err)
	}
	for _, p := range cfg.Projections {
		if err := n.views.Register(p); err != nil {
			n.closeStorage()
			return nil, fmt.Errorf("node: projections: %w", err)
		}
	}
	n.metrics.reg.MustRegister(n.views.Collectors()...)
	state, err := n.restoreState()
	if err != nil {
		n.closeStorage()
		return nil, err
	}
	p := g.Params
	n.replica, err = pbft.New(pbft.Config{
		ChainID:              n.chain,
		Validators:           n.keys,
		Self:                 n.self,
		Signer:               n.signer,
		BatchRequestsMax:     p.BatchRequestsMax,
		BatchBytesMax:        p.BatchBytesMax,
		BatchDelay:           time.Duration(p.BatchDelayMs) * time.Millisecond,
		ProposalsInFlightMax: proposalsInFlightMax,
		WindowSeqs:           p.WindowSeqs,
		PendingRequestsMax:   pendingRequestsMax,
		ClockSkewMax:         time.Duration(p.ClockSkewMaxMs) * time.Millisecond,
		RetransmitInterval:   retransmitInterval,
		Verifier:             pbft.ChainVerifier{Chain: n.chain},
		CheckpointInterval:   p.CheckpointInterval,
		ViewChangeTimeout:    time.Duration(p.ViewChangeTimeoutMs) * time.Millisecond,
	}, state)
	if err != nil {
		n.closeStorage()
		return nil, fmt.Errorf("node: %w", err)
	}
	st := n.replica.Status()
	n.status.Store(&st)

	listen := cfg.P2PListen
	if listen == "" {
		if len(g.Validators[self].P2PAddrs) == 0 {
			n.closeStorage()
			return nil, errors.New("node: no p2p listen address given and none in genesis for this validator")
		}
		listen = g.Validators[self].P2PAddrs[0]
	}
	peers := make([]p2p.Peer, len(g.Validators))
	for i, v := range g.Validators {
		peers[i] = p2p.Peer{Index: uint32(i), PublicKey: v.PublicKey, Addrs: v.P2PAddrs}
	}
	n.host, err = p2p.New(p2p.Config{
		Key:         cfg.Key,
		Self:        n.self,
		Peers:       peers,
		ListenAddrs: []string{listen},
		Logger:      n.log,
	})
	if err != nil {
		n.closeStorage()
		return nil, fmt.Errorf("node: %w", err)
	}
	n.host.SetRequestHandler(n.serveFetch)
	n.registerLive()
	return n, nil
}

// Start runs the node's goroutines and, when configured, the HTTP API.
func (n *Node) Start() error {
	if n.cfg.APIListen != "" {
		ln, err := net.Listen("tcp", n.cfg.APIListen)
		if err != nil {
			return fmt.Errorf("node: http listen %s: %w", n.cfg.APIListen, err)
		}
		n.apiAddr = ln.Addr().String()
		n.httpServer = &http.Server{Handler: n.routes(), ReadHeaderTimeout: httpReadHeaderTimeout}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("http server stopped", "err", err)
			}
		}()
	}
	n.host.Start()
	n.views.Start()
	n.wg.Add(5)
	go n.runSubmitChecker()
	go n.runVerifier()
	go n.runDriver()
	go n.runExecutor()
	go n.runFetcher()
	n.kickFetch(0)
	if n.cfg.Byzantine != "" {
		n.log.Warn("BYZANTINE TEST MODE: this validator lies", "mode", n.cfg.Byzantine)
	}
	n.log.Info("node started", "index", n.self, "peer_id", n.host.PeerID(), "api", n.apiAddr, "executed_seq", n.status.Load().Delivered)
	return nil
}

// halt records that storage failed under the driver or the executor: the
// replica stops voting rather than promise what it did not persist. The node
// keeps serving reads, says why in /v1/status, and drains inbound protocol
// traffic so that peers are not held back by it.
func (n *Node) halt(why string, err error) {
	msg := fmt.Sprintf("%s: %v", why, err)
	if n.halted.CompareAndSwap(nil, &msg) {
		n.log.Error(why, "err", err)
		n.metrics.halted.Set(1)
	}
}

// APIAddr is the address the HTTP API listens on ("" without one).
func (n *Node) APIAddr() string { return n.apiAddr }

// Close stops the node: HTTP first, then the goroutines, then transport and storage.
func (n *Node) Close() error {
	var err error
	n.closeMu.Do(func() {
		if n.httpServer != nil {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			n.httpServer.Shutdown(ctx)
			cancel()
		}
		close(n.stop)
		err = n.host.Close()
		n.wg.Wait()
		if cerr := n.closeStorage(); err == nil {
			err = cerr
		}
	})
	return err
}

// closeStorage closes the projections, then the log they read, then the
// protocol state.
func (n *Node) closeStorage() error {
	err := n.views.Close()
	if lerr := n.store.Close(); err == nil {
		err = lerr
	}
	if perr := n.proto.Close(); err == nil {
		err = perr
	}
	return err
}

// RunConfig is what `ordo node` passes.
type RunConfig struct {
	Home      string
	APIListen string
	P2PListen string
	Logger    *slog.Logger
	Byzantine string // test builds only; see Config.Byzantine
}

// Run starts a node from a home directory (node.key, genesis.json, data/) and
// serves until ctx is cancelled.
func Run(ctx context.Context, rc RunConfig) error {
	if rc.Home == "" {
		return errors.New("--home is required")
	}
	if _, err := os.Stat(rc.Home); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	key, err := crypto.ReadKeyFile(filepath.Join(rc.Home, "node.key"))
	if err != nil {
		return err
	}
	g, err := LoadGenesis(filepath.Join(rc.Home, "genesis.json"))
	if err != nil {
		return err
	}
	specs, err := loadProjectionSpecs(rc.Home)
	if err != nil {
		return err
	}
	api := rc.APIListen
	if api == "" {
		api = "127.0.0.1:7700"
	}
	n, err := New(Config{
		Genesis:         g,
		Key:             key,
		DataDir:         filepath.Join(rc.Home, "data"),
		APIListen:       api,
		P2PListen:       rc.P2PListen,
		Logger:          rc.Logger,
		ProjectionSpecs: specs,
		Byzantine:       rc.Byzantine,
	})
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		n.Close()
		return err
	}
	<-ctx.Done()
	n.log.Info("stopping")
	return n.Close()
}

// projectionSpecFiles are the names a declarative projection file may have in
// a node's home; at most one may exist.
var projectionSpecFiles = []string{"projections.yaml", "projections.yml", "projections.json"}

func loadProjectionSpecs(home string) ([]cqrs.Spec, error) {
	var found []string
	for _, name := range projectionSpecFiles {
		if _, err := os.Stat(filepath.Join(home, name)); err == nil {
			found = append(found, name)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return cqrs.LoadSpecs(filepath.Join(home, found[0]))
	}
	return nil, fmt.Errorf("home %s has %s: keep one projection file", home, strings.Join(found, " and "))
}

// appendWaiting appends to batch what already waits on ch, without blocking,
// until batch holds max.
func appendWaiting[T any](batch []T, ch <-chan T, max int) []T {
	for len(batch) < max {
		select {
		case v := <-ch:
			batch = append(batch, v)
		default:
			return batch
		}
	}
	return batch
}
