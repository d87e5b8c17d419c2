package pbft

// Prunable reports whether the node may delete a persisted envelope, given
// the seq it has applied durably, the stable checkpoint whose proof is
// durable, and the view of its last durable Persist (State.View); n is the
// number of replicas. Deleting it in the same write that makes those values
// durable is fine. An envelope is kept while a restarted replica needs it:
//
//   - PREPARE and COMMIT of a seq above h in the current view: so that it
//     never signs a conflicting vote, and to rebuild its prepared
//     certificates. Earlier views are released: the replica never votes in
//     them again, and its VIEW-CHANGE for the current view (kept) carries
//     every certificate it prepared there.
//   - PRE-PREPARE of a seq above h in the current view; in an earlier view
//     while the seq is not applied either, since it holds the only copy of
//     the batch a NEW-VIEW may re-issue.
//   - CHECKPOINT at or above h: the proof of h and the replica's newer ones.
//   - VIEW-CHANGE and NEW-VIEW of the current view (or a later one).
//
// Anything else, including envelopes that do not open, is released.
func Prunable(env *Envelope, n int, applied, stableSeq, view uint64) bool {
	m, err := env.Open(n)
	if err != nil {
		return true
	}
	switch {
	case m.PrePrepare != nil:
		pp := m.PrePrepare
		return pp.Seq <= stableSeq || (pp.View < view && pp.Seq <= applied)
	case m.Prepare != nil:
		return m.Prepare.Seq <= stableSeq || m.Prepare.View < view
	case m.Commit != nil:
		return m.Commit.Seq <= stableSeq || m.Commit.View < view
	case m.Checkpoint != nil:
		return m.Checkpoint.Seq < stableSeq
	case m.ViewChange != nil:
		return m.ViewChange.View < view
	case m.NewView != nil:
		return m.NewView.View < view
	}
	return true
}
