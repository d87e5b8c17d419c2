package pbft

import (
	"github.com/ordoledger/ordo/crypto"
)

// checkpointVote is one replica's CHECKPOINT; env is nil when it sent none.
type checkpointVote struct {
	seq    uint64
	digest crypto.Digest
	env    *Envelope
}

// Executed tells the replica that the node applied seq durably and that its
// state digest is now stateDigest. The node calls it for every seq it
// applies, in order, including the entries it applies by state transfer. At
// every multiple of CheckpointInterval the replica signs and broadcasts a
// CHECKPOINT; 2f+1 matching ones make the seq stable.
func (r *Replica) Executed(seq uint64, stateDigest crypto.Digest) []Action {
	if seq <= r.executed {
		return nil
	}
	r.executed = seq
	if seq%r.cfg.CheckpointInterval != 0 || seq < r.stable {
		r.maybePropose()
		return r.flush()
	}
	env := r.sign(KindCheckpoint, &Checkpoint{Seq: seq, StateDigest: stateDigest, Replica: r.cfg.Self}, nil)
	if r.ownCkptMax > r.stable+r.cfg.WindowSeqs {
		// Catching up far by state transfer: beyond the window only the
		// newest is kept, so the count stays bounded however far it goes.
		delete(r.ownCkpts, r.ownCkptMax)
	}
	r.ownCkpts[seq] = env
	r.ownCkptMax = max(r.ownCkptMax, seq)
	r.ckptResentAt = r.now
	r.recordCheckpoint(r.cfg.Self, seq, stateDigest, env)
	r.maybePropose()
	return r.flush()
}

// StableCheckpoint returns the last stable checkpoint: its seq, state digest
// and proof (2f+1 CHECKPOINT envelopes; none for seq 0). The node may serve
// them to replicas that fetch state; VerifyCheckpointProof checks them.
func (r *Replica) StableCheckpoint() (uint64, crypto.Digest, []Envelope) {
	return r.stable, r.stableDigest, r.stableProof
}

// recordCheckpoint counts one replica's CHECKPOINT.
func (r *Replica) recordCheckpoint(from uint32, seq uint64, digest crypto.Digest, env *Envelope) {
	if seq == 0 || seq%r.cfg.CheckpointInterval != 0 {
		r.dropped++
		return
	}
	r.ckptSeqMax[from] = max(r.ckptSeqMax[from], seq)
	switch {
	case seq <= r.stable:
		if from != r.cfg.Self && (seq < r.stable || !r.inStableProof(from)) {
			r.answerBelowStable(from)
		}
	case seq-r.stable > r.cfg.WindowSeqs:
		r.recordAhead(from, checkpointVote{seq: seq, digest: digest, env: env})
	default:
		votes := r.ckpts[seq]
		if votes == nil {
			votes = make([]checkpointVote, r.n)
			r.ckpts[seq] = votes
		}
		if v := votes[from]; v.env != nil {
			if v.digest != digest {
				r.conflict(from, KindCheckpoint, 0, seq, v.env, env)
			}
			return
		}
		votes[from] = checkpointVote{seq: seq, digest: digest, env: env}
		r.checkStable(seq, digest, votes)
	}
}

// recordAhead keeps a replica's highest CHECKPOINT beyond the window. 2f+1
// matching ones are a proof this replica adopts at once; f+1 replicas ahead
// mean it is behind.
func (r *Replica) recordAhead(from uint32, v checkpointVote) {
	if a := r.ckptAhead[from]; a.env != nil {
		if a.seq == v.seq && a.digest != v.digest {
			r.conflict(from, KindCheckpoint, 0, v.seq, a.env, v.env)
			return
		}
		if v.seq <= a.seq {
			return
		}
	}
	r.ckptAhead[from] = v
	r.checkStable(v.seq, v.digest, r.ckptAhead)
	if r.stable < v.seq {
		ahead := 0
		for i, a := range r.ckptAhead {
			if uint32(i) != r.cfg.Self && a.env != nil && a.seq > r.stable+r.cfg.WindowSeqs {
				ahead++
			}
		}
		if ahead > r.f {
			r.fetch()
		}
	}
}

// checkStable makes seq stable when votes hold 2f+1 CHECKPOINTs for
// (seq, digest). The proof is the first 2f+1 of them in replica order.
func (r *Replica) checkStable(seq uint64, digest crypto.Digest, votes []checkpointVote) {
	if seq <= r.stable {
		return
	}
	var proof []Envelope
	for _, v := range votes {
		if v.env != nil && v.seq == seq && v.digest == digest {
			proof = append(proof, *v.env)
			if len(proof) == r.quorum {
				r.adoptStable(seq, digest, proof)
				return
			}
		}
	}
}

// adoptStable moves the low watermark to seq, whose proof is given (checked
// by the caller), and forgets everything at or below it.
func (r *Replica) adoptStable(seq uint64, digest crypto.Digest, proof []Envelope) {
	r.setStable(seq, digest, proof)
	for i := range proof {
		r.keep(&proof[i])
	}
	// Deleting in map order is fine: it decides no output.
	for k := range r.slots {
		if k.seq <= seq {
			delete(r.slots, k)
		}
	}
	for s := range r.prepared {
		if s <= seq {
			delete(r.prepared, s)
		}
	}
	for s := range r.batches {
		if s <= seq {
			delete(r.batches, s)
		}
	}
	for s := range r.ckpts {
		if s <= seq {
			delete(r.ckpts, s)
		}
	}
	for s := range r.ownCkpts {
		if s < seq {
			delete(r.ownCkpts, s)
		}
	}
	for i, a := range r.ckptAhead {
		if a.env == nil || (a.seq > seq && a.seq-seq > r.cfg.WindowSeqs) {
			continue
		}
		r.ckptAhead[i] = checkpointVote{}
		if a.seq > seq {
			votes := r.ckpts[a.seq]
			if votes == nil {
				votes = make([]checkpointVote, r.n)
				r.ckpts[a.seq] = votes
			}
			votes[i] = a
		}
	}
	if r.delivered < seq {
		r.fetch()
	}
}

// setStable records the stable checkpoint and who signed its proof.
func (r *Replica) setStable(seq uint64, digest crypto.Digest, proof []Envelope) {
	r.stable, r.stableDigest, r.stableProof = seq, digest, proof
	r.stableSigners = make([]bool, r.n)
	for k := range proof {
		if m, err := proof[k].Open(r.n); err == nil {
			r.stableSigners[m.From] = true
		}
	}
}

// inStableProof reports whether replica i's CHECKPOINT is in the stable proof.
func (r *Replica) inStableProof(i uint32) bool {
	return r.stableSigners != nil && r.stableSigners[i]
}

// answerBelowStable sends a replica that is still below h this replica's own
// CHECKPOINT for h, at most once per RetransmitInterval: from 2f+1 such
// answers it has a proof and can move its window. (Replicas relay nothing
// but their own messages, so the proof itself cannot be forwarded.) A replica
// without a clock yet (restarted, not ticked) answers nothing: it could not
// pace its answers, and two such replicas whose CHECKPOINTs for the same h
// are each missing from the other's proof would answer each other for ever.
func (r *Replica) answerBelowStable(to uint32) {
	env := r.ownCkpts[r.stable]
	if env == nil || !r.hasNow || (!r.ckptAnsweredAt[to].IsZero() && r.now.Sub(r.ckptAnsweredAt[to]) < r.cfg.RetransmitInterval) {
		return
	}
	r.ckptAnsweredAt[to] = r.now
	r.out = append(r.out, Send{To: to, Env: env})
}

// retransmitCheckpoint re-broadcasts this replica's newest CHECKPOINT while it
// is not stable here, once per RetransmitInterval.
func (r *Replica) retransmitCheckpoint() {
	if r.ownCkptMax <= r.stable || r.now.Sub(r.ckptResentAt) < r.cfg.RetransmitInterval {
		return
	}
	if env := r.ownCkpts[r.ownCkptMax]; env != nil {
		r.ckptResentAt = r.now
		r.out = append(r.out, Broadcast{Env: env})
	}
}
