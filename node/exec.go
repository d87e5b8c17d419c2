package node

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/pbft"
)

// execItem is a committed batch on its way into the event log, delivered by the
// core or fetched from a peer with its certificate.
type execItem struct {
	seq     uint64
	batch   [][]byte
	cert    pbft.Certificate
	fetched bool
}

// runExecutor applies committed batches in order. It group-commits: every
// batch queued at the moment is applied in its own transaction without an
// fsync, then one fsync makes them all durable, and only then do the EXECUTED
// statements leave and replies go out.
func (n *Node) runExecutor() {
	defer n.wg.Done()
	group := make([]execItem, 0, executeGroupMax)
	done := make([]appliedBatch, 0, executeGroupMax)
	for {
		group, done = group[:0], done[:0]
		select {
		case <-n.stop:
			return
		case it := <-n.execCh:
			group = append(group, it)
		}
		group = appendWaiting(group, n.execCh, executeGroupMax)
		for _, it := range group {
			a, ok := n.execute(it)
			if !ok {
				return
			}
			if a.entry != nil {
				done = append(done, a)
			}
		}
		if len(done) == 0 {
			continue
		}
		start := time.Now()
		if err := n.store.Sync(); err != nil {
			n.halt("syncing applied batches failed; execution stops", err)
			return
		}
		n.metrics.fsyncs.Inc()
		since(n.metrics.logSyncSeconds, start)
		for _, a := range done {
			n.announce(a)
		}
	}
}

// appliedBatch is a batch applied to the log but not yet announced.
type appliedBatch struct {
	entry   *eventlog.Entry
	item    execItem
	logTime int64
	digest  crypto.Digest // the checkpoint digest, at checkpoint seqs only
}

// execute applies one committed batch (not yet durable); ok false means storage
// failed and the executor stops (nothing half-applied: a batch is one
// transaction). A batch already applied yields no entry.
func (n *Node) execute(it execItem) (appliedBatch, bool) {
	applied, _ := n.store.Applied()
	if it.seq <= applied {
		return appliedBatch{}, true
	}
	if it.seq != applied+1 {
		n.log.Warn("committed batch arrived ahead of the log; fetching the gap", "seq", it.seq, "applied", applied)
		n.kickFetch(applied)
		return appliedBatch{}, true
	}
	logTime := logTimeAfter(n.lastTimestamp, it.cert.Timestamp)
	start := time.Now()
	e, err := applyBatch(n.store, n.machine, &it.cert, it.batch, logTime)
	since(n.metrics.applySeconds, start)
	if errors.Is(err, eventlog.ErrOutOfOrder) {
		return appliedBatch{}, true
	}
	if err != nil {
		n.halt(fmt.Sprintf("applying committed batch %d failed; execution stops", it.seq), err)
		return appliedBatch{}, false
	}
	n.lastTimestamp = logTime
	a := appliedBatch{entry: e, item: it, logTime: logTime}
	if e.Seq%n.genesis.Params.CheckpointInterval == 0 {
		// The executor is the log's only writer, so the head is still e.
		seq, state := n.store.StateDigest()
		if seq != e.Seq {
			panic(fmt.Sprintf("node: state digest read at seq %d right after applying %d", seq, e.Seq))
		}
		a.digest = crypto.Hash(e.Hash[:], state[:])
	}
	return a, true
}

// announce runs once a batch is durable: sign and broadcast EXECUTED, answer
// waiting clients, and tell the driver about fetched entries.
func (n *Node) announce(a appliedBatch) {
	e := a.entry
	n.appliedSeq.Store(e.Seq)
	n.metrics.batches.Inc()
	n.metrics.requests.Add(float64(len(e.Requests)))
	n.metrics.batchRequests.Observe(float64(len(e.Requests)))
	n.metrics.events.Add(float64(e.EventCount))
	env := pbft.Seal(n.signer, pbft.KindExecuted, &pbft.Executed{
		Seq: e.Seq, ResultsRoot: e.ResultsRoot, EntryHash: e.Hash, Replica: n.self,
	})
	n.host.Broadcast(frameOf(tagEnvelope, codec.MustMarshal(env)))
	n.replies.executedLocal(e, env)
	if n.halted.Load() != nil {
		// The driver no longer runs to take notes; queueing them would only grow.
		return
	}
	n.appliedMu.Lock()
	n.appliedNotes = append(n.appliedNotes, appliedNote{
		seq: e.Seq, timestamp: a.logTime, digest: a.digest, fetched: a.item.fetched, batch: a.item.batch,
	})
	n.appliedMu.Unlock()
	select {
	case n.appliedKick <- struct{}{}:
	default:
	}
}

type waiter struct {
	hash crypto.Digest
	ch   chan *pbft.ReplyBundle
	// seq is the seq whose waiting list holds the waiter, once attached.
	seq      uint64
	attached bool
}

type localResult struct {
	root    crypto.Digest
	results [][]byte
	tree    *crypto.MerkleTree // built for the first proof asked of this batch
}

type seqReplies struct {
	executed map[uint32]*pbft.Envelope
	roots    map[uint32]crypto.Digest
	local    *localResult
	waiting  []pendingReply
	// executedAfter is the tracker's count of requests executed here once
	// this seq was.
	executedAfter uint64
}

// requestAt is where a request was executed: its seq and its index there.
type requestAt struct {
	seq   uint64
	index int
}

type pendingReply struct {
	w     *waiter
	index int
}

// replyTracker matches executed batches with waiting HTTP requests and with
// the EXECUTED messages of other replicas.
//
// A request submitted again after it was executed here (a client's retry
// after its first exchange gave up, through this node or another) is answered
// from the seq that executed it: the core does not propose it again while it
// is among its pbft.RecentDeliveredMax latest delivered requests, so nothing
// else would answer it. The tracker indexes as many of its latest executed
// requests, and keeps a seq until it is at least executedKeepSeqs behind the
// highest and its requests left that index; memory is bounded by the larger
// of the two, and by executedKeepSeqs + pbft.RecentDeliveredMax seqs.
type replyTracker struct {
	mu      sync.Mutex
	need    int
	waiters map[crypto.Digest][]*waiter
	seqs    map[uint64]*seqReplies
	// executedAt indexes the latest pbft.RecentDeliveredMax requests
	// executed here, recent in order of execution (a ring from recentNext).
	executedAt map[crypto.Digest]requestAt
	recent     []crypto.Digest
	recentNext int
	executed   uint64 // requests executed here, counted as the seqs come
	self       uint32
	top        uint64 // highest seq executed here
	pruned     uint64 // seqs below this are gone
}

func newReplyTracker(need int, self uint32) *replyTracker {
	return &replyTracker{need: need, self: self, waiters: map[crypto.Digest][]*waiter{},
		seqs: map[uint64]*seqReplies{}, executedAt: map[crypto.Digest]requestAt{}}
}

// remember indexes a request executed here and not indexed, forgetting the
// oldest of the index once it holds pbft.RecentDeliveredMax.
func (t *replyTracker) remember(h crypto.Digest, at requestAt) {
	t.executedAt[h] = at
	if len(t.recent) < pbft.RecentDeliveredMax {
		t.recent = append(t.recent, h)
		return
	}
	delete(t.executedAt, t.recent[t.recentNext])
	t.recent[t.recentNext] = h
	t.recentNext = (t.recentNext + 1) % pbft.RecentDeliveredMax
}

// register returns the waiter for the reply bundle of the request with hash
// h: of the seq that executed it if it was executed here, else of the next
// seq that does.
func (t *replyTracker) register(h crypto.Digest) *waiter {
	w := &waiter{hash: h, ch: make(chan *pbft.ReplyBundle, 1)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.executedAt[h]; ok && t.seqs[at.seq] != nil {
		t.attach(at.seq, t.seqs[at.seq], w, at.index)
		t.complete(at.seq, t.seqs[at.seq])
		return w
	}
	t.waiters[h] = append(t.waiters[h], w)
	return w
}

// attach adds w to the waiting list of seq, for the result at index.
func (t *replyTracker) attach(seq uint64, sr *seqReplies, w *waiter, index int) {
	w.seq, w.attached = seq, true
	sr.waiting = append(sr.waiting, pendingReply{w: w, index: index})
}

// cancel forgets a waiter whose submit ended, wherever it waits: a seq that
// never gathers f+1 matching EXECUTED statements must not keep the retries
// that gave up on it.
func (t *replyTracker) cancel(w *waiter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.attached {
		if sr := t.seqs[w.seq]; sr != nil {
			sr.waiting = slices.DeleteFunc(sr.waiting, func(p pendingReply) bool { return p.w == w })
		}
		return
	}
	ws := t.waiters[w.hash]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(t.waiters, w.hash)
	} else {
		t.waiters[w.hash] = ws
	}
}

func (t *replyTracker) seq(s uint64) *seqReplies {
	sr := t.seqs[s]
	if sr == nil {
		sr = &seqReplies{executed: map[uint32]*pbft.Envelope{}, roots: map[uint32]crypto.Digest{}}
		t.seqs[s] = sr
	}
	return sr
}

// executedLocal records this replica's execution of an entry.
func (t *replyTracker) executedLocal(e *eventlog.Entry, own *pbft.Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sr := t.seq(e.Seq)
	sr.local = &localResult{root: e.ResultsRoot, results: e.Results}
	for i, raw := range e.Requests {
		h := crypto.Hash(raw)
		// A request executed again while still indexed (a primary may put
		// a copy of a delivered one in a later batch) is not counted again,
		// as the core does not count it again among its delivered; it is
		// answered from this seq if its first one is gone.
		if at, dup := t.executedAt[h]; !dup {
			t.remember(h, requestAt{seq: e.Seq, index: i})
			t.executed++
		} else if t.seqs[at.seq] == nil {
			t.executedAt[h] = requestAt{seq: e.Seq, index: i}
		}
		for _, w := range t.waiters[h] {
			t.attach(e.Seq, sr, w, i)
		}
		delete(t.waiters, h)
	}
	sr.executedAfter = t.executed
	sr.executed[t.self] = own
	sr.roots[t.self] = e.ResultsRoot
	if e.Seq > t.top {
		t.top = e.Seq
		t.prune()
	}
	t.complete(e.Seq, sr)
}

// addExecuted records another replica's verified EXECUTED message.
func (t *replyTracker) addExecuted(ex *pbft.Executed, env *pbft.Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ex.Seq < t.pruned || ex.Seq > t.top+executedKeepSeqs {
		return
	}
	sr := t.seq(ex.Seq)
	if _, dup := sr.executed[ex.Replica]; dup {
		return
	}
	sr.executed[ex.Replica] = env
	sr.roots[ex.Replica] = ex.ResultsRoot
	t.complete(ex.Seq, sr)
}

func (t *replyTracker) complete(seq uint64, sr *seqReplies) {
	if sr.local == nil || len(sr.waiting) == 0 {
		return
	}
	var envs [][]byte
	for r, root := range sr.roots {
		if root == sr.local.root {
			envs = append(envs, codec.MustMarshal(sr.executed[r]))
		}
	}
	if len(envs) < t.need {
		return
	}
	if sr.local.tree == nil {
		sr.local.tree = crypto.NewMerkleTree(sr.local.results)
	}
	for _, p := range sr.waiting {
		proof, err := sr.local.tree.Proof(p.index)
		if err != nil {
			panic("node: result index outside its own batch: " + err.Error())
		}
		p.w.ch <- &pbft.ReplyBundle{
			EntrySeq:    seq,
			Result:      sr.local.results[p.index],
			ResultIndex: uint64(p.index),
			ResultCount: uint64(len(sr.local.results)),
			Proof:       proof,
			Executed:    envs,
		}
	}
	sr.waiting = nil
}

// prune forgets the seqs, in order, that are executedKeepSeqs behind the
// highest and whose requests left the index (pbft.RecentDeliveredMax
// requests were executed after them), and any more than executedKeepSeqs +
// pbft.RecentDeliveredMax behind it (seqs without requests count none); the
// index may still name a seq of the second kind, which register checks.
// addExecuted refuses seqs below the first kept one, so deleting the newly
// stale ones is enough.
func (t *replyTracker) prune() {
	// Seqs past the cap go whatever they hold. After a restart the first
	// seq executed is the log's length above the first kept: skip to the
	// cap rather than step through it.
	if limit := t.top - min(t.top, executedKeepSeqs+pbft.RecentDeliveredMax); limit > t.pruned+uint64(len(t.seqs)) {
		for s := range t.seqs {
			if s < limit {
				delete(t.seqs, s)
			}
		}
		t.pruned = limit
	}
	for ; t.pruned+executedKeepSeqs <= t.top; t.pruned++ {
		sr := t.seqs[t.pruned]
		if sr == nil {
			continue
		}
		young := t.executed-sr.executedAfter < pbft.RecentDeliveredMax
		if sr.local != nil && young && t.pruned+executedKeepSeqs+pbft.RecentDeliveredMax > t.top {
			return
		}
		delete(t.seqs, t.pruned)
	}
}
