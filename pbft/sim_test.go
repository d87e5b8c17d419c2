package pbft

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// This file is the simulated world the scripted tests and the simulator
// drive n replicas in: a network, a clock and the node around each core
// (persistence with Prunable, delivery, Executed, state transfer, request
// forwarding). Everything is a function of the seed: one rand source, a fake
// clock advanced only by the run loop, events ordered by (time, id).

// simEpoch is where simulated time starts.
var simEpoch = time.Unix(1_700_000_000, 0)

// simTick is how often every replica is ticked.
const simTick = time.Millisecond

// simEventsMax bounds the events one run handles. A seed of the scenarios
// handles about 2,000 on average and under 10,000 at most; far more means
// replicas keep messaging each other without end, which would otherwise
// show only as a run that never finishes.
const simEventsMax = 2_000_000

type simOptions struct {
	n    int
	seed uint64
	// cheap: cheapSigner and cheapVerifier for replicas and clients instead
	// of Ed25519.
	cheap bool
	// tick overrides simTick.
	tick time.Duration
	// cfg adjusts every replica's Config.
	cfg func(*Config)
}

// Sides of a partition: an instance hears another when their sides overlap.
const (
	sideA    uint8 = 1
	sideB    uint8 = 2
	sideBoth       = sideA | sideB
)

type simEvent struct {
	at   time.Time
	id   uint64
	to   *simNode
	from uint32
	// msg is a message the node decoded and verified (once per send, shared
	// by every recipient); request a forwarded client request; both nil for
	// a fetch completion.
	msg     *Message
	request []byte
}

type eventHeap []*simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*simEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

type sigKey struct {
	kind      Kind
	view, seq uint64
}

// simNode is one instance of a replica and the node around it. A twin is a
// second instance of a replica, with the same key.
type simNode struct {
	id    uint32
	twin  bool
	byz   bool
	sides uint8
	r     *Replica
	up    bool
	// incarnation changes at every crash, so that the rest of a dead
	// incarnation's actions are dropped.
	incarnation int
	// Durable state, as a node would keep it on disk.
	st        State
	prunedAt  [3]uint64 // (applied, stable, view) of the last pruning
	persisted map[string]bool
	signed    map[sigKey]crypto.Digest
	executed  map[crypto.Digest]bool
	delivered uint64
	lastTS    int64
	chainHash crypto.Digest
	requests  int
	caughtUp  int
	fetches   int
	fetchDue  bool
	restarts  int
	// maxInFlight is the most seqs this instance had in flight at once.
	maxInFlight int
	// holdExecution keeps the seqs this replica delivers in heldExecution
	// instead of reporting them Executed at once, as a slow executor would;
	// executeHeld reports them.
	holdExecution bool
	heldExecution []uint64
}

type sim struct {
	t        testing.TB
	seed     uint64
	scenario string
	rng      *rand.Rand
	n, f     int
	keys     []crypto.PrivateKey
	pubs     []crypto.PublicKey
	chain    crypto.Digest
	cheap    bool
	tickLen  time.Duration
	cfgs     []Config
	nodes    []*simNode // the instance of each replica
	twins    []*simNode // a second instance of replica i, or nil
	now      time.Time
	events   eventHeap
	nextID   uint64
	// handled counts the events run, against simEventsMax.
	handled int

	// Network faults.
	lossRate   float64
	dupRate    float64
	delayMax   time.Duration
	cut        [][]bool // cut[from][to]
	drop       func(from, to uint32, env *Envelope) bool
	fetchDelay time.Duration
	// crashMidRate: the chance that a node dies in the middle of carrying out
	// a list of actions, just before or just after its Persist.
	crashMidRate float64
	// byzOut rewrites what a Byzantine instance sends to replica to: the
	// envelopes returned go out instead (nil: nothing).
	byzOut func(from *simNode, to uint32, env *Envelope) []*Envelope

	// opened memoizes Open per envelope (envelopes are immutable, and
	// decoding them is deterministic): a retransmission, or an envelope
	// persisted and then sent, is decoded once.
	opened map[*Envelope]*Message

	// The agreed log: log[s-1] is the first Deliver an honest instance made
	// for seq s; chainAt[s-1] the hash chain after it.
	log     []Deliver
	chainAt []crypto.Digest
	inLog   map[crypto.Digest]uint64 // request ID → seq of the agreed log
	// dupCommits counts requests committed again at a later seq.
	dupCommits int

	clients   []Signer
	clientPub []crypto.PublicKey
	admitted  map[crypto.PublicKey]bool
	client    Signer // clients[0]
	clientSeq uint64

	// violation is the first invariant broken, when the run expects one
	// (the negative control); otherwise a violation fails the test.
	expectViolation bool
	violation       string
}

func testKey(t testing.TB, tag string, i int) crypto.PrivateKey {
	seed := crypto.Hash([]byte(tag), binary.BigEndian.AppendUint32(nil, uint32(i)))
	k, err := crypto.NewKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cheapSigner stands in for Ed25519 where signing cost would dominate: a
// "signature" is SHA-256 over the public key, kind and body, twice over for
// 64 bytes. Anyone holding the public key could forge it; the simulated
// Byzantine replicas never do (they sign with their own key only), so within
// the simulator it is as unforgeable as the real thing, and still tells a
// signature of one kind, body or key from another.
type cheapSigner struct{ pub crypto.PublicKey }

func (c cheapSigner) Sign(kind string, body []byte) []byte { return cheapSig(c.pub, kind, body) }

func cheapSig(pub crypto.PublicKey, kind string, body []byte) []byte {
	h := crypto.Hash(pub[:], []byte(kind), []byte{0}, body)
	return append(h[:], h[:]...)
}

// cheapVerifier checks cheapSigner signatures.
type cheapVerifier struct{}

func (cheapVerifier) Verify(pub crypto.PublicKey, kind string, body, sig []byte) bool {
	return bytes.Equal(sig, cheapSig(pub, kind, body))
}

func testConfig() Config {
	return Config{
		ChainID:            crypto.Hash([]byte("ordo/test/chain")),
		BatchRequestsMax:   64,
		BatchBytesMax:      64 << 10,
		BatchDelay:         2 * time.Millisecond,
		WindowSeqs:         16,
		CheckpointInterval: 4,
		PendingRequestsMax: 1024,
		ClockSkewMax:       time.Second,
		RetransmitInterval: 50 * time.Millisecond,
		ViewChangeTimeout:  400 * time.Millisecond,
	}
}

// simClients is how many admitted client keys the simulated world has.
const simClients = 3

func newSim(t testing.TB, o simOptions) *sim {
	t.Helper()
	s := &sim{
		t:          t,
		seed:       o.seed,
		rng:        rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)),
		n:          o.n,
		f:          MaxFaulty(o.n),
		now:        simEpoch,
		cheap:      o.cheap,
		tickLen:    simTick,
		fetchDelay: 5 * time.Millisecond,
		inLog:      map[crypto.Digest]uint64{},
		opened:     map[*Envelope]*Message{},
		admitted:   map[crypto.PublicKey]bool{},
	}
	if o.tick > 0 {
		s.tickLen = o.tick
	}
	base := testConfig()
	s.chain = base.ChainID
	for i := 0; i < o.n; i++ {
		k := testKey(t, "replica", i)
		s.keys = append(s.keys, k)
		s.pubs = append(s.pubs, k.Public())
	}
	for i := range simClients {
		k := testKey(t, "client", i)
		var signer Signer = crypto.NewSigner(k, s.chain)
		if s.cheap {
			signer = cheapSigner{pub: k.Public()}
		}
		s.clients = append(s.clients, signer)
		s.clientPub = append(s.clientPub, k.Public())
		s.admitted[k.Public()] = true
	}
	s.client = s.clients[0]
	s.cut = make([][]bool, o.n)
	s.twins = make([]*simNode, o.n)
	for i := 0; i < o.n; i++ {
		s.cut[i] = make([]bool, o.n)
		cfg := base
		cfg.Validators = s.pubs
		cfg.Self = uint32(i)
		cfg.Signer = s.signer(uint32(i))
		cfg.Verifier = s.verifier()
		if o.cfg != nil {
			o.cfg(&cfg)
		}
		s.cfgs = append(s.cfgs, cfg)
		node := s.newNode(uint32(i))
		r, err := New(cfg, State{})
		if err != nil {
			t.Fatalf("New replica %d: %v", i, err)
		}
		node.r, node.up = r, true
		s.nodes = append(s.nodes, node)
	}
	return s
}

func (s *sim) newNode(id uint32) *simNode {
	return &simNode{id: id, sides: sideBoth, persisted: map[string]bool{}, signed: map[sigKey]crypto.Digest{}, executed: map[crypto.Digest]bool{}}
}

// signer is replica i's signer (a Byzantine replica uses its own key only).
func (s *sim) signer(i uint32) Signer {
	if s.cheap {
		return cheapSigner{pub: s.pubs[i]}
	}
	return crypto.NewSigner(s.keys[i], s.chain)
}

func (s *sim) verifier() Verifier {
	if s.cheap {
		return cheapVerifier{}
	}
	return ChainVerifier{Chain: s.chain}
}

// addTwin starts a second instance of replica i from the same (fresh) state:
// a Byzantine replica whose two halves equivocate and forget each other.
func (s *sim) addTwin(i uint32) *simNode {
	tw := s.newNode(i)
	tw.twin, tw.byz = true, true
	r, err := New(s.cfgs[i], State{})
	if err != nil {
		s.t.Fatalf("New twin %d: %v", i, err)
	}
	tw.r, tw.up = r, true
	s.twins[i] = tw
	s.nodes[i].byz = true
	return tw
}

// instances returns every instance: the replicas in order, then the twins.
func (s *sim) instances() []*simNode {
	out := append([]*simNode(nil), s.nodes...)
	for _, tw := range s.twins {
		if tw != nil {
			out = append(out, tw)
		}
	}
	return out
}

func (s *sim) replayHint() string {
	if s.scenario == "" {
		return fmt.Sprintf("seed %d", s.seed)
	}
	return fmt.Sprintf("scenario %s, seed %d; replay: ORDO_SIM_SEED=%d ORDO_SIM_SCENARIO=%s go test ./pbft/ -run 'TestSimulator/%s$' -v",
		s.scenario, s.seed, s.seed, s.scenario, s.scenario)
}

func (s *sim) failf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s, t=%v: %s", s.replayHint(), s.now.Sub(simEpoch), fmt.Sprintf(format, args...))
}

// violate reports a broken invariant: fatal, unless the run expects one.
func (s *sim) violate(format string, args ...any) {
	s.t.Helper()
	if s.expectViolation {
		if s.violation == "" {
			s.violation = fmt.Sprintf(format, args...)
		}
		return
	}
	s.failf(format, args...)
}

// signedRequest builds a request signed by client c.
func (s *sim) signedRequest(c int, seq uint64, command []byte) []byte {
	return signedRequestBy(s.clients[c], s.clientPub[c], seq, command)
}

// signedRequestBy encodes command as request seq of client pub, signed by signer.
func signedRequestBy(signer Signer, pub crypto.PublicKey, seq uint64, command []byte) []byte {
	body := codec.MustMarshal(&Request{Client: pub, Seq: seq, Command: command})
	return codec.MustMarshal(&SignedRequest{Body: body, Sig: signer.Sign(KindRequest.String(), body)})
}

// request returns a new signed request of the first client.
func (s *sim) request(command []byte) []byte {
	s.clientSeq++
	return s.signedRequest(0, s.clientSeq, command)
}

// submit hands raw to the given replicas (all when none given) at once, as a
// client that sends to every validator does.
func (s *sim) submit(raw []byte, to ...uint32) error {
	if len(to) == 0 {
		for i := range s.nodes {
			to = append(to, uint32(i))
		}
	}
	var first error
	for _, i := range to {
		for _, node := range []*simNode{s.nodes[i], s.twins[i]} {
			if node == nil || !node.up {
				continue
			}
			acts, err := node.r.Submit(raw)
			if err != nil && first == nil {
				first = err
			}
			s.applyTo(node, acts)
		}
	}
	return first
}

// submitVia hands raw to replica via, which forwards it to every other
// replica over the (lossy) network, as the node does.
func (s *sim) submitVia(raw []byte, via uint32) {
	for _, node := range []*simNode{s.nodes[via], s.twins[via]} {
		if node == nil || !node.up {
			continue
		}
		acts, _ := node.r.Submit(raw)
		s.applyTo(node, acts)
		for j := range s.nodes {
			if uint32(j) != via {
				s.route(node, uint32(j), func(to *simNode, at time.Time) {
					s.push(&simEvent{at: at, to: to, from: via, request: raw})
				})
			}
		}
	}
}

func (s *sim) push(e *simEvent) {
	s.nextID++
	e.id = s.nextID
	heap.Push(&s.events, e)
}

// inject delivers an envelope to replica to's instance at once, as if it
// came over the network from replica from.
func (s *sim) inject(to, from uint32, env *Envelope) {
	if m := s.receive(from, codec.MustMarshal(env)); m != nil {
		s.push(&simEvent{at: s.now, to: s.nodes[to], from: from, msg: m})
	}
}

// receive does what a node does with a frame from replica from before Step:
// decode, open, check that the sender signed it (replicas relay nothing),
// verify the signature and every request of a PRE-PREPARE's batch. It
// returns nil for what the node refuses.
func (s *sim) receive(from uint32, data []byte) *Message {
	env, err := DecodeEnvelope(data)
	if err != nil {
		return nil
	}
	m, err := env.Open(s.n)
	if err != nil || m.From != from || !s.verified(m) {
		return nil
	}
	return &m
}

// receiveEnv is receive for an envelope built in this process: encoded and
// decoded the first time, taken from the memo after.
func (s *sim) receiveEnv(from uint32, env *Envelope) *Message {
	m, ok := s.opened[env]
	if !ok {
		m = s.receive(from, codec.MustMarshal(env))
		s.opened[env] = m
	}
	if m == nil || m.From != from || !s.verified(*m) {
		return nil
	}
	return m
}

// open is Envelope.Open, memoized.
func (s *sim) open(env *Envelope) (Message, error) {
	if m, ok := s.opened[env]; ok && m != nil {
		return *m, nil
	}
	m, err := env.Open(s.n)
	if err == nil {
		s.opened[env] = &m
	}
	return m, err
}

// route calls deliver for every instance of replica to that hears instance
// from, after the network's loss, duplication and delay.
func (s *sim) route(from *simNode, to uint32, deliver func(*simNode, time.Time)) {
	if s.cut[from.id][to] {
		return
	}
	for _, dst := range []*simNode{s.nodes[to], s.twins[to]} {
		if dst == nil || from.sides&dst.sides == 0 {
			continue
		}
		if s.lossRate > 0 && s.rng.Float64() < s.lossRate {
			continue
		}
		copies := 1
		if s.dupRate > 0 && s.rng.Float64() < s.dupRate {
			copies = 2
		}
		for range copies {
			at := s.now
			if s.delayMax > 0 {
				at = at.Add(time.Duration(s.rng.Int64N(int64(s.delayMax) + 1)))
			}
			deliver(dst, at)
		}
	}
}

// send sends env from an instance to the given replicas: encoded, decoded
// and verified once, as every recipient's node would.
func (s *sim) send(from *simNode, env *Envelope, to ...uint32) {
	var m *Message
	decoded := false
	for _, j := range to {
		if s.drop != nil && s.drop(from.id, j, env) {
			continue
		}
		if from.byz && s.byzOut != nil {
			for _, e := range s.byzOut(from, j, env) {
				if bm := s.receiveEnv(from.id, e); bm != nil {
					s.route(from, j, func(dst *simNode, at time.Time) {
						s.push(&simEvent{at: at, to: dst, from: from.id, msg: bm})
					})
				}
			}
			continue
		}
		if !decoded {
			m, decoded = s.receiveEnv(from.id, env), true
		}
		if m == nil {
			return
		}
		s.route(from, j, func(dst *simNode, at time.Time) {
			s.push(&simEvent{at: at, to: dst, from: from.id, msg: m})
		})
	}
}

// apply carries out the actions of replica i's instance.
func (s *sim) apply(i uint32, acts []Action) { s.applyTo(s.nodes[i], acts) }

// applyTo carries out one instance's actions as a node would, checking the
// invariants as it goes.
func (s *sim) applyTo(node *simNode, acts []Action) {
	inc := node.incarnation
	for _, a := range acts {
		if !node.up || node.incarnation != inc {
			return
		}
		switch a := a.(type) {
		case Persist:
			if s.crashMid(node) {
				return
			}
			for _, env := range a.Envelopes {
				s.persist(node, env)
			}
			node.st.View = a.View
			s.prune(node)
			if s.crashMid(node) {
				return
			}
		case Broadcast:
			s.checkOwn(node, a.Env)
			s.send(node, a.Env, s.others(node.id)...)
		case Send:
			s.checkOwn(node, a.Env)
			if a.To == node.id || int(a.To) >= s.n {
				s.failf("replica %d sends to %d", node.id, a.To)
			}
			s.send(node, a.Env, a.To)
		case Deliver:
			s.deliver(node, a)
		case Fetch:
			if a.AfterSeq > node.delivered {
				s.failf("replica %d fetches after %d but applied only %d", node.id, a.AfterSeq, node.delivered)
			}
			node.fetches++
			if !node.fetchDue {
				node.fetchDue = true
				s.push(&simEvent{at: s.now.Add(s.fetchDelay), to: node})
			}
		default:
			s.failf("replica %d returned unknown action %T", node.id, a)
		}
	}
	if node.up && node.incarnation == inc {
		node.maxInFlight = max(node.maxInFlight, node.r.inFlight())
	}
}

// crashMid kills node with probability crashMidRate (kill -9 around a
// persist), and reports whether it did.
func (s *sim) crashMid(node *simNode) bool {
	if s.crashMidRate == 0 || node.byz || s.rng.Float64() >= s.crashMidRate {
		return false
	}
	s.crashNode(node)
	return true
}

func envKey(env *Envelope) string { return env.Kind.String() + "|" + string(env.Body) }

// persist records an envelope as durable and checks I5 for an honest
// instance's own signatures.
func (s *sim) persist(node *simNode, env *Envelope) {
	m, err := s.open(env)
	if err != nil {
		s.failf("replica %d persists an envelope that does not open: %v", node.id, err)
	}
	node.persisted[envKey(env)] = true
	node.st.Log = append(node.st.Log, *env)
	if m.From != node.id || node.byz {
		return
	}
	s.noteSigned(node, m)
	if m.NewView != nil {
		for i := range m.NewView.PrePrepares {
			pp := &m.NewView.PrePrepares[i]
			node.persisted[envKey(pp)] = true
			if pm, err := pp.Open(s.n); err == nil {
				s.noteSigned(node, pm)
			}
		}
	}
}

// noteSigned checks I5: an honest replica never signs two different messages
// for one (kind, view, seq), across restarts.
func (s *sim) noteSigned(node *simNode, m Message) {
	k, d := sigKeyOf(m)
	if prev, ok := node.signed[k]; ok && prev != d {
		s.violate("I5: replica %d signed %v (view %d, seq %d) for %v after signing %v", node.id, k.kind, k.view, k.seq, d, prev)
	}
	node.signed[k] = d
}

func sigKeyOf(m Message) (sigKey, crypto.Digest) {
	switch {
	case m.PrePrepare != nil:
		return sigKey{KindPrePrepare, m.PrePrepare.View, m.PrePrepare.Seq}, m.PrePrepare.Digest
	case m.Prepare != nil:
		return sigKey{KindPrepare, m.Prepare.View, m.Prepare.Seq}, m.Prepare.Digest
	case m.Commit != nil:
		return sigKey{KindCommit, m.Commit.View, m.Commit.Seq}, m.Commit.Digest
	case m.Checkpoint != nil:
		return sigKey{KindCheckpoint, 0, m.Checkpoint.Seq}, m.Checkpoint.StateDigest
	case m.ViewChange != nil:
		return sigKey{KindViewChange, m.ViewChange.View, 0}, crypto.Hash(m.Env.Body)
	case m.NewView != nil:
		return sigKey{KindNewView, m.NewView.View, 0}, crypto.Hash(m.Env.Body)
	}
	return sigKey{}, crypto.Digest{}
}

// prune drops what Prunable releases, as the node does, whenever the stable
// checkpoint or the view moved (the applied seq alone releases little, and
// pruning later than allowed is always safe).
func (s *sim) prune(node *simNode) {
	stable, _, _ := node.r.StableCheckpoint()
	now := [3]uint64{node.delivered, stable, node.st.View}
	if now[1] == node.prunedAt[1] && now[2] == node.prunedAt[2] {
		return
	}
	node.prunedAt = now
	keep := node.st.Log[:0]
	for _, env := range node.st.Log {
		if !Prunable(&env, s.n, node.delivered, stable, node.st.View) {
			keep = append(keep, env)
		}
	}
	clear(node.st.Log[len(keep):])
	node.st.Log = keep
}

// checkOwn checks that an envelope leaving an honest instance was persisted.
func (s *sim) checkOwn(node *simNode, env *Envelope) {
	if node.byz {
		return
	}
	if !node.persisted[envKey(env)] {
		s.failf("replica %d sends a %v it has not persisted", node.id, env.Kind)
	}
}

// verifyCert is VerifyCertificate with the world's verifier.
func (s *sim) verifyCert(c *Certificate) error {
	seen := map[uint32]bool{}
	for i := range c.Commits {
		m, err := c.Commits[i].Open(s.n)
		if err != nil || m.Commit == nil {
			return fmt.Errorf("commit %d does not open as a commit: %v", i, err)
		}
		if m.Commit.View != c.View || m.Commit.Seq != c.Seq || m.Commit.Digest != c.Digest || seen[m.From] {
			return fmt.Errorf("commit %d of replica %d does not match", i, m.From)
		}
		if !s.verifier().Verify(s.pubs[m.From], KindCommit.String(), c.Commits[i].Body, c.Commits[i].Sig) {
			return fmt.Errorf("commit %d of replica %d: bad signature", i, m.From)
		}
		seen[m.From] = true
	}
	if len(seen) < Quorum(s.n) {
		return fmt.Errorf("%d commits, want %d", len(seen), Quorum(s.n))
	}
	return nil
}

// admittedRequest checks I3 for one request: an admitted client signed it.
func (s *sim) admittedRequest(raw []byte) error {
	sr, req, err := DecodeRequest(raw)
	if err != nil {
		return err
	}
	if !s.admitted[req.Client] {
		return fmt.Errorf("client %v is not admitted", req.Client)
	}
	if !s.verifier().Verify(req.Client, KindRequest.String(), sr.Body, sr.Sig) {
		return fmt.Errorf("bad client signature")
	}
	return nil
}

func (s *sim) deliver(node *simNode, d Deliver) {
	if d.Seq != node.delivered+1 {
		s.violate("I2: replica %d delivers seq %d after %d", node.id, d.Seq, node.delivered)
		return
	}
	if d.Timestamp <= node.lastTS {
		s.violate("replica %d delivers seq %d with log time %d, not after %d", node.id, d.Seq, d.Timestamp, node.lastTS)
	}
	c := &d.Cert
	if c.Seq != d.Seq || c.View != d.View || c.Digest != d.Digest {
		s.violate("replica %d delivers seq %d with a certificate for (view %d, seq %d, %v)", node.id, d.Seq, c.View, c.Seq, c.Digest)
	}
	if BatchDigest(c.Timestamp, d.Batch) != d.Digest {
		s.violate("replica %d delivers seq %d whose batch does not match its digest", node.id, d.Seq)
	}
	if err := s.verifyCert(c); err != nil {
		s.violate("replica %d delivers seq %d: %v", node.id, d.Seq, err)
	}
	if !node.byz {
		s.agree(node, d)
	}
	s.applied(node, d.Seq, d.Timestamp, d.Digest, d.Batch)
	if node.holdExecution {
		node.heldExecution = append(node.heldExecution, d.Seq)
		return
	}
	s.applyTo(node, node.r.Executed(d.Seq, node.chainHash))
}

// executeHeld reports replica i's held seqs Executed, in order, and returns
// the actions.
func (s *sim) executeHeld(i uint32) []Action {
	node := s.nodes[i]
	var acts []Action
	for _, seq := range node.heldExecution {
		more := node.r.Executed(seq, node.chainHash)
		s.applyTo(node, more)
		acts = append(acts, more...)
	}
	node.heldExecution = nil
	return acts
}

// agree checks I1, I3 and I4 for an honest delivery and extends the agreed log.
func (s *sim) agree(node *simNode, d Deliver) {
	switch {
	case int(d.Seq) == len(s.log)+1:
		for _, raw := range d.Batch {
			if err := s.admittedRequest(raw); err != nil {
				s.violate("I3: replica %d delivers at seq %d a request that is not valid: %v", node.id, d.Seq, err)
			}
			id := requestID(raw)
			if _, dup := s.inLog[id]; dup {
				// The core does not promise one commit per request (see
				// doc.go); the state machine executes it once.
				s.dupCommits++
				continue
			}
			s.inLog[id] = d.Seq
		}
		prev := crypto.Digest{}
		if len(s.chainAt) > 0 {
			prev = s.chainAt[len(s.chainAt)-1]
		}
		s.log = append(s.log, d)
		s.chainAt = append(s.chainAt, chainNext(prev, d.Seq, d.Digest))
	case int(d.Seq) <= len(s.log):
		first := s.log[d.Seq-1]
		if first.Digest != d.Digest {
			s.violate("I1: replica %d delivers %v at seq %d where another delivered %v", node.id, d.Digest, d.Seq, first.Digest)
			return
		}
		if first.Timestamp != d.Timestamp {
			s.violate("replica %d gives seq %d log time %d where another gave %d", node.id, d.Seq, d.Timestamp, first.Timestamp)
		}
	default:
		s.violate("replica %d delivers seq %d but the agreed log ends at %d", node.id, d.Seq, len(s.log))
		return
	}
	if want := s.chainAt[d.Seq-1]; chainNext(node.chainHash, d.Seq, d.Digest) != want {
		s.violate("I4: replica %d's hash chain at seq %d differs from the agreed one", node.id, d.Seq)
	}
}

// chainNext is the simulated entry hash: H(prev ‖ seq ‖ digest).
func chainNext(prev crypto.Digest, seq uint64, digest crypto.Digest) crypto.Digest {
	return crypto.Hash(prev[:], binary.BigEndian.AppendUint64(nil, seq), digest[:])
}

// applied records that node applied seq durably, as the node's event log
// does, and prunes what it no longer needs to keep.
func (s *sim) applied(node *simNode, seq uint64, ts int64, digest crypto.Digest, batch [][]byte) {
	node.delivered, node.lastTS = seq, ts
	node.chainHash = chainNext(node.chainHash, seq, digest)
	node.st.Delivered, node.st.LastTimestamp = seq, ts
	for _, raw := range batch {
		id := requestID(raw)
		if !node.executed[id] {
			node.executed[id] = true
			node.requests++
		}
	}
	s.prune(node)
}

// stateTransfer gives node every agreed entry it lacks, checking each
// certificate as a node does, telling the replica about each (Forget,
// Executed) and then CaughtUp.
func (s *sim) stateTransfer(node *simNode) {
	node.fetchDue = false
	if node.delivered >= uint64(len(s.log)) {
		return
	}
	inc := node.incarnation
	for seq := node.delivered + 1; seq <= uint64(len(s.log)); seq++ {
		e := s.log[seq-1]
		if err := s.verifyCert(&e.Cert); err != nil {
			s.failf("state transfer to %d: seq %d: %v", node.id, seq, err)
		}
		node.r.Forget(e.Batch)
		node.caughtUp++
		s.applied(node, seq, e.Timestamp, e.Digest, e.Batch)
		s.applyTo(node, node.r.Executed(seq, node.chainHash))
		if !node.up || node.incarnation != inc {
			return
		}
	}
	s.applyTo(node, node.r.CaughtUp(node.delivered, node.lastTS))
}

func (s *sim) handle(e *simEvent) {
	node := e.to
	if !node.up {
		return
	}
	switch {
	case e.request != nil:
		acts, _ := node.r.Submit(e.request)
		s.applyTo(node, acts)
	case e.msg == nil:
		s.stateTransfer(node)
	default:
		s.applyTo(node, node.r.Step(*e.msg))
	}
}

// verified does what the node does before Step: the envelope signature, and
// for a PRE-PREPARE every request's (admitted client, valid signature).
func (s *sim) verified(m Message) bool {
	if !s.verifier().Verify(s.pubs[m.From], m.Env.Kind.String(), m.Env.Body, m.Env.Sig) {
		return false
	}
	for _, raw := range m.Env.Batch {
		if s.admittedRequest(raw) != nil {
			return false
		}
	}
	return true
}

// step runs one event, or advances the clock one tick when none is due.
func (s *sim) step() {
	if s.events.Len() > 0 && !s.events[0].at.After(s.now) {
		s.handled++
		if s.handled > simEventsMax {
			s.failf("more than %d events: replicas keep messaging without end", simEventsMax)
		}
		s.handle(heap.Pop(&s.events).(*simEvent))
		return
	}
	s.now = s.now.Add(s.tickLen)
	for _, node := range s.instances() {
		if node.up {
			s.applyTo(node, node.r.Tick(s.now))
		}
	}
}

// runUntil steps until cond holds, failing after limit of simulated time.
func (s *sim) runUntil(limit time.Duration, what string, cond func() bool) {
	s.t.Helper()
	if !s.runFor(limit, cond) {
		s.failf("not reached within %v: %s", limit, what)
	}
}

// runFor steps until cond holds or limit of simulated time passes.
func (s *sim) runFor(limit time.Duration, cond func() bool) bool {
	deadline := s.now.Add(limit)
	for !cond() {
		if !s.now.Before(deadline) || s.violation != "" {
			return false
		}
		s.step()
	}
	return true
}

// allApplied reports whether every up honest replica applied at least count
// distinct requests.
func (s *sim) allApplied(count int) func() bool {
	return func() bool {
		for _, node := range s.nodes {
			if node.up && !node.byz && node.requests < count {
				return false
			}
		}
		return true
	}
}

func (s *sim) crash(i uint32) { s.crashNode(s.nodes[i]) }

func (s *sim) crashNode(node *simNode) {
	node.up = false
	node.r = nil
	node.incarnation++
	node.fetchDue = false
}

// restart rebuilds replica i from its durable state.
func (s *sim) restart(i uint32) { s.restartNode(s.nodes[i]) }

func (s *sim) restartNode(node *simNode) {
	s.t.Helper()
	st := node.st
	st.Log = append([]Envelope(nil), node.st.Log...)
	r, err := New(s.cfgs[node.id], st)
	if err != nil {
		s.failf("restart replica %d: %v", node.id, err)
	}
	node.r, node.up = r, true
	node.restarts++
	// What was applied but not durable is lost with the crash: the sim
	// applies durably at once, so nothing is.
}

// others returns every replica but i.
func (s *sim) others(i uint32) []uint32 {
	out := make([]uint32, 0, s.n-1)
	for j := range s.nodes {
		if uint32(j) != i {
			out = append(out, uint32(j))
		}
	}
	return out
}

// isolate cuts (or heals) every link to and from replica i.
func (s *sim) isolate(i uint32, cut bool) {
	for j := range s.nodes {
		if uint32(j) != i {
			s.cut[i][j], s.cut[j][i] = cut, cut
		}
	}
}

// isolateAll cuts every link, so actions are checked but go nowhere.
func (s *sim) isolateAll() {
	for i := range s.nodes {
		s.isolate(uint32(i), true)
	}
}

// heal restores every link.
func (s *sim) heal() {
	for i := range s.cut {
		clear(s.cut[i])
	}
}

// sealAs signs body as replica i would (a Byzantine replica uses its own key).
func (s *sim) sealAs(i uint32, kind Kind, body any, batch [][]byte) *Envelope {
	env := Seal(s.signer(i), kind, body)
	env.Batch = batch
	return env
}

// stepNow hands env to replica to at once, through the same decode, open and
// verify path as the network, carries out the actions and returns them.
func (s *sim) stepNow(to uint32, env *Envelope) []Action {
	s.t.Helper()
	got, err := DecodeEnvelope(codec.MustMarshal(env))
	if err != nil {
		s.failf("decode: %v", err)
	}
	m, err := got.Open(s.n)
	if err != nil {
		s.failf("open: %v", err)
	}
	if !s.verified(m) {
		s.failf("a %v from %d does not verify", got.Kind, m.From)
	}
	acts := s.nodes[to].r.Step(m)
	s.apply(to, acts)
	return acts
}

// tick advances the clock by d, ticking every replica every tick.
func (s *sim) tick(d time.Duration) {
	s.t.Helper()
	s.runFor(d, func() bool { return false })
}

// prePrepare builds a valid PRE-PREPARE of replica from for (view, seq).
func (s *sim) prePrepare(from uint32, view, seq uint64, ts int64, batch [][]byte) *Envelope {
	return s.sealAs(from, KindPrePrepare, &PrePrepare{View: view, Seq: seq, Digest: BatchDigest(ts, batch), Timestamp: ts, Replica: from}, batch)
}

func sent(acts []Action, kind Kind) []*Envelope {
	var out []*Envelope
	for _, a := range acts {
		switch a := a.(type) {
		case Broadcast:
			if a.Env.Kind == kind {
				out = append(out, a.Env)
			}
		case Send:
			if a.Env.Kind == kind {
				out = append(out, a.Env)
			}
		}
	}
	return out
}

func delivers(acts []Action) []Deliver {
	var out []Deliver
	for _, a := range acts {
		if d, ok := a.(Deliver); ok {
			out = append(out, d)
		}
	}
	return out
}

func fetches(acts []Action) []Fetch {
	var out []Fetch
	for _, a := range acts {
		if f, ok := a.(Fetch); ok {
			out = append(out, f)
		}
	}
	return out
}

// tickOne advances the clock by d and ticks replica i alone.
func (s *sim) tickOne(i uint32, d time.Duration) []Action {
	s.t.Helper()
	s.now = s.now.Add(d)
	acts := s.nodes[i].r.Tick(s.now)
	s.apply(i, acts)
	return acts
}

// evidenceHolds checks a piece of evidence as a third party would: two
// different messages of the named kind, both signed by the named replica,
// for the same (view, seq).
func (s *sim) evidenceHolds(ev Evidence) bool {
	if ev.First.Kind != ev.Kind || ev.Second.Kind != ev.Kind || sameEnvelope(&ev.First, &ev.Second) {
		return false
	}
	var keys [2]sigKey
	for i, e := range []*Envelope{&ev.First, &ev.Second} {
		m, err := e.Open(s.n)
		if err != nil || m.From != ev.Replica || !s.verifier().Verify(s.pubs[m.From], e.Kind.String(), e.Body, e.Sig) {
			return false
		}
		keys[i], _ = sigKeyOf(m)
	}
	return keys[0] == keys[1] && keys[0].view == ev.View && keys[0].seq == ev.Seq
}
