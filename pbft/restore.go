package pbft

import (
	"fmt"
	"maps"
	"slices"

	"github.com/ordoledger/ordo/crypto"
)

// restore rebuilds the replica from st.Log: the stable checkpoint from the
// CHECKPOINT proofs, the P set from its VIEW-CHANGE for st.View (which holds
// every certificate of earlier views) and the slots of st.View from its
// NEW-VIEW and the PRE-PREPAREs and votes of that view.
func (r *Replica) restore(st State) error {
	msgs := make([]Message, len(st.Log))
	for i := range st.Log {
		m, err := st.Log[i].Open(r.n)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", i, err)
		}
		msgs[i] = m
	}
	r.restoreCheckpoints(st.Log, msgs)
	nvEnv, err := r.restoreViewChange(st, msgs)
	if err != nil {
		return err
	}
	// The batches of the PRE-PREPAREs kept with them, of any view.
	for i, m := range msgs {
		pp, env := m.PrePrepare, &st.Log[i]
		if pp == nil || len(env.Batch) == 0 || pp.Seq <= r.stable {
			continue
		}
		hashes, err := restoredBatch(pp, env)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", i, err)
		}
		sl := &slot{view: pp.View, seq: pp.Seq, digest: pp.Digest}
		sl.setBatch(env.Batch, pp.Timestamp, hashes)
		r.storeBatch(sl)
		if c := r.prepared[pp.Seq]; c != nil && !c.hasBatch && c.digest == pp.Digest {
			c.setBatch(env.Batch, hashes)
		}
	}
	if nvEnv != nil {
		if err := r.restoreNewView(nvEnv); err != nil {
			return err
		}
	}
	for i, m := range msgs {
		if err := r.restoreVote(&st.Log[i], m); err != nil {
			return fmt.Errorf("log entry %d (%v): %w", i, st.Log[i].Kind, err)
		}
	}
	for _, seq := range slices.Sorted(maps.Keys(r.slotSeqs())) {
		sl := r.slots[slotKey{view: r.view, seq: seq}]
		if r.primary(sl.view) == r.cfg.Self && sl.ownPrePrepare == nil && (sl.ownPrepare != nil || sl.ownCommit != nil) {
			// The primary signs its PRE-PREPARE before any vote at a seq, and
			// both are persisted and pruned together.
			return fmt.Errorf("a vote for (view %d, seq %d) without this primary's pre-prepare", sl.view, sl.seq)
		}
		if !sl.hasBatch && sl.accepted {
			r.fetchOnStart = true
		}
		if sl.prePrepare != nil && sl.matching(sl.prepares, r.primary(sl.view)) >= 2*r.f {
			r.notePrepared(sl)
		}
	}
	// Nothing restored is persisted or sent again: notePrepared queued the
	// certificates' PREPAREs, which are on disk already, and a Fetch is left
	// to the first Tick.
	r.toPersist = nil
	r.out = r.out[:0]
	if r.delivered < r.stable {
		r.fetchOnStart = true
	}
	return nil
}

// slotSeqs returns the seqs of the current view's slots.
func (r *Replica) slotSeqs() map[uint64]struct{} {
	seqs := make(map[uint64]struct{}, len(r.slots))
	for k := range r.slots {
		seqs[k.seq] = struct{}{}
	}
	return seqs
}

// restoreCheckpoints finds the highest seq with 2f+1 matching CHECKPOINTs in
// the log (a proof persisted when it became stable) and re-loads this
// replica's own CHECKPOINTs from there on.
func (r *Replica) restoreCheckpoints(log []Envelope, msgs []Message) {
	type key struct {
		seq    uint64
		digest crypto.Digest
	}
	groups := make(map[key][]checkpointVote)
	var order []key
	for i, m := range msgs {
		c := m.Checkpoint
		if c == nil {
			continue
		}
		k := key{seq: c.Seq, digest: c.StateDigest}
		g := groups[k]
		if g == nil {
			g = make([]checkpointVote, r.n)
			groups[k] = g
			order = append(order, k)
		}
		if g[m.From].env == nil {
			g[m.From] = checkpointVote{seq: c.Seq, digest: c.StateDigest, env: &log[i]}
		}
	}
	for _, k := range order {
		if k.seq > r.stable {
			r.checkStableRestored(k.seq, k.digest, groups[k])
		}
	}
	for i, m := range msgs {
		c := m.Checkpoint
		if c == nil || m.From != r.cfg.Self || c.Seq < r.stable || c.Seq%r.cfg.CheckpointInterval != 0 {
			continue
		}
		r.ownCkpts[c.Seq] = &log[i]
		r.ownCkptMax = max(r.ownCkptMax, c.Seq)
		if c.Seq > r.stable {
			r.recordCheckpoint(r.cfg.Self, c.Seq, c.StateDigest, &log[i])
		}
	}
}

// checkStableRestored is checkStable without persisting the proof again.
func (r *Replica) checkStableRestored(seq uint64, digest crypto.Digest, votes []checkpointVote) {
	var proof []Envelope
	for _, v := range votes {
		if v.env != nil {
			proof = append(proof, *v.env)
		}
	}
	if len(proof) >= r.quorum {
		r.setStable(seq, digest, proof[:r.quorum])
	}
}

// restoreViewChange re-loads this replica's VIEW-CHANGE for st.View, and with
// it the P set, and returns the NEW-VIEW of st.View if one was accepted.
func (r *Replica) restoreViewChange(st State, msgs []Message) (*Envelope, error) {
	var nvEnv *Envelope
	for i, m := range msgs {
		env := &st.Log[i]
		switch {
		case m.ViewChange != nil:
			vc := m.ViewChange
			switch {
			case m.From != r.cfg.Self:
				return nil, fmt.Errorf("log entry %d: a view-change of replica %d", i, m.From)
			case vc.View > st.View:
				return nil, fmt.Errorf("log entry %d: a view-change for view %d, but the persisted view is %d", i, vc.View, st.View)
			case vc.View < st.View:
				continue
			case r.ownViewChange != nil && !sameEnvelope(r.ownViewChange, env):
				return nil, fmt.Errorf("log entry %d: two different view-changes for view %d", i, vc.View)
			}
			r.ownViewChange = env
		case m.NewView != nil:
			nv := m.NewView
			switch {
			case nv.View > st.View:
				return nil, fmt.Errorf("log entry %d: a new-view for view %d, but the persisted view is %d", i, nv.View, st.View)
			case nv.View < st.View:
				continue
			case nvEnv != nil && !sameEnvelope(nvEnv, env):
				return nil, fmt.Errorf("log entry %d: two different new-views for view %d", i, nv.View)
			}
			nvEnv = env
		}
	}
	if st.View == 0 {
		return nil, nil
	}
	if r.ownViewChange == nil {
		return nil, fmt.Errorf("in view %d without this replica's view-change for it", st.View)
	}
	m, _ := r.ownViewChange.Open(r.n)
	vc := m.ViewChange
	digest, certs, err := r.verifyViewChange(vc)
	if err != nil {
		return nil, fmt.Errorf("own view-change for view %d: %w", st.View, err)
	}
	r.viewChanges[r.cfg.Self] = &viewChangeInfo{env: r.ownViewChange, vc: vc, stableDigest: digest, certs: certs}
	r.viewSeen[r.cfg.Self] = st.View
	if vc.StableSeq > r.stable {
		r.setStable(vc.StableSeq, digest, vc.StableProof)
	}
	for i, c := range certs {
		if c.seq <= r.stable {
			continue
		}
		pc := &vc.Prepared[i]
		pcert := &preparedCert{view: c.view, seq: c.seq, digest: c.digest, timestamp: c.timestamp, prePrepare: &pc.PrePrepare}
		for k := range pc.Prepares {
			pcert.prepares = append(pcert.prepares, &pc.Prepares[k])
		}
		r.prepared[c.seq] = pcert
	}
	return nvEnv, nil
}

// restoreNewView re-accepts the PRE-PREPAREs a NEW-VIEW of the current view
// re-issued (it was checked when it was accepted).
func (r *Replica) restoreNewView(env *Envelope) error {
	m, _ := env.Open(r.n)
	nv := m.NewView
	r.active = true
	r.newView = env
	for i := range nv.PrePrepares {
		e := &nv.PrePrepares[i]
		pm, err := e.Open(r.n)
		if err != nil || pm.PrePrepare == nil {
			return fmt.Errorf("new-view for view %d: entry %d does not open as a pre-prepare", nv.View, i)
		}
		pp := pm.PrePrepare
		if pp.View != r.view || pp.Replica != r.primary(r.view) {
			return fmt.Errorf("new-view for view %d: entry %d is for view %d by replica %d", nv.View, i, pp.View, pp.Replica)
		}
		if pp.Seq <= r.stable {
			continue
		}
		sl := r.slotFor(r.view, pp.Seq)
		sl.accepted = true
		sl.digest = pp.Digest
		sl.prePrepare = e
		sl.timestamp = pp.Timestamp
		if pp.Digest == nullDigest {
			sl.setBatch([][]byte{}, nullTimestamp, nil)
		} else if b, ok := r.storedBatchFor(pp.Seq, pp.Digest); ok {
			sl.setBatch(b.batch, pp.Timestamp, b.reqHashes)
		}
		if pp.Replica == r.cfg.Self {
			sl.ownPrePrepare = e
			r.proposedSeq = max(r.proposedSeq, pp.Seq)
			r.proposedTS = max(r.proposedTS, pp.Timestamp)
		}
	}
	return nil
}

// restoredBatch checks that a persisted PRE-PREPARE's batch matches its
// digest and returns the request hashes.
func restoredBatch(pp *PrePrepare, env *Envelope) ([]crypto.Digest, error) {
	hashes := hashRequests(env.Batch)
	if batchDigestOfIDs(pp.Timestamp, hashes) != pp.Digest {
		return nil, fmt.Errorf("pre-prepare for seq %d: batch does not match its digest", pp.Seq)
	}
	return hashes, nil
}

// restoreVote re-loads a PRE-PREPARE, PREPARE or COMMIT of the current view.
func (r *Replica) restoreVote(env *Envelope, m Message) error {
	var view, seq uint64
	var digest crypto.Digest
	switch {
	case m.PrePrepare != nil:
		view, seq, digest = m.PrePrepare.View, m.PrePrepare.Seq, m.PrePrepare.Digest
	case m.Prepare != nil:
		view, seq, digest = m.Prepare.View, m.Prepare.Seq, m.Prepare.Digest
	case m.Commit != nil:
		view, seq, digest = m.Commit.View, m.Commit.Seq, m.Commit.Digest
		if m.From != r.cfg.Self {
			return fmt.Errorf("a commit of replica %d", m.From)
		}
	case m.Checkpoint != nil || m.ViewChange != nil || m.NewView != nil:
		return nil
	default:
		return fmt.Errorf("not a message this replica persists")
	}
	own := m.From == r.cfg.Self
	switch {
	case view > r.view:
		return fmt.Errorf("view %d, but the persisted view is %d", view, r.view)
	case view < r.view || seq <= r.stable:
		// Superseded: the VIEW-CHANGE for the current view holds what
		// prepared in earlier views, and nothing is signed at or below h.
		return nil
	case !r.active:
		return fmt.Errorf("view %d, whose new-view this replica never accepted", view)
	}
	// A seq beyond the window is kept too: the envelope still binds.
	sl := r.slotFor(view, seq)
	if own && sl.accepted && sl.digest != digest {
		return fmt.Errorf("(view %d, seq %d) has digest %v, but this replica signed %v there", view, seq, digest, sl.digest)
	}
	switch {
	case m.PrePrepare != nil:
		pp := m.PrePrepare
		if pp.Replica != r.primary(view) {
			return fmt.Errorf("pre-prepare for view %d by replica %d, not its primary", view, pp.Replica)
		}
		if sl.accepted && sl.digest != digest {
			return fmt.Errorf("pre-prepare for (view %d, seq %d) has digest %v, but this replica accepted %v", view, seq, digest, sl.digest)
		}
		sl.accepted = true
		sl.digest = digest
		sl.timestamp = pp.Timestamp
		if sl.prePrepare == nil || len(env.Batch) > 0 {
			sl.prePrepare = env
		}
		if len(env.Batch) > 0 && !sl.hasBatch {
			hashes, err := restoredBatch(pp, env)
			if err != nil {
				return err
			}
			sl.setBatch(env.Batch, pp.Timestamp, hashes)
		}
		if own {
			if sl.ownPrePrepare == nil || len(env.Batch) > 0 {
				sl.ownPrePrepare = env
			}
			r.proposedSeq = max(r.proposedSeq, seq)
			r.proposedTS = max(r.proposedTS, pp.Timestamp)
		}
	case m.Prepare != nil:
		if own {
			sl.accepted = true
			sl.digest = digest
			sl.ownPrepare = env
		}
		if sl.prepares[m.From].env == nil {
			sl.prepares[m.From] = vote{digest: digest, env: env}
		}
	case m.Commit != nil:
		sl.accepted = true
		sl.digest = digest
		sl.ownCommit = env
		sl.commits[r.cfg.Self] = vote{digest: digest, env: env}
	}
	return nil
}
