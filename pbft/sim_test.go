package pbft

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// This file is the in-memory network the scripted tests (and, later, the
// simulator) drive n replicas with. Everything is deterministic given the
// seed: one rand source passed in, a fake clock advanced only by the run loop,
// events ordered by (time, id).

// simEpoch is where simulated time starts.
var simEpoch = time.Unix(1_700_000_000, 0)

// simTick is how often every replica is ticked.
const simTick = time.Millisecond

type simOptions struct {
	n    int
	seed uint64
	// fast: a no-op signer and no signature checks (benchmarks).
	fast bool
	// cfg adjusts every replica's Config.
	cfg func(*Config)
}

type simEvent struct {
	at   time.Time
	id   uint64
	to   uint32
	from uint32
	data []byte // an encoded Envelope; nil for a fetch completion
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

type simNode struct {
	id uint32
	r  *Replica
	up bool
	// Durable state, as a node would keep it on disk.
	st        State
	stSeqs    []uint64
	persisted map[string]bool
	signed    map[sigKey]crypto.Digest
	// What this node applied, in order.
	delivered   uint64
	lastTS      int64
	requests    int
	caughtUp    int
	fetches     int
	maxInFlight int
	restarts    int
}

type sim struct {
	t      testing.TB
	seed   uint64
	rng    *rand.Rand
	n      int
	keys   []crypto.PrivateKey
	pubs   []crypto.PublicKey
	chain  crypto.Digest
	cfgs   []Config
	nodes  []*simNode
	now    time.Time
	events eventHeap
	nextID uint64
	verify bool

	// Network faults.
	lossRate   float64
	dupRate    float64
	delayMax   time.Duration
	cut        [][]bool // cut[from][to]
	drop       func(from, to uint32, env *Envelope) bool
	fetchDelay time.Duration

	// The agreed log: log[s-1] is the first Deliver seen for seq s.
	log []Deliver

	client    *crypto.Signer
	clientSeq uint64
}

type noopSigner struct{}

var noopSig = make([]byte, crypto.SignatureSize)

func (noopSigner) Sign(string, []byte) []byte { return noopSig }

func testKey(t testing.TB, tag string, i int) crypto.PrivateKey {
	seed := crypto.Hash([]byte(tag), binary.BigEndian.AppendUint32(nil, uint32(i)))
	k, err := crypto.NewKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testConfig() Config {
	return Config{
		ChainID:            crypto.Hash([]byte("ordo/test/chain")),
		BatchRequestsMax:   64,
		BatchBytesMax:      64 << 10,
		BatchDelay:         2 * time.Millisecond,
		WindowSeqs:         16,
		PendingRequestsMax: 1024,
		ClockSkewMax:       time.Second,
		RetransmitInterval: 50 * time.Millisecond,
	}
}

func newSim(t testing.TB, o simOptions) *sim {
	t.Helper()
	s := &sim{
		t:          t,
		seed:       o.seed,
		rng:        rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)),
		n:          o.n,
		now:        simEpoch,
		verify:     !o.fast,
		fetchDelay: 5 * time.Millisecond,
	}
	base := testConfig()
	s.chain = base.ChainID
	for i := 0; i < o.n; i++ {
		k := testKey(t, "replica", i)
		s.keys = append(s.keys, k)
		s.pubs = append(s.pubs, k.Public())
	}
	s.client = crypto.NewSigner(testKey(t, "client", 0), s.chain)
	s.cut = make([][]bool, o.n)
	for i := 0; i < o.n; i++ {
		s.cut[i] = make([]bool, o.n)
		cfg := base
		cfg.Validators = s.pubs
		cfg.Self = uint32(i)
		if o.fast {
			cfg.Signer = noopSigner{}
		} else {
			cfg.Signer = crypto.NewSigner(s.keys[i], s.chain)
		}
		if o.cfg != nil {
			o.cfg(&cfg)
		}
		s.cfgs = append(s.cfgs, cfg)
		node := &simNode{id: uint32(i), persisted: map[string]bool{}, signed: map[sigKey]crypto.Digest{}}
		r, err := New(cfg, State{})
		if err != nil {
			t.Fatalf("New replica %d: %v", i, err)
		}
		node.r, node.up = r, true
		s.nodes = append(s.nodes, node)
	}
	return s
}

func (s *sim) failf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d, t=%v: %s", s.seed, s.now.Sub(simEpoch), fmt.Sprintf(format, args...))
}

// request returns a new signed client request.
func (s *sim) request(command []byte) []byte {
	s.clientSeq++
	return SignRequest(s.client, s.clientSeq, command)
}

// submit hands raw to the given replicas (all when none given), as a client
// that forwards to every validator does.
func (s *sim) submit(raw []byte, to ...uint32) error {
	if len(to) == 0 {
		for i := range s.nodes {
			to = append(to, uint32(i))
		}
	}
	var first error
	for _, i := range to {
		node := s.nodes[i]
		if !node.up {
			continue
		}
		acts, err := node.r.Submit(raw)
		if err != nil && first == nil {
			first = err
		}
		s.apply(i, acts)
	}
	return first
}

// inject delivers an envelope to replica to as if it came over the network.
func (s *sim) inject(to uint32, env *Envelope) {
	s.push(&simEvent{at: s.now, to: to, from: to, data: codec.MustMarshal(env)})
}

func (s *sim) push(e *simEvent) {
	s.nextID++
	e.id = s.nextID
	heap.Push(&s.events, e)
}

func (s *sim) send(from, to uint32, env *Envelope, data []byte) {
	if s.cut[from][to] || (s.drop != nil && s.drop(from, to, env)) {
		return
	}
	if s.lossRate > 0 && s.rng.Float64() < s.lossRate {
		return
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
		s.push(&simEvent{at: at, to: to, from: from, data: data})
	}
}

// apply carries out one replica's actions as a node would, checking the
// invariants as it goes.
func (s *sim) apply(i uint32, acts []Action) {
	node := s.nodes[i]
	for _, a := range acts {
		switch a := a.(type) {
		case Persist:
			for _, env := range a.Envelopes {
				s.persist(node, env)
			}
			node.st.View = a.View
		case Broadcast:
			data := s.checkOwn(node, a.Env)
			for j := range s.nodes {
				if uint32(j) != i {
					s.send(i, uint32(j), a.Env, data)
				}
			}
		case Send:
			data := s.checkOwn(node, a.Env)
			if a.To == i || int(a.To) >= s.n {
				s.failf("replica %d sends to %d", i, a.To)
			}
			s.send(i, a.To, a.Env, data)
		case Deliver:
			s.deliver(node, a)
		case Fetch:
			if a.AfterSeq != node.delivered {
				s.failf("replica %d fetches after %d but delivered %d", i, a.AfterSeq, node.delivered)
			}
			node.fetches++
			s.push(&simEvent{at: s.now.Add(s.fetchDelay), to: i})
		default:
			s.failf("replica %d returned unknown action %T", i, a)
		}
	}
	if node.up {
		node.maxInFlight = max(node.maxInFlight, node.r.Status().InFlight)
	}
}

func envKey(env *Envelope) string { return env.Kind.String() + "|" + string(env.Body) }

func (s *sim) persist(node *simNode, env *Envelope) {
	m, err := env.Open(s.n)
	if err != nil {
		s.failf("replica %d persists an envelope that does not open: %v", node.id, err)
	}
	if m.From != node.id {
		s.failf("replica %d persists a %v of replica %d", node.id, env.Kind, m.From)
	}
	k, d := sigKeyOf(m)
	if prev, ok := node.signed[k]; ok && prev != d {
		s.failf("I5: replica %d signed %v (view %d, seq %d) for %v after signing %v", node.id, k.kind, k.view, k.seq, d, prev)
	}
	node.signed[k] = d
	node.persisted[envKey(env)] = true
	node.st.Signed = append(node.st.Signed, *env)
	node.stSeqs = append(node.stSeqs, k.seq)
}

func sigKeyOf(m Message) (sigKey, crypto.Digest) {
	switch {
	case m.PrePrepare != nil:
		return sigKey{KindPrePrepare, m.PrePrepare.View, m.PrePrepare.Seq}, m.PrePrepare.Digest
	case m.Prepare != nil:
		return sigKey{KindPrepare, m.Prepare.View, m.Prepare.Seq}, m.Prepare.Digest
	case m.Commit != nil:
		return sigKey{KindCommit, m.Commit.View, m.Commit.Seq}, m.Commit.Digest
	}
	return sigKey{}, crypto.Digest{}
}

// checkOwn checks that an envelope leaving replica node is its own and was
// persisted before, and returns its encoding.
func (s *sim) checkOwn(node *simNode, env *Envelope) []byte {
	if !node.persisted[envKey(env)] {
		s.failf("replica %d sends a %v it has not persisted", node.id, env.Kind)
	}
	return codec.MustMarshal(env)
}

func (s *sim) deliver(node *simNode, d Deliver) {
	if d.Seq != node.delivered+1 {
		s.failf("I2: replica %d delivers seq %d after %d", node.id, d.Seq, node.delivered)
	}
	if d.Timestamp <= node.lastTS {
		s.failf("replica %d delivers seq %d with log time %d, not after %d", node.id, d.Seq, d.Timestamp, node.lastTS)
	}
	c := &d.Cert
	if c.Seq != d.Seq || c.View != d.View || c.Digest != d.Digest {
		s.failf("replica %d delivers seq %d with a certificate for (view %d, seq %d, %v)", node.id, d.Seq, c.View, c.Seq, c.Digest)
	}
	if s.verify {
		// Skipped in fast mode: hashing the batch again would dominate a
		// benchmark of the core.
		if BatchDigest(c.Timestamp, d.Batch) != d.Digest {
			s.failf("replica %d delivers seq %d whose batch does not match its digest", node.id, d.Seq)
		}
		if err := VerifyCertificate(c, s.pubs, s.chain); err != nil {
			s.failf("replica %d delivers seq %d: %v", node.id, d.Seq, err)
		}
	} else if len(c.Commits) < Quorum(s.n) {
		s.failf("replica %d delivers seq %d with %d commits", node.id, d.Seq, len(c.Commits))
	}
	switch {
	case int(d.Seq) == len(s.log)+1:
		s.log = append(s.log, d)
	case int(d.Seq) <= len(s.log):
		first := s.log[d.Seq-1]
		if first.Digest != d.Digest {
			s.failf("I1: replica %d delivers %v at seq %d where another delivered %v", node.id, d.Digest, d.Seq, first.Digest)
		}
		if first.Timestamp != d.Timestamp {
			s.failf("replica %d gives seq %d log time %d where another gave %d", node.id, d.Seq, d.Timestamp, first.Timestamp)
		}
	default:
		s.failf("replica %d delivers seq %d but the agreed log ends at %d", node.id, d.Seq, len(s.log))
	}
	node.requests += len(d.Batch)
	s.applied(node, d.Seq, d.Timestamp)
}

// applied records that node applied up to seq durably and prunes what it no
// longer needs to keep, as the node does.
func (s *sim) applied(node *simNode, seq uint64, ts int64) {
	node.delivered, node.lastTS = seq, ts
	node.st.Delivered, node.st.LastTimestamp = seq, ts
	keep, seqs := node.st.Signed[:0], node.stSeqs[:0]
	for k, env := range node.st.Signed {
		if node.stSeqs[k] > seq {
			keep = append(keep, env)
			seqs = append(seqs, node.stSeqs[k])
		}
	}
	node.st.Signed, node.stSeqs = keep, seqs
}

// stateTransfer gives node every agreed entry it lacks, checking each
// certificate as a node does, then tells the replica.
func (s *sim) stateTransfer(node *simNode) {
	if node.delivered >= uint64(len(s.log)) {
		return
	}
	for seq := node.delivered + 1; seq <= uint64(len(s.log)); seq++ {
		e := s.log[seq-1]
		if s.verify {
			if err := VerifyCertificate(&e.Cert, s.pubs, s.chain); err != nil {
				s.failf("state transfer to %d: seq %d: %v", node.id, seq, err)
			}
		}
		node.r.Forget(e.Batch)
		node.requests += len(e.Batch)
		node.caughtUp++
		s.applied(node, seq, e.Timestamp)
	}
	s.apply(node.id, node.r.CaughtUp(node.delivered, node.lastTS))
}

func (s *sim) handle(e *simEvent) {
	node := s.nodes[e.to]
	if !node.up {
		return
	}
	if e.data == nil {
		s.stateTransfer(node)
		return
	}
	env, err := DecodeEnvelope(e.data)
	if err != nil {
		s.failf("replica %d cannot decode a message from %d: %v", e.to, e.from, err)
	}
	m, err := env.Open(s.n)
	if err != nil {
		return
	}
	if s.verify && !s.verified(m) {
		return
	}
	s.apply(e.to, node.r.Step(m))
}

// verified does what the node does before Step: the envelope signature, and
// for a PRE-PREPARE every request's.
func (s *sim) verified(m Message) bool {
	if !m.VerifySignature(s.pubs, s.chain) {
		return false
	}
	for _, raw := range m.Env.Batch {
		sr, req, err := DecodeRequest(raw)
		if err != nil || !crypto.Verify(req.Client, KindRequest.String(), s.chain, sr.Body, sr.Sig) {
			return false
		}
	}
	return true
}

// step runs one event, or advances the clock one tick when none is due.
func (s *sim) step() {
	if s.events.Len() > 0 && !s.events[0].at.After(s.now) {
		s.handle(heap.Pop(&s.events).(*simEvent))
		return
	}
	s.now = s.now.Add(simTick)
	for _, node := range s.nodes {
		if node.up {
			s.apply(node.id, node.r.Tick(s.now))
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
		if !s.now.Before(deadline) {
			return false
		}
		s.step()
	}
	return true
}

// settle runs until no message is in flight (timers keep ticking).
func (s *sim) settle(limit time.Duration) {
	s.t.Helper()
	s.runUntil(limit, "network quiet", func() bool { return s.events.Len() == 0 })
}

// allApplied reports whether every up replica applied at least count requests.
func (s *sim) allApplied(count int) func() bool {
	return func() bool {
		for _, node := range s.nodes {
			if node.up && node.requests < count {
				return false
			}
		}
		return true
	}
}

func (s *sim) crash(i uint32) {
	s.nodes[i].up = false
	s.nodes[i].r = nil
}

// restart rebuilds replica i from its durable state.
func (s *sim) restart(i uint32) {
	s.t.Helper()
	node := s.nodes[i]
	st := node.st
	st.Signed = append([]Envelope(nil), node.st.Signed...)
	r, err := New(s.cfgs[i], st)
	if err != nil {
		s.failf("restart replica %d: %v", i, err)
	}
	node.r, node.up = r, true
	node.restarts++
}

// isolate cuts (or heals) every link to and from replica i.
func (s *sim) isolate(i uint32, cut bool) {
	for j := range s.nodes {
		if uint32(j) != i {
			s.cut[i][j], s.cut[j][i] = cut, cut
		}
	}
}

// sealAs signs body as replica i would (a Byzantine replica uses its own key).
func (s *sim) sealAs(i uint32, kind Kind, body any, batch [][]byte) *Envelope {
	env := Seal(crypto.NewSigner(s.keys[i], s.chain), kind, body)
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
	if s.verify && !s.verified(m) {
		s.failf("a %v from %d does not verify", got.Kind, m.From)
	}
	acts := s.nodes[to].r.Step(m)
	s.apply(to, acts)
	return acts
}

// isolateAll cuts every link, so actions are checked but go nowhere.
func (s *sim) isolateAll() {
	for i := range s.nodes {
		s.isolate(uint32(i), true)
	}
}

// tick advances the clock by d, ticking every replica every simTick.
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
