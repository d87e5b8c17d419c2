package pbft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// Errors returned by Submit.
var (
	ErrPendingFull     = errors.New("pbft: pending request queue is full")
	ErrRequestTooLarge = errors.New("pbft: request larger than batch_bytes_max")
)

// State is what the node persisted for the replica; the zero value is a fresh
// replica.
type State struct {
	// View is the View of the last durable Persist.
	View          uint64
	Delivered     uint64 // last seq the node applied durably
	LastTimestamp int64  // log time of batch Delivered (unix ns)
	// Log holds every envelope of every Persist that Prunable has not yet
	// released, in the order the Persists gave them.
	Log []Envelope
}

// Status is a snapshot of the replica for metrics and the status API. Its
// Evidence shares memory with the replica: the caller must not modify it.
type Status struct {
	View    uint64
	Primary uint32
	// ViewActive is false while the replica is changing to View (it sent its
	// VIEW-CHANGE and has not accepted the NEW-VIEW yet).
	ViewActive bool
	// ViewChanges counts the view changes this replica started since New.
	ViewChanges uint64
	Delivered   uint64
	// Committed is the highest seq known committed (a matching commit quorum
	// for the accepted digest); at least Delivered.
	Committed uint64
	// StableCheckpoint is the low watermark h: the last seq with a proof of
	// 2f+1 matching CHECKPOINTs here.
	StableCheckpoint uint64
	Pending          int // queued client requests, including those in undelivered batches
	InFlight         int // seqs of this view with an accepted digest, not yet delivered
	// Equivocations counts second, different messages from one replica for
	// one (kind, view, seq); Evidence keeps the latest EvidenceMax of them
	// with both signed envelopes, oldest first.
	Equivocations uint64
	Evidence      []Evidence
	// Dropped counts messages refused: wrong view or sender, outside the
	// window, invalid batches or proofs, own messages echoed back.
	Dropped uint64
}

// Action is one thing the caller must carry out. Step, Submit, Tick, Executed
// and CaughtUp return actions in the order they must be carried out. Actions
// share memory with the replica: the caller must not modify them.
type Action interface{ isAction() }

// Persist: the envelopes and the view must be durable before any later action
// in the same list runs. The envelopes are this replica's own signed messages
// and the others' messages its promises rest on (the PRE-PREPARE it prepared,
// the PREPAREs of a prepared certificate, a stable checkpoint's proof, the
// accepted NEW-VIEW). The node keeps each until Prunable releases it and
// hands the rest back in State.Log.
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
// order, each once, with no gap except the seqs the node applies by state
// transfer (see CaughtUp). Timestamp is the log time: strictly increasing,
// the same on every replica. Cert passes VerifyCertificate. Batch is empty
// for a null batch a new primary filled a gap with: the node applies an entry
// with no requests.
type Deliver struct {
	Seq, View uint64
	Timestamp int64
	Digest    crypto.Digest
	Batch     [][]byte
	Cert      Certificate
}

// Fetch asks the node to fetch committed entries with seq > AfterSeq from
// peers, verify their certificates, apply them and call Executed for each and
// CaughtUp after the last.
type Fetch struct{ AfterSeq uint64 }

func (Persist) isAction()   {}
func (Broadcast) isAction() {}
func (Send) isAction()      {}
func (Deliver) isAction()   {}
func (Fetch) isAction()     {}

// Replica is one PBFT replica's protocol state. It is not safe for
// concurrent use: the node drives it from one loop.
type Replica struct {
	cfg    Config
	n      int
	f      int
	quorum int

	view uint64
	// active: this replica works in view (view 0, or its NEW-VIEW was
	// accepted). While false it is changing to view: it takes no part in the
	// normal case and waits for the NEW-VIEW.
	active        bool
	delivered     uint64
	lastTimestamp int64
	executed      uint64 // last seq the node reported through Executed

	// The last stable checkpoint (the low watermark h) and its proof.
	stable       uint64
	stableDigest crypto.Digest
	stableProof  []Envelope
	// stableSigners marks the replicas whose CHECKPOINT is in stableProof.
	stableSigners []bool
	// ckpts holds CHECKPOINT votes for seqs in (h, h+L]; ckptAhead each
	// replica's highest CHECKPOINT beyond h+L; ownCkpts this replica's own
	// CHECKPOINTs for h, in the window and the newest beyond it, to answer
	// replicas still below h and to retransmit the newest.
	ckpts        map[uint64][]checkpointVote
	ckptAhead    []checkpointVote
	ownCkpts     map[uint64]*Envelope
	ownCkptMax   uint64
	ckptResentAt time.Time

	// slots holds the slots of the current view, for seqs in (h, h+L] (and
	// restored ones of this replica's own votes above h).
	slots      map[slotKey]*slot
	slotSeqMax uint64
	// prepared is the P set: per seq above h, the certificate of the highest
	// view this replica prepared it in, with the batch when known.
	prepared map[uint64]*preparedCert
	// batches keeps, per seq above h, the batches of the PRE-PREPAREs this
	// replica accepted (StoredBatchesPerSeqMax at most, the latest views).
	batches map[uint64][]storedBatch

	// View change.
	ownViewChange *Envelope
	viewChanges   []*viewChangeInfo // per replica: its latest valid VIEW-CHANGE
	viewSeen      []uint64          // per replica: the highest view it showed
	newView       *Envelope         // the accepted NEW-VIEW of view
	// armedAt: when 2f+1 replicas were known to have moved to view, which
	// starts the NEW-VIEW timeout (a replica alone in a view never moves on).
	armed              bool
	armedAt            time.Time
	activeAt           time.Time
	failedViews        int // view changes since the last delivery
	viewChangesN       uint64
	viewChangeResentAt time.Time
	// Per replica: when this replica last answered it with the NEW-VIEW, or
	// with its CHECKPOINT for h.
	nvAnsweredAt   []time.Time
	ckptAnsweredAt []time.Time

	pending pendingQueue
	// batchSeen is checkBatch's scratch set of the IDs of a batch's requests
	// not pending here, empty between calls and reused so that a batch
	// allocates none.
	batchSeen map[crypto.Digest]struct{}

	// Primary only: the last seq proposed in this view and its timestamp.
	proposedSeq uint64
	proposedTS  int64

	now    time.Time
	hasNow bool
	// fetchOnStart: a restored slot lacks its batch, or the stable checkpoint
	// is above what the node applied, so the first Tick asks for state
	// transfer.
	fetchOnStart bool
	deliveredAt  time.Time // when delivered last moved
	fetchAt      time.Time
	fetched      bool

	// Per replica: the highest seq it sent a COMMIT or a CHECKPOINT for, and
	// the highest seq of any message it sent. They detect that this replica
	// fell behind.
	commitSeqMax []uint64
	ckptSeqMax   []uint64
	seqSeenMax   []uint64
	// heartbeatAt is when this replica last re-sent its latest COMMIT or
	// CHECKPOINT unasked.
	heartbeatAt time.Time

	committedMax  uint64
	equivocations uint64
	evidence      []Evidence // ring of the latest EvidenceMax
	evidenceNext  int
	// evidenceOrdered is the ring in order, built when Status asks after a
	// change and never modified after: Status hands it out.
	evidenceOrdered []Evidence
	dropped         uint64

	// Output of the call in progress.
	toPersist []*Envelope
	out       []Action
}

// New builds a replica from its configuration and persisted state. The
// envelopes in st.Log are re-loaded so that the replica never signs a message
// conflicting with one it signed before, can re-send them, and can still
// carry its prepared certificates into a VIEW-CHANGE.
func New(cfg Config, st State) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := len(cfg.Validators)
	r := &Replica{
		cfg:            cfg,
		n:              n,
		f:              MaxFaulty(n),
		quorum:         Quorum(n),
		view:           st.View,
		active:         st.View == 0,
		delivered:      st.Delivered,
		lastTimestamp:  st.LastTimestamp,
		executed:       st.Delivered,
		ckpts:          make(map[uint64][]checkpointVote),
		ckptAhead:      make([]checkpointVote, n),
		ownCkpts:       make(map[uint64]*Envelope),
		slots:          make(map[slotKey]*slot),
		prepared:       make(map[uint64]*preparedCert),
		batches:        make(map[uint64][]storedBatch),
		viewChanges:    make([]*viewChangeInfo, n),
		viewSeen:       make([]uint64, n),
		nvAnsweredAt:   make([]time.Time, n),
		ckptAnsweredAt: make([]time.Time, n),
		pending:        newPendingQueue(),
		batchSeen:      make(map[crypto.Digest]struct{}),
		proposedSeq:    st.Delivered,
		proposedTS:     st.LastTimestamp,
		commitSeqMax:   make([]uint64, n),
		ckptSeqMax:     make([]uint64, n),
		seqSeenMax:     make([]uint64, n),
		committedMax:   st.Delivered,
	}
	if err := r.restore(st); err != nil {
		return nil, fmt.Errorf("pbft: restore: %w", err)
	}
	return r, nil
}

func (r *Replica) primary(view uint64) uint32 { return uint32(view % uint64(r.n)) }

func (r *Replica) isPrimary() bool { return r.primary(r.view) == r.cfg.Self }

// inWindow reports whether seq is in (h, h+L].
func (r *Replica) inWindow(seq uint64) bool {
	return seq > r.stable && seq-r.stable <= r.cfg.WindowSeqs
}

// slotFor returns the slot for (view, seq), creating it. Callers check the
// window first, so at most WindowSeqs slots exist.
func (r *Replica) slotFor(view, seq uint64) *slot {
	k := slotKey{view: view, seq: seq}
	if sl, ok := r.slots[k]; ok {
		return sl
	}
	sl := newSlot(view, seq, r.n, r.now)
	r.slots[k] = sl
	r.slotSeqMax = max(r.slotSeqMax, seq)
	return sl
}

// flush returns the actions of the call in progress: one Persist of every
// envelope signed or kept during the call first, then the rest in order.
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

// keep queues an envelope for persisting without sending it.
func (r *Replica) keep(env *Envelope) {
	r.toPersist = append(r.toPersist, env)
}

// Submit queues a client request (raw: an encoded SignedRequest the node has
// verified). A request already pending, or among the recently delivered, is
// ignored. At an idle primary it is proposed at once. The replica keeps raw:
// the caller must not modify it.
func (r *Replica) Submit(raw []byte) ([]Action, error) {
	if len(raw) > r.cfg.BatchBytesMax {
		return nil, fmt.Errorf("submit request of %d bytes (batch_bytes_max %d): %w", len(raw), r.cfg.BatchBytesMax, ErrRequestTooLarge)
	}
	h := requestID(raw)
	if p, delivered := r.pending.lookup(h); p != nil || delivered {
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
	r.pending.remove(hashRequests(requests), nil)
}

// Step handles one protocol message whose envelope signature the node has
// verified (and, for a PRE-PREPARE, every request in its batch). Signatures
// nested in VIEW-CHANGE and NEW-VIEW messages are verified here, with
// Config.Verifier. Kinds the core does not handle return nil. The replica
// keeps m.Env: the caller must not modify it.
func (r *Replica) Step(m Message) []Action {
	if m.Env == nil || int(m.From) >= r.n || m.From == r.cfg.Self {
		r.dropped++
		return nil
	}
	switch {
	case m.Env.Kind == KindPrePrepare && m.PrePrepare != nil && m.PrePrepare.Replica == m.From:
		r.noteView(m.From, m.PrePrepare.View)
		r.stepPrePrepare(m.PrePrepare, m.Env)
	case m.Env.Kind == KindPrepare && m.Prepare != nil && m.Prepare.Replica == m.From:
		p := m.Prepare
		r.noteView(m.From, p.View)
		r.stepVote(KindPrepare, p.Replica, p.View, p.Seq, p.Digest, m.Env)
	case m.Env.Kind == KindCommit && m.Commit != nil && m.Commit.Replica == m.From:
		c := m.Commit
		r.noteView(m.From, c.View)
		r.stepVote(KindCommit, c.Replica, c.View, c.Seq, c.Digest, m.Env)
	case m.Env.Kind == KindCheckpoint && m.Checkpoint != nil && m.Checkpoint.Replica == m.From:
		c := m.Checkpoint
		r.recordCheckpoint(c.Replica, c.Seq, c.StateDigest, m.Env)
	case m.Env.Kind == KindViewChange && m.ViewChange != nil && m.ViewChange.Replica == m.From:
		r.stepViewChange(m.ViewChange, m.Env)
	case m.Env.Kind == KindNewView && m.NewView != nil && m.NewView.Replica == m.From:
		r.stepNewView(m.NewView, m.Env)
	case m.Env.Kind == KindExecuted || m.Env.Kind == KindRequest:
		return nil
	default:
		r.dropped++
		return nil
	}
	r.maybePropose()
	return r.flush()
}

func (r *Replica) stepPrePrepare(pp *PrePrepare, env *Envelope) {
	if pp.View != r.view || !r.active || pp.Replica != r.primary(pp.View) {
		r.dropped++
		return
	}
	if !r.noteSeq(pp.Replica, pp.Seq) {
		return
	}
	sl := r.slots[slotKey{view: pp.View, seq: pp.Seq}]
	if sl != nil && sl.accepted && sl.digest != pp.Digest {
		if sl.prePrepare == nil {
			// The digest came from this replica's own restored vote: no
			// signed pair proves the primary wrong, but it is refused.
			r.equivocations++
			return
		}
		r.conflict(pp.Replica, KindPrePrepare, pp.View, pp.Seq, sl.prePrepare, env)
		// Two PRE-PREPAREs the primary signed for one (view, seq): proof
		// that it is faulty.
		r.startViewChange(r.view + 1)
		return
	}
	if sl != nil && sl.hasBatch {
		// The primary retransmits because it has not seen enough votes:
		// answer it with this replica's own.
		r.resend(sl, pp.Replica)
		return
	}
	hashes, entries, ok := r.checkBatch(pp, env.Batch)
	if !ok {
		r.dropped++
		return
	}
	if sl == nil {
		sl = r.slotFor(pp.View, pp.Seq)
	}
	// The batch is kept with the vote: after a restart this replica can
	// still deliver it, and carry its prepared certificate.
	r.keep(env)
	if sl.accepted {
		// Accepted before (restored, or re-issued without its batch): the
		// vote exists already.
		r.resend(sl, pp.Replica)
	} else {
		sl.accepted = true
		sl.digest = pp.Digest
		sl.ownPrepare = r.sign(KindPrepare, &Prepare{View: pp.View, Seq: pp.Seq, Digest: pp.Digest, Replica: r.cfg.Self}, nil)
		sl.prepares[r.cfg.Self] = vote{digest: pp.Digest, env: sl.ownPrepare}
	}
	sl.prePrepare = env
	sl.setBatch(env.Batch, pp.Timestamp, hashes)
	r.storeBatch(sl)
	if c := r.prepared[pp.Seq]; c != nil && c.view == pp.View && c.digest == pp.Digest && !c.hasBatch {
		c.setBatch(env.Batch, hashes)
	}
	r.pending.batchEntries(entries)
	sl.reqs = entries
	sl.progressAt = r.now
	r.advance(sl)
}

// checkBatch applies a backup's checks to a PRE-PREPARE's batch and returns
// the request hashes and the requests' pending entries (nil for one not
// pending here). An empty batch is refused here: only a new primary proposes
// one, inside a NEW-VIEW, to fill a gap.
func (r *Replica) checkBatch(pp *PrePrepare, batch [][]byte) ([]crypto.Digest, []*pendingReq, bool) {
	if len(batch) == 0 || len(batch) > r.cfg.BatchRequestsMax {
		return nil, nil, false
	}
	// No clock yet means no bound to check the timestamp against.
	if !r.hasNow || pp.Timestamp > r.now.UnixNano()+int64(r.cfg.ClockSkewMax) {
		return nil, nil, false
	}
	bytes := 0
	for _, raw := range batch {
		bytes += len(raw)
	}
	if bytes > r.cfg.BatchBytesMax {
		return nil, nil, false
	}
	hashes, entries, ok := r.pending.identify(batch, r.batchSeen)
	if !ok || batchDigestOfIDs(pp.Timestamp, hashes) != pp.Digest {
		return nil, nil, false
	}
	return hashes, entries, true
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
	if kind == KindCommit {
		// Counted in any view: COMMITs far ahead from f+1 replicas show that
		// this replica is behind, whatever view it is in.
		r.commitSeqMax[from] = max(r.commitSeqMax[from], seq)
	}
	if view != r.view || (kind == KindPrepare && from == r.primary(view)) {
		r.dropped++
		return
	}
	if !r.noteSeq(from, seq) {
		return
	}
	sl := r.slotFor(view, seq)
	votes := sl.prepares
	if kind == KindCommit {
		votes = sl.commits
	}
	if v := votes[from]; v.env != nil {
		if v.digest != digest {
			r.conflict(from, kind, view, seq, v.env, env)
		} else if kind == KindPrepare && seq <= r.delivered && sl.ownCommit != nil {
			// It retransmits its PREPARE: it still waits for COMMITs this
			// replica delivered with.
			r.out = append(r.out, Send{To: from, Env: sl.ownCommit})
		}
		return
	}
	votes[from] = vote{digest: digest, env: env}
	if !sl.accepted || digest == sl.digest {
		sl.progressAt = r.now
	}
	r.advance(sl)
}

// noteSeq records that replica from sent a message for seq and reports
// whether seq is in the window. A replica below h is answered with this
// replica's CHECKPOINT for h, so that it can move its window; messages beyond
// the window from f+1 replicas mean this replica is behind.
func (r *Replica) noteSeq(from uint32, seq uint64) bool {
	r.seqSeenMax[from] = max(r.seqSeenMax[from], seq)
	if r.inWindow(seq) {
		return true
	}
	r.dropped++
	switch {
	case seq <= r.stable:
		r.answerBelowStable(from)
	case r.countAbove(r.seqSeenMax, r.stable+r.cfg.WindowSeqs) > r.f:
		r.fetch()
	}
	return false
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
	if !sl.accepted || sl.view != r.view || !r.active {
		return
	}
	if sl.ownCommit == nil && sl.prePrepare != nil && sl.matching(sl.prepares, r.primary(sl.view)) >= 2*r.f {
		r.notePrepared(sl)
		sl.ownCommit = r.sign(KindCommit, &Commit{View: sl.view, Seq: sl.seq, Digest: sl.digest, Replica: r.cfg.Self}, nil)
		sl.commits[r.cfg.Self] = vote{digest: sl.digest, env: sl.ownCommit}
		sl.progressAt = r.now
	}
	if sl.matching(sl.commits, noReplica) >= r.quorum {
		r.committedMax = max(r.committedMax, sl.seq)
	}
	r.deliverReady()
}

// notePrepared records the slot's prepared certificate in the P set and
// keeps the PREPAREs it rests on, in the same Persist as the COMMIT that
// follows: after a restart the replica's VIEW-CHANGE still carries it.
func (r *Replica) notePrepared(sl *slot) {
	c := &preparedCert{
		view:       sl.view,
		seq:        sl.seq,
		digest:     sl.digest,
		timestamp:  sl.timestamp,
		prePrepare: sl.prePrepare,
	}
	primary := r.primary(sl.view)
	for i, v := range sl.prepares {
		if uint32(i) == primary || v.env == nil || v.digest != sl.digest {
			continue
		}
		c.prepares = append(c.prepares, v.env)
		if uint32(i) != r.cfg.Self {
			r.keep(v.env)
		}
		if len(c.prepares) == 2*r.f {
			break
		}
	}
	if sl.hasBatch {
		c.setBatch(sl.batch, sl.reqHashes)
	}
	r.prepared[sl.seq] = c
}

// deliverReady delivers, in seq order, every next slot whose batch is known
// and has a commit quorum for its digest. A commit quorum proves the digest
// committed whether or not this replica saw the prepares itself (it is what
// state transfer trusts), so a replica that lost PREPAREs still delivers.
func (r *Replica) deliverReady() {
	for {
		sl := r.slots[slotKey{view: r.view, seq: r.delivered + 1}]
		if sl == nil || !sl.hasBatch || sl.matching(sl.commits, noReplica) < r.quorum {
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
		r.failedViews = 0
		r.pending.remove(sl.reqHashes, sl.reqs)
	}
}

// maybePropose cuts and proposes batches at the primary: at once when idle;
// when busy (a seq proposed and not yet executed), once a batch is full or,
// while fewer than ProposalsInFlightMax seqs await execution, once its oldest
// request waited BatchDelay.
func (r *Replica) maybePropose() {
	if !r.isPrimary() || !r.active || !r.hasNow {
		return
	}
	r.proposedSeq = max(r.proposedSeq, r.delivered, r.stable)
	for r.pending.readyCount > 0 && r.proposedSeq < r.stable+r.cfg.WindowSeqs {
		busy := r.proposedSeq > r.executed
		full := r.pending.readyCount >= r.cfg.BatchRequestsMax || r.pending.readyBytes >= r.cfg.BatchBytesMax
		if busy && !full {
			if limit := r.cfg.ProposalsInFlightMax; limit > 0 && r.proposedSeq-r.executed >= uint64(limit) {
				return
			}
			oldest, ok := r.pending.oldestReadyAt()
			if !ok || r.now.Sub(oldest) < r.cfg.BatchDelay {
				return
			}
		}
		batch, hashes, reqs := r.pending.cut(r.cfg.BatchRequestsMax, r.cfg.BatchBytesMax)
		if len(batch) == 0 {
			panic("pbft: pending queue reports ready requests but cut an empty batch")
		}
		seq := r.proposedSeq + 1
		ts := max(r.now.UnixNano(), r.proposedTS+1)
		d := batchDigestOfIDs(ts, hashes)
		sl := r.slotFor(r.view, seq)
		if sl.accepted {
			panic(fmt.Sprintf("pbft: primary proposing seq %d of view %d, which it already signed", seq, r.view))
		}
		sl.accepted = true
		sl.digest = d
		sl.ownPrePrepare = r.sign(KindPrePrepare, &PrePrepare{View: r.view, Seq: seq, Digest: d, Timestamp: ts, Replica: r.cfg.Self}, batch)
		sl.prePrepare = sl.ownPrePrepare
		sl.setBatch(batch, ts, hashes)
		sl.reqs = reqs
		r.storeBatch(sl)
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
		r.activeAt = now
		r.ckptResentAt = now
		r.heartbeatAt = now
	} else if now.After(r.now) {
		r.now = now
	}
	if r.active {
		r.maybePropose()
		r.retransmit()
		if r.requestTimedOut() {
			r.startViewChange(r.view + 1)
			r.joinLaterView()
		}
	} else {
		r.retransmitViewChange()
		if r.armed && r.now.Sub(r.armedAt) >= r.timeout() {
			r.startViewChange(r.view + 1)
			r.joinLaterView()
		}
	}
	r.retransmitCheckpoint()
	r.heartbeat()
	if r.fetchOnStart || r.behind() || r.delivered < r.stable {
		r.fetchOnStart = false
		r.fetch()
	}
	return r.flush()
}

// behind reports whether this replica should fetch committed entries: f+1
// replicas showed COMMITs or CHECKPOINTs past what it delivered, or it is
// stalled: it is the primary or in a view change, has requests pending,
// delivered nothing for a view-change timeout, and any replica showed it is
// past it.
//   - A primary whose slots can no longer gather a quorum, because the others
//     finished them by state transfer or left the view: a backup in that state
//     times out and changes view, but a primary never times out its own view.
//   - A replica in a view change nobody else joins, because the others
//     finished its requests: it has nothing more to time out, and of the
//     others only those that committed in their own view heartbeat a COMMIT
//     (one that caught up by state transfer signed none), so f+1 may never
//     show up.
//
// An active backup is left out: it times out and changes view instead of
// catching up and staying behind in its old view. One lying replica can make
// only a stalled replica fetch, at most once per RetransmitInterval.
func (r *Replica) behind() bool {
	if r.now.Sub(r.deliveredAt) < r.cfg.RetransmitInterval {
		return false
	}
	commitsPast := r.countAbove(r.commitSeqMax, r.delivered)
	ckptsPast := r.countAbove(r.ckptSeqMax, r.delivered)
	if commitsPast > r.f || ckptsPast > r.f {
		return true
	}
	_, waiting := r.pending.oldestAt()
	return (r.isPrimary() || !r.active) && waiting && r.now.Sub(r.deliveredAt) >= r.timeout() && commitsPast+ckptsPast > 0
}

// heartbeat re-broadcasts, every HeartbeatIntervals retransmit intervals,
// this replica's COMMIT for the last seq it delivered (or its CHECKPOINT for
// h when that slot is gone). A replica that missed the end of the traffic
// learns from f+1 of them that it is behind, or in an older view, even when
// nothing else is sent any more.
func (r *Replica) heartbeat() {
	if !r.active || r.now.Sub(r.heartbeatAt) < HeartbeatIntervals*r.cfg.RetransmitInterval {
		return
	}
	r.heartbeatAt = r.now
	if sl := r.slots[slotKey{view: r.view, seq: r.delivered}]; sl != nil && sl.ownCommit != nil {
		r.out = append(r.out, Broadcast{Env: sl.ownCommit})
	} else if env := r.ownCkpts[r.stable]; env != nil && r.delivered <= r.stable {
		r.out = append(r.out, Broadcast{Env: env})
	}
}

// retransmit re-broadcasts this replica's own envelopes for every slot that
// made no progress for RetransmitInterval. Nothing is signed anew.
func (r *Replica) retransmit() {
	last := min(r.slotSeqMax, r.stable+r.cfg.WindowSeqs)
	for seq := max(r.delivered, r.stable) + 1; seq <= last; seq++ {
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
// up to delivered, the last with log time lastTimestamp. Nothing at or below
// delivered is delivered again; slots already committed above it may now be.
func (r *Replica) CaughtUp(delivered uint64, lastTimestamp int64) []Action {
	if delivered <= r.delivered {
		return nil
	}
	for seq := max(r.delivered, r.stable) + 1; seq <= min(delivered, r.stable+r.cfg.WindowSeqs); seq++ {
		if sl := r.slots[slotKey{view: r.view, seq: seq}]; sl != nil {
			r.pending.remove(sl.reqHashes, sl.reqs)
		}
	}
	r.delivered = delivered
	r.lastTimestamp = lastTimestamp
	r.deliveredAt = r.now
	r.committedMax = max(r.committedMax, delivered)
	r.proposedTS = max(r.proposedTS, lastTimestamp)
	r.deliverReady()
	r.maybePropose()
	return r.flush()
}

// inFlight counts the seqs of this view with an accepted digest, not yet
// delivered.
func (r *Replica) inFlight() int {
	c := 0
	last := min(r.slotSeqMax, r.stable+r.cfg.WindowSeqs)
	for seq := max(r.delivered, r.stable) + 1; seq <= last; seq++ {
		if sl := r.slots[slotKey{view: r.view, seq: seq}]; sl != nil && sl.accepted {
			c++
		}
	}
	return c
}

// Status returns a snapshot of the replica.
func (r *Replica) Status() Status {
	return Status{
		View:             r.view,
		Primary:          r.primary(r.view),
		ViewActive:       r.active,
		ViewChanges:      r.viewChangesN,
		Delivered:        r.delivered,
		Committed:        max(r.committedMax, r.delivered),
		StableCheckpoint: r.stable,
		Pending:          r.pending.len(),
		InFlight:         r.inFlight(),
		Equivocations:    r.equivocations,
		Evidence:         r.evidenceList(),
		Dropped:          r.dropped,
	}
}

// storeBatch keeps a slot's batch past its view.
func (r *Replica) storeBatch(sl *slot) {
	if !sl.hasBatch || len(sl.batch) == 0 {
		return
	}
	kept := r.batches[sl.seq]
	for _, b := range kept {
		if b.digest == sl.digest {
			return
		}
	}
	if len(kept) == StoredBatchesPerSeqMax {
		kept = append(kept[:0], kept[1:]...)
	}
	r.batches[sl.seq] = append(kept, storedBatch{digest: sl.digest, batch: sl.batch, reqHashes: sl.reqHashes})
}

// storedBatchFor returns a kept batch for (seq, digest).
func (r *Replica) storedBatchFor(seq uint64, digest crypto.Digest) (storedBatch, bool) {
	if c := r.prepared[seq]; c != nil && c.digest == digest && c.hasBatch {
		return storedBatch{digest: digest, batch: c.batch, reqHashes: c.reqHashes}, true
	}
	for _, b := range r.batches[seq] {
		if b.digest == digest {
			return b, true
		}
	}
	return storedBatch{}, false
}

// conflict records two different messages one replica signed for one
// (kind, view, seq).
func (r *Replica) conflict(from uint32, kind Kind, view, seq uint64, first, second *Envelope) {
	r.equivocations++
	r.evidenceOrdered = nil
	ev := Evidence{Replica: from, Kind: kind, View: view, Seq: seq, First: *first, Second: *second}
	if len(r.evidence) < EvidenceMax {
		r.evidence = append(r.evidence, ev)
		return
	}
	r.evidence[r.evidenceNext] = ev
	r.evidenceNext = (r.evidenceNext + 1) % EvidenceMax
}

// evidenceList returns the kept evidence, oldest first. The slice is shared
// by every Status until the next conflict, and never modified.
func (r *Replica) evidenceList() []Evidence {
	if len(r.evidence) == 0 || r.evidenceOrdered != nil {
		return r.evidenceOrdered
	}
	out := make([]Evidence, 0, len(r.evidence))
	out = append(out, r.evidence[r.evidenceNext:]...)
	r.evidenceOrdered = append(out, r.evidence[:r.evidenceNext]...)
	return r.evidenceOrdered
}
