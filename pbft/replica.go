package pbft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Limits that Config.Validate enforces on the configuration itself.
const (
	// ValidatorsMax matches the genesis limit on the validator set.
	ValidatorsMax = 256
	// WindowSeqsMax bounds L, and with it the number of live slots.
	WindowSeqsMax = 1 << 16
	// PendingRequestsMaxLimit bounds the pending queue a config may ask for.
	PendingRequestsMaxLimit = 1 << 22
	// ClockSkewMaxLimit bounds ClockSkewMax: a larger skew would let a primary
	// push log time far into the future.
	ClockSkewMaxLimit = time.Hour
	// BatchDelayMaxLimit bounds BatchDelay.
	BatchDelayMaxLimit = time.Second
	// RetransmitIntervalMaxLimit bounds RetransmitInterval.
	RetransmitIntervalMaxLimit = time.Minute
	// envelopeOverheadBytesMax is the room a PRE-PREPARE envelope needs besides
	// its requests: kind, body, signature and CBOR headers.
	envelopeOverheadBytesMax = 1024
	// requestHeaderBytesMax is the CBOR header of one request in a batch.
	requestHeaderBytesMax = 9
)

// Errors returned by Submit.
var (
	ErrPendingFull     = errors.New("pbft: pending request queue is full")
	ErrRequestTooLarge = errors.New("pbft: request larger than batch_bytes_max")
)

// Config is a replica's fixed configuration. Every bound is checked by Validate.
type Config struct {
	ChainID    crypto.Digest
	Validators []crypto.PublicKey // replica order; n = len
	Self       uint32
	Signer     Signer
	// BatchRequestsMax bounds the requests in one batch.
	BatchRequestsMax int
	// BatchBytesMax bounds the sum of len(raw request) in one batch, and so
	// the size of any one request.
	BatchBytesMax int
	// BatchDelay is how long a busy primary waits for a batch to fill.
	BatchDelay time.Duration
	// WindowSeqs is L: seqs in (Delivered, Delivered+L] are accepted and may
	// be proposed.
	WindowSeqs uint64
	// PendingRequestsMax bounds the queued client requests.
	PendingRequestsMax int
	// ClockSkewMax: a backup refuses a PRE-PREPARE timestamped later than its
	// own clock plus this.
	ClockSkewMax time.Duration
	// RetransmitInterval is how long a slot may make no progress before this
	// replica re-broadcasts its own messages for it, and the least time
	// between two Fetch actions.
	RetransmitInterval time.Duration
}

// Validate checks every bound of the configuration.
func (c Config) Validate() error {
	n := len(c.Validators)
	switch {
	case n < 1 || n > ValidatorsMax:
		return fmt.Errorf("pbft config: %d validators, want 1..%d", n, ValidatorsMax)
	case int(c.Self) >= n:
		return fmt.Errorf("pbft config: self %d is not a replica index (n = %d)", c.Self, n)
	case c.Signer == nil:
		return fmt.Errorf("pbft config: no signer")
	case c.ChainID.IsZero():
		return fmt.Errorf("pbft config: chain_id is zero")
	case c.BatchRequestsMax < 1 || c.BatchRequestsMax > codec.MaxArrayElements:
		return fmt.Errorf("pbft config: batch_requests_max %d outside 1..%d", c.BatchRequestsMax, codec.MaxArrayElements)
	case c.BatchBytesMax < 1:
		return fmt.Errorf("pbft config: batch_bytes_max %d must be positive", c.BatchBytesMax)
	case c.BatchBytesMax+c.BatchRequestsMax*requestHeaderBytesMax+envelopeOverheadBytesMax > codec.MaxMessageBytes:
		return fmt.Errorf("pbft config: batch_bytes_max %d with batch_requests_max %d makes a PRE-PREPARE larger than the %d-byte message limit",
			c.BatchBytesMax, c.BatchRequestsMax, codec.MaxMessageBytes)
	case c.BatchDelay < 0 || c.BatchDelay > BatchDelayMaxLimit:
		return fmt.Errorf("pbft config: batch_delay %v outside 0..%v", c.BatchDelay, BatchDelayMaxLimit)
	case c.WindowSeqs < 1 || c.WindowSeqs > WindowSeqsMax:
		return fmt.Errorf("pbft config: window_seqs %d outside 1..%d", c.WindowSeqs, WindowSeqsMax)
	case c.PendingRequestsMax < 1 || c.PendingRequestsMax > PendingRequestsMaxLimit:
		return fmt.Errorf("pbft config: pending_requests_max %d outside 1..%d", c.PendingRequestsMax, PendingRequestsMaxLimit)
	case c.ClockSkewMax <= 0 || c.ClockSkewMax > ClockSkewMaxLimit:
		return fmt.Errorf("pbft config: clock_skew_max %v outside (0, %v]", c.ClockSkewMax, ClockSkewMaxLimit)
	case c.RetransmitInterval <= 0 || c.RetransmitInterval > RetransmitIntervalMaxLimit:
		return fmt.Errorf("pbft config: retransmit_interval %v outside (0, %v]", c.RetransmitInterval, RetransmitIntervalMaxLimit)
	}
	seen := make(map[crypto.PublicKey]int, n)
	for i, k := range c.Validators {
		if j, dup := seen[k]; dup {
			return fmt.Errorf("pbft config: validators %d and %d share public key %v", j, i, k)
		}
		seen[k] = i
	}
	return nil
}

// State is what the node persisted for the replica; the zero value is a fresh
// replica.
type State struct {
	View          uint64
	Delivered     uint64 // last seq delivered (the node has applied it durably)
	LastTimestamp int64  // log time of batch Delivered (unix ns)
	// Signed holds this replica's own PRE-PREPAREs, PREPAREs and COMMITs for
	// seqs > Delivered, in the order they were signed (as Persist gave them).
	Signed []Envelope
}

// Status is a snapshot of the replica for metrics and the status API.
type Status struct {
	View      uint64
	Primary   uint32
	Delivered uint64
	// Committed is the highest seq known committed (a matching commit quorum
	// for the accepted digest); at least Delivered.
	Committed uint64
	Pending   int // queued client requests, including those in undelivered batches
	InFlight  int // seqs of this view with an accepted digest, not yet delivered
	// Equivocations counts second, different messages from one replica for
	// one (kind, view, seq).
	Equivocations uint64
	// Dropped counts messages refused: wrong view or sender, outside the
	// window, invalid batches, own messages echoed back.
	Dropped uint64
}

// Action is one thing the caller must carry out. Step, Submit, Tick and
// CaughtUp return actions in the order they must be carried out. Actions
// share memory with the replica: the caller must not modify them.
type Action interface{ isAction() }

// Persist: the envelopes (signed by this replica) and the view must be durable
// before any later action in the same list runs.
type Persist struct {
	View      uint64
	Envelopes []*Envelope
}

// Broadcast sends Env to every other replica.
type Broadcast struct{ Env *Envelope }

// Send sends Env to replica To.
type Send struct {
	To  uint32
	Env *Envelope
}

// Deliver hands a committed batch to the state machine. Seqs are delivered in
// order, each once. Timestamp is the log time: strictly increasing, the same
// on every replica. Cert passes VerifyCertificate.
type Deliver struct {
	Seq, View uint64
	Timestamp int64
	Digest    crypto.Digest
	Batch     [][]byte
	Cert      Certificate
}

// Fetch asks the node to fetch committed entries with seq > AfterSeq from
// peers, verify their certificates, apply them and call CaughtUp.
type Fetch struct{ AfterSeq uint64 }

func (Persist) isAction()   {}
func (Broadcast) isAction() {}
func (Send) isAction()      {}
func (Deliver) isAction()   {}
func (Fetch) isAction()     {}

// recentCommit is this replica's COMMIT for a delivered seq (env nil if it
// delivered without signing one).
type recentCommit struct {
	seq uint64
	env *Envelope
}

// Replica is one PBFT replica's protocol state. It is not safe for
// concurrent use: the node drives it from one loop.
type Replica struct {
	cfg    Config
	n      int
	f      int
	quorum int

	view          uint64
	delivered     uint64
	lastTimestamp int64

	slots      map[slotKey]*slot
	slotSeqMax uint64 // highest seq of a slot in the current view

	pending pendingQueue

	// Primary only: the last seq proposed in this view and its timestamp.
	proposedSeq uint64
	proposedTS  int64

	now    time.Time
	hasNow bool
	// fetchOnStart: a restored slot lacks its batch (a backup persists its
	// votes, not the primary's PRE-PREPARE), and peers may have delivered it
	// and moved on, so the first Tick asks for state transfer.
	fetchOnStart bool
	deliveredAt  time.Time // when delivered last moved
	fetchAt      time.Time
	fetched      bool

	// Per replica: the highest seq it sent a COMMIT for, and the highest seq
	// of any message it sent. They detect that this replica fell behind.
	commitSeqMax []uint64
	seqSeenMax   []uint64

	// recentCommits[seq % WindowSeqs] is this replica's COMMIT for a
	// recently delivered seq, kept to answer a replica still waiting for it.
	recentCommits []recentCommit

	committedMax  uint64
	equivocations uint64
	dropped       uint64

	// Output of the call in progress.
	toPersist []*Envelope
	out       []Action
}

// New builds a replica from its configuration and persisted state. Own
// envelopes in st.Signed are re-loaded so that the replica never signs a
// different digest for a (view, seq) it signed before, and can re-broadcast
// them.
func New(cfg Config, st State) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := len(cfg.Validators)
	r := &Replica{
		cfg:           cfg,
		n:             n,
		f:             MaxFaulty(n),
		quorum:        Quorum(n),
		view:          st.View,
		delivered:     st.Delivered,
		lastTimestamp: st.LastTimestamp,
		slots:         make(map[slotKey]*slot),
		pending:       newPendingQueue(),
		proposedSeq:   st.Delivered,
		proposedTS:    st.LastTimestamp,
		commitSeqMax:  make([]uint64, n),
		seqSeenMax:    make([]uint64, n),
		recentCommits: make([]recentCommit, cfg.WindowSeqs),
		committedMax:  st.Delivered,
	}
	for i := range st.Signed {
		if err := r.restore(&st.Signed[i]); err != nil {
			return nil, fmt.Errorf("pbft: restore signed message %d: %w", i, err)
		}
	}
	// Map order is fine: this decides one error (any of them) and whether
	// one Fetch is due.
	for _, sl := range r.slots {
		if r.primary(sl.view) == r.cfg.Self && sl.ownPrePrepare == nil {
			// The primary signs its PRE-PREPARE before any vote at a seq, and
			// both are persisted and pruned together.
			return nil, fmt.Errorf("pbft: restore: a vote for (view %d, seq %d) without this primary's pre-prepare", sl.view, sl.seq)
		}
		if sl.batch == nil {
			r.fetchOnStart = true
		}
	}
	return r, nil
}

// restore re-loads one of this replica's own signed envelopes.
func (r *Replica) restore(env *Envelope) error {
	m, err := env.Open(r.n)
	if err != nil {
		return err
	}
	if m.From != r.cfg.Self {
		return fmt.Errorf("%v signed by replica %d, not by self %d", env.Kind, m.From, r.cfg.Self)
	}
	var view, seq uint64
	var digest crypto.Digest
	switch env.Kind {
	case KindPrePrepare:
		view, seq, digest = m.PrePrepare.View, m.PrePrepare.Seq, m.PrePrepare.Digest
	case KindPrepare:
		view, seq, digest = m.Prepare.View, m.Prepare.Seq, m.Prepare.Digest
	case KindCommit:
		view, seq, digest = m.Commit.View, m.Commit.Seq, m.Commit.Digest
	default:
		return fmt.Errorf("%v is not a message this replica persists", env.Kind)
	}
	switch {
	case view > r.view:
		return fmt.Errorf("%v for view %d, but the persisted view is %d", env.Kind, view, r.view)
	case view < r.view || seq <= r.delivered:
		// Superseded: a replica never signs again in an older view, nor for a
		// delivered seq.
		return nil
	}
	// A seq beyond the window is kept too: the node's applied seq (State.
	// Delivered) may lag what the replica had delivered when it signed, and
	// forgetting the envelope could let it sign a conflict later. Such slots
	// are bounded by len(State.Signed).
	sl := r.slotFor(view, seq)
	if sl.accepted && sl.digest != digest {
		return fmt.Errorf("%v for (view %d, seq %d) has digest %v, but this replica signed %v there", env.Kind, view, seq, digest, sl.digest)
	}
	sl.accepted = true
	sl.digest = digest
	switch env.Kind {
	case KindPrePrepare:
		pp := m.PrePrepare
		if r.primary(view) != r.cfg.Self {
			return fmt.Errorf("pre-prepare for view %d, whose primary is %d", view, r.primary(view))
		}
		ids := hashRequests(env.Batch)
		if batchDigestOfIDs(pp.Timestamp, ids) != pp.Digest {
			return fmt.Errorf("pre-prepare for seq %d: batch does not match its digest", seq)
		}
		sl.ownPrePrepare = env
		sl.setBatch(env, pp.Timestamp, ids)
		r.proposedSeq = max(r.proposedSeq, seq)
		r.proposedTS = max(r.proposedTS, pp.Timestamp)
	case KindPrepare:
		sl.ownPrepare = env
		sl.prepares[r.cfg.Self] = vote{digest: digest, env: env}
	case KindCommit:
		sl.ownCommit = env
		sl.commits[r.cfg.Self] = vote{digest: digest, env: env}
	}
	return nil
}

func (r *Replica) primary(view uint64) uint32 { return uint32(view % uint64(r.n)) }

func (r *Replica) isPrimary() bool { return r.primary(r.view) == r.cfg.Self }

func (r *Replica) inWindow(seq uint64) bool {
	return seq > r.delivered && seq-r.delivered <= r.cfg.WindowSeqs
}

// slotFor returns the slot for (view, seq), creating it. Callers check the
// window first, so at most WindowSeqs slots exist per view.
func (r *Replica) slotFor(view, seq uint64) *slot {
	k := slotKey{view: view, seq: seq}
	if sl, ok := r.slots[k]; ok {
		return sl
	}
	sl := newSlot(view, seq, r.n, r.now)
	r.slots[k] = sl
	if view == r.view {
		r.slotSeqMax = max(r.slotSeqMax, seq)
	}
	return sl
}

// flush returns the actions of the call in progress: one Persist of every
// envelope signed during the call first, then the rest in order.
func (r *Replica) flush() []Action {
	if len(r.toPersist) == 0 && len(r.out) == 0 {
		return nil
	}
	acts := make([]Action, 0, len(r.out)+1)
	if len(r.toPersist) > 0 {
		acts = append(acts, Persist{View: r.view, Envelopes: r.toPersist})
		r.toPersist = nil
	}
	acts = append(acts, r.out...)
	clear(r.out)
	r.out = r.out[:0]
	return acts
}

// sign seals body, queues it for persisting and broadcasts it; flush puts the
// Persist ahead of the Broadcast.
func (r *Replica) sign(kind Kind, body any, batch [][]byte) *Envelope {
	env := Seal(r.cfg.Signer, kind, body)
	env.Batch = batch
	r.toPersist = append(r.toPersist, env)
	r.out = append(r.out, Broadcast{Env: env})
	return env
}

// Submit queues a client request (raw: an encoded SignedRequest the node has
// verified). A request already pending is ignored. At an idle primary it is
// proposed at once. The replica keeps raw: the caller must not modify it.
func (r *Replica) Submit(raw []byte) ([]Action, error) {
	if len(raw) > r.cfg.BatchBytesMax {
		return nil, fmt.Errorf("submit request of %d bytes (batch_bytes_max %d): %w", len(raw), r.cfg.BatchBytesMax, ErrRequestTooLarge)
	}
	h := requestID(raw)
	if r.pending.has(h) {
		return nil, nil
	}
	if r.pending.len() >= r.cfg.PendingRequestsMax {
		return nil, fmt.Errorf("submit request (pending_requests_max %d): %w", r.cfg.PendingRequestsMax, ErrPendingFull)
	}
	r.pending.add(h, raw, r.now)
	r.maybePropose()
	return r.flush(), nil
}

// Forget removes requests from the pending queue. The node calls it with the
// requests of entries it applied through state transfer, which this replica
// never delivered itself and so cannot recognise.
func (r *Replica) Forget(requests [][]byte) {
	r.pending.remove(hashRequests(requests))
}

// Step handles one protocol message whose signature the node has verified
// (and, for a PRE-PREPARE, every request in its batch). Kinds the core does
// not handle return nil. The replica keeps m.Env: the caller must not modify it.
func (r *Replica) Step(m Message) []Action {
	if m.Env == nil {
		r.dropped++
		return nil
	}
	switch m.Env.Kind {
	case KindPrePrepare:
		if m.PrePrepare == nil || m.PrePrepare.Replica != m.From {
			r.dropped++
			break
		}
		r.stepPrePrepare(m.PrePrepare, m.Env)
	case KindPrepare:
		if m.Prepare == nil || m.Prepare.Replica != m.From {
			r.dropped++
			break
		}
		p := m.Prepare
		r.stepVote(KindPrepare, p.Replica, p.View, p.Seq, p.Digest, m.Env)
	case KindCommit:
		if m.Commit == nil || m.Commit.Replica != m.From {
			r.dropped++
			break
		}
		c := m.Commit
		r.stepVote(KindCommit, c.Replica, c.View, c.Seq, c.Digest, m.Env)
	default:
		return nil
	}
	r.maybePropose()
	return r.flush()
}

func (r *Replica) stepPrePrepare(pp *PrePrepare, env *Envelope) {
	if pp.View != r.view || pp.Replica != r.primary(pp.View) || pp.Replica == r.cfg.Self {
		r.dropped++
		return
	}
	if !r.noteSeq(KindPrePrepare, pp.Replica, pp.Seq) {
		return
	}
	sl := r.slots[slotKey{view: pp.View, seq: pp.Seq}]
	if sl != nil && sl.accepted && sl.digest != pp.Digest {
		r.equivocations++
		return
	}
	if sl != nil && sl.batch != nil {
		// The primary retransmits because it has not seen enough votes:
		// answer it with this replica's own.
		r.resend(sl, pp.Replica)
		return
	}
	hashes, ok := r.checkBatch(pp, env.Batch)
	if !ok {
		r.dropped++
		return
	}
	if sl == nil {
		sl = r.slotFor(pp.View, pp.Seq)
	}
	if sl.accepted {
		// Restored after a restart: this replica prepared the digest before
		// and may never have sent its vote.
		r.resend(sl, pp.Replica)
	} else {
		sl.accepted = true
		sl.digest = pp.Digest
		sl.ownPrepare = r.sign(KindPrepare, &Prepare{View: pp.View, Seq: pp.Seq, Digest: pp.Digest, Replica: r.cfg.Self}, nil)
		sl.prepares[r.cfg.Self] = vote{digest: pp.Digest, env: sl.ownPrepare}
	}
	sl.setBatch(env, pp.Timestamp, hashes)
	r.pending.markBatched(hashes)
	sl.progressAt = r.now
	r.advance(sl)
}

// checkBatch applies a backup's checks to a PRE-PREPARE's batch and returns
// the request hashes.
func (r *Replica) checkBatch(pp *PrePrepare, batch [][]byte) ([]crypto.Digest, bool) {
	if len(batch) == 0 || len(batch) > r.cfg.BatchRequestsMax {
		return nil, false
	}
	// No clock yet means no bound to check the timestamp against.
	if !r.hasNow || pp.Timestamp > r.now.UnixNano()+int64(r.cfg.ClockSkewMax) {
		return nil, false
	}
	bytes := 0
	for _, raw := range batch {
		bytes += len(raw)
	}
	if bytes > r.cfg.BatchBytesMax {
		return nil, false
	}
	hashes := hashRequests(batch)
	seen := make(map[crypto.Digest]struct{}, len(hashes))
	for _, h := range hashes {
		if _, dup := seen[h]; dup {
			return nil, false
		}
		seen[h] = struct{}{}
	}
	if batchDigestOfIDs(pp.Timestamp, hashes) != pp.Digest {
		return nil, false
	}
	return hashes, true
}

// requestID identifies a request for deduplication: its RFC 6962 leaf hash,
// which is also its leaf in the batch digest, so each request is hashed once.
func requestID(raw []byte) crypto.Digest { return crypto.LeafHash(raw) }

func hashRequests(batch [][]byte) []crypto.Digest {
	hashes := make([]crypto.Digest, len(batch))
	for i, raw := range batch {
		hashes[i] = requestID(raw)
	}
	return hashes
}

// batchDigestOfIDs is BatchDigest computed from the requests' IDs (leaf
// hashes); TestBatchDigestOfIDs holds it equal to BatchDigest.
func batchDigestOfIDs(timestamp int64, ids []crypto.Digest) crypto.Digest {
	root := crypto.MerkleRootOfLeafHashes(ids)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(timestamp))
	return crypto.Hash([]byte("ordo/batch"), ts[:], root[:])
}

// resend sends this replica's own votes for a slot to one replica.
func (r *Replica) resend(sl *slot, to uint32) {
	for _, env := range [...]*Envelope{sl.ownPrepare, sl.ownCommit} {
		if env != nil {
			r.out = append(r.out, Send{To: to, Env: env})
		}
	}
}

func (r *Replica) stepVote(kind Kind, from uint32, view, seq uint64, digest crypto.Digest, env *Envelope) {
	if view != r.view || from == r.cfg.Self || int(from) >= r.n || (kind == KindPrepare && from == r.primary(view)) {
		r.dropped++
		return
	}
	if kind == KindCommit {
		r.commitSeqMax[from] = max(r.commitSeqMax[from], seq)
	}
	if !r.noteSeq(kind, from, seq) {
		return
	}
	sl := r.slotFor(view, seq)
	votes := sl.prepares
	if kind == KindCommit {
		votes = sl.commits
	}
	if v := votes[from]; v.env != nil {
		if v.digest != digest {
			r.equivocations++
		}
		return
	}
	votes[from] = vote{digest: digest, env: env}
	if !sl.accepted || digest == sl.digest {
		sl.progressAt = r.now
	}
	r.advance(sl)
}

// noteSeq records that replica from sent a message of kind for seq and
// reports whether seq is in the window. Messages beyond the window from f+1
// replicas mean this replica is behind.
func (r *Replica) noteSeq(kind Kind, from uint32, seq uint64) bool {
	r.seqSeenMax[from] = max(r.seqSeenMax[from], seq)
	if r.inWindow(seq) {
		return true
	}
	r.dropped++
	switch {
	case seq <= r.delivered:
		r.answerStale(kind, from, seq)
	case r.countAbove(r.seqSeenMax, r.delivered+r.cfg.WindowSeqs) > r.f:
		r.fetch()
	}
	return false
}

// answerStale helps a replica that still retransmits for a seq this replica
// delivered: it lost the COMMITs, and the slot is gone here, so send it the
// kept COMMIT. Only PRE-PREPAREs and PREPAREs are answered, never COMMITs:
// the answer is a COMMIT, so two replicas can never answer each other forever.
func (r *Replica) answerStale(kind Kind, from uint32, seq uint64) {
	if kind == KindCommit || r.delivered-seq >= r.cfg.WindowSeqs {
		return
	}
	rc := r.recentCommits[seq%r.cfg.WindowSeqs]
	if rc.env == nil || rc.seq != seq {
		return
	}
	r.out = append(r.out, Send{To: from, Env: rc.env})
}

// countAbove counts the other replicas whose entry in perReplica is above seq.
func (r *Replica) countAbove(perReplica []uint64, seq uint64) int {
	c := 0
	for i, s := range perReplica {
		if uint32(i) != r.cfg.Self && s > seq {
			c++
		}
	}
	return c
}

// fetch emits a Fetch, at most once per RetransmitInterval.
func (r *Replica) fetch() {
	if r.fetched && r.now.Sub(r.fetchAt) < r.cfg.RetransmitInterval {
		return
	}
	r.fetched = true
	r.fetchAt = r.now
	r.out = append(r.out, Fetch{AfterSeq: r.delivered})
}

// advance moves a slot forward: COMMIT once prepared, then delivery of every
// slot that is ready, in seq order.
func (r *Replica) advance(sl *slot) {
	if !sl.accepted {
		return
	}
	if sl.ownCommit == nil && sl.view == r.view && sl.matching(sl.prepares, r.primary(sl.view)) >= 2*r.f {
		sl.ownCommit = r.sign(KindCommit, &Commit{View: sl.view, Seq: sl.seq, Digest: sl.digest, Replica: r.cfg.Self}, nil)
		sl.commits[r.cfg.Self] = vote{digest: sl.digest, env: sl.ownCommit}
		sl.progressAt = r.now
	}
	if sl.matching(sl.commits, noReplica) >= r.quorum {
		r.committedMax = max(r.committedMax, sl.seq)
	}
	r.deliverReady()
}

// deliverReady delivers, in seq order, every next slot whose batch is known
// and has a commit quorum for its digest. A commit quorum proves the digest
// committed whether or not this replica saw the prepares itself (it is what
// state transfer trusts), so a replica that lost PREPAREs still delivers.
func (r *Replica) deliverReady() {
	for {
		k := slotKey{view: r.view, seq: r.delivered + 1}
		sl := r.slots[k]
		if sl == nil || sl.batch == nil || sl.matching(sl.commits, noReplica) < r.quorum {
			return
		}
		ts := max(sl.timestamp, r.lastTimestamp+1)
		r.out = append(r.out, Deliver{
			Seq:       sl.seq,
			View:      sl.view,
			Timestamp: ts,
			Digest:    sl.digest,
			Batch:     sl.batch,
			Cert:      sl.certificate(),
		})
		r.delivered = sl.seq
		r.lastTimestamp = ts
		r.deliveredAt = r.now
		delete(r.slots, k)
		r.pending.remove(sl.reqHashes)
		r.recentCommits[sl.seq%r.cfg.WindowSeqs] = recentCommit{seq: sl.seq, env: sl.ownCommit}
	}
}

// maybePropose cuts and proposes batches at the primary: at once when idle;
// when busy, once a batch is full or its oldest request waited BatchDelay.
func (r *Replica) maybePropose() {
	if !r.isPrimary() || !r.hasNow {
		return
	}
	r.proposedSeq = max(r.proposedSeq, r.delivered)
	for r.pending.readyCount > 0 && r.proposedSeq < r.delivered+r.cfg.WindowSeqs {
		busy := r.proposedSeq > r.delivered
		full := r.pending.readyCount >= r.cfg.BatchRequestsMax || r.pending.readyBytes >= r.cfg.BatchBytesMax
		if busy && !full {
			oldest, ok := r.pending.oldestReadyAt()
			if !ok || r.now.Sub(oldest) < r.cfg.BatchDelay {
				return
			}
		}
		batch, hashes := r.pending.cut(r.cfg.BatchRequestsMax, r.cfg.BatchBytesMax)
		if len(batch) == 0 {
			panic("pbft: pending queue reports ready requests but cut an empty batch")
		}
		seq := r.proposedSeq + 1
		ts := max(r.now.UnixNano(), r.proposedTS+1)
		d := batchDigestOfIDs(ts, hashes)
		sl := r.slotFor(r.view, seq)
		if sl.accepted {
			panic(fmt.Sprintf("pbft: primary proposing seq %d, which it already signed", seq))
		}
		sl.accepted = true
		sl.digest = d
		sl.ownPrePrepare = r.sign(KindPrePrepare, &PrePrepare{View: r.view, Seq: seq, Digest: d, Timestamp: ts, Replica: r.cfg.Self}, batch)
		sl.setBatch(sl.ownPrePrepare, ts, hashes)
		sl.progressAt = r.now
		r.proposedSeq = seq
		r.proposedTS = ts
		r.advance(sl)
	}
}

// Tick is the only source of time. The node calls it about every
// millisecond. Time never goes backwards inside the replica.
func (r *Replica) Tick(now time.Time) []Action {
	if !r.hasNow {
		r.hasNow = true
		r.now = now
		r.deliveredAt = now
	} else if now.After(r.now) {
		r.now = now
	}
	r.maybePropose()
	r.retransmit()
	if r.fetchOnStart || (r.now.Sub(r.deliveredAt) >= r.cfg.RetransmitInterval && r.countAbove(r.commitSeqMax, r.delivered) > r.f) {
		r.fetchOnStart = false
		r.fetch()
	}
	return r.flush()
}

// retransmit re-broadcasts this replica's own envelopes for every slot that
// made no progress for RetransmitInterval. Nothing is signed anew.
func (r *Replica) retransmit() {
	last := min(r.slotSeqMax, r.delivered+r.cfg.WindowSeqs)
	for seq := r.delivered + 1; seq <= last; seq++ {
		sl := r.slots[slotKey{view: r.view, seq: seq}]
		if sl == nil || r.now.Sub(sl.progressAt) < r.cfg.RetransmitInterval || r.now.Sub(sl.retransmitAt) < r.cfg.RetransmitInterval {
			continue
		}
		sent := false
		for _, env := range [...]*Envelope{sl.ownPrePrepare, sl.ownPrepare, sl.ownCommit} {
			if env != nil {
				r.out = append(r.out, Broadcast{Env: env})
				sent = true
			}
		}
		if sent {
			sl.retransmitAt = r.now
		}
	}
}

// CaughtUp tells the replica that the node applied entries fetched from peers
// up to delivered, the last with log time lastTimestamp. Slots at or below it
// are dropped; slots already committed above it may now be delivered.
func (r *Replica) CaughtUp(delivered uint64, lastTimestamp int64) []Action {
	if delivered <= r.delivered {
		return nil
	}
	r.delivered = delivered
	r.lastTimestamp = lastTimestamp
	r.deliveredAt = r.now
	r.committedMax = max(r.committedMax, delivered)
	r.proposedTS = max(r.proposedTS, lastTimestamp)
	// Deleting in map order is fine: it decides no output.
	for k, sl := range r.slots {
		if k.seq <= delivered {
			delete(r.slots, k)
			r.pending.remove(sl.reqHashes)
		}
	}
	r.deliverReady()
	r.maybePropose()
	return r.flush()
}

// Status returns a snapshot of the replica.
func (r *Replica) Status() Status {
	inFlight := 0
	last := min(r.slotSeqMax, r.delivered+r.cfg.WindowSeqs)
	for seq := r.delivered + 1; seq <= last; seq++ {
		if sl := r.slots[slotKey{view: r.view, seq: seq}]; sl != nil && sl.accepted {
			inFlight++
		}
	}
	return Status{
		View:          r.view,
		Primary:       r.primary(r.view),
		Delivered:     r.delivered,
		Committed:     max(r.committedMax, r.delivered),
		Pending:       r.pending.len(),
		InFlight:      inFlight,
		Equivocations: r.equivocations,
		Dropped:       r.dropped,
	}
}
