package node

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// Protocol-state keys (protoStore). Every envelope the core asks to persist is
// kept under pbft/env/<counter>, the counter giving the order of the Persists,
// until pbft.Prunable releases it.
const (
	metaView      = "pbft/view"
	metaEnvPrefix = "pbft/env/"
	// pruneInterval paces the pruning pass when only the applied seq moved;
	// a new view or stable checkpoint prunes at once.
	pruneInterval = time.Second
	// pruneDeletesMax bounds the envelopes one round deletes. A checkpoint
	// releases about checkpoint_interval × (2f+3) of them, which with 256
	// validators and a long interval would be millions of keys in one record
	// of the protocol state (protoRecordBytesMax); the rest go in the next
	// rounds.
	pruneDeletesMax = 8192
)

// Frame tags: the first byte of every p2p frame says what follows.
const (
	tagEnvelope byte = 1 // a replica-signed pbft.Envelope
	tagRequest  byte = 2 // a client's SignedRequest forwarded by the node it was submitted to
)

func frameOf(tag byte, body []byte) []byte {
	f := make([]byte, 1+len(body))
	f[0] = tag
	copy(f[1:], body)
	return f
}

type submission struct {
	raw  []byte
	done chan error // nil for forwarded requests nobody waits on
}

// appliedNote tells the driver that the executor made seq durable: the core
// needs every one for checkpoints (Executed), and fetched entries also leave
// the pending queue and move Delivered (Forget, CaughtUp).
type appliedNote struct {
	seq       uint64
	timestamp int64
	digest    crypto.Digest // checkpoint digest, at checkpoint seqs only
	fetched   bool
	batch     [][]byte
}

func envKey(counter uint64) string { return fmt.Sprintf("%s%016x", metaEnvPrefix, counter) }

func parseEnvKey(k string) (uint64, error) {
	c, err := strconv.ParseUint(strings.TrimPrefix(k, metaEnvPrefix), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed protocol-state key %q: %w", k, err)
	}
	return c, nil
}

// restoreState rebuilds the core's State from the event log and the protocol
// state persisted before every message this replica sent.
func (n *Node) restoreState() (pbft.State, error) {
	applied, _ := n.store.Applied()
	st := pbft.State{Delivered: applied}
	if applied > 0 {
		e, err := n.store.Entry(applied)
		if err != nil {
			return st, fmt.Errorf("node: restore: entry %d: %w", applied, err)
		}
		st.LastTimestamp = e.Timestamp
		n.lastTimestamp = e.Timestamp
	}
	v, ok, err := n.proto.GetMeta(metaView)
	if err != nil {
		return st, fmt.Errorf("node: restore view: %w", err)
	}
	if ok {
		if len(v) != 8 {
			return st, fmt.Errorf("node: restore view: %d bytes, want 8", len(v))
		}
		st.View = binary.BigEndian.Uint64(v)
	}
	n.persisted = map[string]*pbft.Envelope{}
	err = n.proto.ScanMeta(metaEnvPrefix, func(key string, val []byte) error {
		counter, err := parseEnvKey(key)
		if err != nil {
			return err
		}
		n.envCounter = max(n.envCounter, counter+1)
		env, err := pbft.DecodeEnvelope(val)
		if err != nil {
			return fmt.Errorf("protocol-state %s: %w", key, err)
		}
		n.persisted[key] = env
		st.Log = append(st.Log, *env)
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("node: restore protocol state: %w", err)
	}
	n.persistedView = st.View
	n.appliedSeq.Store(applied)
	return st, nil
}

// runDriver owns the replica: every input goes through here, and the actions
// of a whole round are carried out together (one fsync for all its votes).
func (n *Node) runDriver() {
	defer n.wg.Done()
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	var acts []pbft.Action
	pacer := tickPacer{lastInput: time.Now()}
	input := func() {
		if now := time.Now(); pacer.input(now) {
			ticker.Reset(tickInterval)
			acts = append(acts, n.replica.Tick(now)...)
		}
	}
	for {
		select {
		case <-n.stop:
			return
		case s := <-n.submitCh:
			input()
			acts = n.submit(acts, s)
		case m := <-n.stepCh:
			input()
			acts = append(acts, n.replica.Step(m)...)
		case now := <-ticker.C:
			acts = append(acts, n.replica.Tick(now)...)
			if pacer.ticked(now) {
				ticker.Reset(tickIdleInterval)
			}
		case <-n.appliedKick:
			input()
			acts = n.noteApplied(acts)
		}
		start := time.Now()
	drain:
		for i := 0; i < driverDrainMax; i++ {
			select {
			case s := <-n.submitCh:
				acts = n.submit(acts, s)
			case m := <-n.stepCh:
				acts = append(acts, n.replica.Step(m)...)
			default:
				break drain
			}
		}
		if !n.carry(acts) {
			return
		}
		acts = acts[:0]
		st := n.replica.Status()
		n.status.Store(&st)
		since(n.metrics.roundSeconds, start)
	}
}

// tickPacer slows the driver's ticker while no input comes (see
// tickIdleAfter).
type tickPacer struct {
	idle      bool
	lastInput time.Time
}

// input notes an input at now and reports whether the driver was idle: then
// the core must tick at once, and the ticker go back to tickInterval.
func (p *tickPacer) input(now time.Time) bool {
	p.lastInput = now
	wasIdle := p.idle
	p.idle = false
	return wasIdle
}

// ticked reports whether the driver turns idle at a tick at now: then the
// ticker slows to tickIdleInterval.
func (p *tickPacer) ticked(now time.Time) bool {
	if p.idle || now.Sub(p.lastInput) < tickIdleAfter {
		return false
	}
	p.idle = true
	return true
}

func (n *Node) submit(acts []pbft.Action, s submission) []pbft.Action {
	more, err := n.replica.Submit(s.raw)
	if s.done != nil {
		s.done <- err
	}
	return append(acts, more...)
}

// noteApplied tells the core about every batch the executor made durable, in
// order: fetched ones leave the pending queue and move Delivered, and every
// one may complete a checkpoint.
func (n *Node) noteApplied(acts []pbft.Action) []pbft.Action {
	n.appliedMu.Lock()
	notes := n.appliedNotes
	n.appliedNotes = nil
	n.appliedMu.Unlock()
	for _, a := range notes {
		if a.fetched {
			n.replica.Forget(a.batch)
			acts = append(acts, n.replica.CaughtUp(a.seq, a.timestamp)...)
		}
		acts = append(acts, n.replica.Executed(a.seq, a.digest)...)
	}
	return acts
}

// carry performs a round's actions: first one durable write of every envelope
// the round asked to persist (and of the view), then sends and deliveries in
// order. It returns false when the node must stop voting because storage failed.
func (n *Node) carry(acts []pbft.Action) bool {
	// What earlier rounds persisted may be released now; this round's own
	// envelopes are judged in a later pass, so no key is both written and
	// deleted in one write.
	del := n.prunable(n.persistedView)
	set := map[string][]byte{}
	// Envelopes are encoded once: the bytes persisted are the bytes sent.
	encoded := map[*pbft.Envelope][]byte{}
	encode := func(e *pbft.Envelope) []byte {
		b, ok := encoded[e]
		if !ok {
			b = codec.MustMarshal(e)
			encoded[e] = b
		}
		return b
	}
	view := n.persistedView
	for _, a := range acts {
		p, ok := a.(pbft.Persist)
		if !ok {
			continue
		}
		view = p.View
		for _, e := range p.Envelopes {
			k := envKey(n.envCounter)
			n.envCounter++
			set[k] = encode(e)
			n.persisted[k] = e
		}
	}
	if view != n.persistedView {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], view)
		set[metaView] = b[:]
	}
	if len(set) > 0 || len(del) > 0 {
		start := time.Now()
		if err := n.proto.PutMeta(set, del); err != nil {
			n.halt("persisting protocol state failed; this replica stops voting", err)
			return false
		}
		if view != n.persistedView {
			n.log.Info("pbft view moved", "from", n.persistedView, "to", view)
		}
		n.persistedView = view
		for _, k := range del {
			delete(n.persisted, k)
		}
		n.metrics.fsyncs.Inc()
		since(n.metrics.protocolWrite, start)
	}
	if n.cfg.Byzantine != "" {
		acts = n.misbehave(acts)
	}
	for _, a := range acts {
		switch a := a.(type) {
		case pbft.Broadcast:
			n.host.Broadcast(frameOf(tagEnvelope, encode(a.Env)))
		case pbft.Send:
			n.host.Send(a.To, frameOf(tagEnvelope, encode(a.Env)))
		case pbft.Deliver:
			it := execItem{seq: a.Seq, batch: a.Batch, cert: a.Cert}
			select {
			case n.execCh <- it:
			case <-n.stop:
				return false
			}
		case pbft.Fetch:
			n.kickFetch(a.AfterSeq)
		}
	}
	return true
}

// prunable returns the persisted envelopes pbft.Prunable releases, given the
// view this round makes durable, at most pruneDeletesMax of them. The pass
// runs when the view or the stable checkpoint moved, or the last pass stopped
// at the bound, else at most every pruneInterval.
func (n *Node) prunable(view uint64) []string {
	// The status published after the last round: its stable checkpoint's
	// proof went to disk in that round's write.
	stable := n.status.Load().StableCheckpoint
	now := time.Now()
	if view == n.prunedView && stable == n.prunedStable && now.Sub(n.prunedAt) < pruneInterval {
		return nil
	}
	n.prunedView, n.prunedStable, n.prunedAt = view, stable, now
	applied := n.appliedSeq.Load()
	var del []string
	for k, e := range n.persisted {
		if len(del) == pruneDeletesMax {
			n.prunedAt = time.Time{} // the next round passes again
			break
		}
		if pbft.Prunable(e, len(n.keys), applied, stable, view) {
			del = append(del, k)
		}
	}
	return del
}

func (n *Node) kickFetch(after uint64) {
	select {
	case n.fetchKick <- after:
	default:
	}
}
