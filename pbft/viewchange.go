package pbft

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// viewChangeInfo is a VIEW-CHANGE whose every nested signature and
// certificate was checked, with what the NEW-VIEW computation needs of it.
type viewChangeInfo struct {
	env          *Envelope
	vc           *ViewChange
	stableDigest crypto.Digest
	certs        []certInfo
}

// certInfo is what a prepared certificate states.
type certInfo struct {
	view, seq uint64
	digest    crypto.Digest
	timestamp int64
}

// reissue is what a NEW-VIEW must carry, computed from its VIEW-CHANGEs.
type reissue struct {
	// minSeq is the highest stable checkpoint among the VIEW-CHANGEs, with
	// its digest and proof.
	minSeq       uint64
	stableDigest crypto.Digest
	stableProof  []Envelope
	// entries are the PRE-PREPAREs for minSeq+1, minSeq+2, ... in order.
	entries []reissueEntry
}

type reissueEntry struct {
	seq       uint64
	digest    crypto.Digest
	timestamp int64
}

func sameEnvelope(a, b *Envelope) bool {
	return a.Kind == b.Kind && bytes.Equal(a.Body, b.Body) && bytes.Equal(a.Sig, b.Sig)
}

// timeout is the view-change timeout of the current attempt: it doubles with
// every view change since the last delivery.
func (r *Replica) timeout() time.Duration {
	return r.cfg.ViewChangeTimeout << min(r.failedViews, ViewChangeDoublingsMax)
}

// requestTimedOut reports whether a backup has waited too long for its
// pending requests: no delivery for a timeout while one is pending, or one
// request pending for CensorshipTimeoutFactor timeouts.
func (r *Replica) requestTimedOut() bool {
	if r.isPrimary() {
		return false
	}
	oldest, ok := r.pending.oldestAt()
	if !ok {
		return false
	}
	t := r.timeout()
	start := oldest
	if r.activeAt.After(start) {
		start = r.activeAt
	}
	if r.now.Sub(start) >= CensorshipTimeoutFactor*t {
		return true
	}
	if r.deliveredAt.After(start) {
		start = r.deliveredAt
	}
	return r.now.Sub(start) >= t
}

// noteView records that replica from showed view, and joins a later view
// when f+1 replicas are in one.
func (r *Replica) noteView(from uint32, view uint64) {
	if view <= r.viewSeen[from] {
		return
	}
	r.viewSeen[from] = view
	r.joinLaterView()
}

// joinLaterView moves this replica to the highest view that f+1 other
// replicas showed, if that is above its own: at least one of them is honest,
// so a view change is under way there (the liveness rule of Castro and
// Liskov, §4.5.2, counting any message of the later view).
func (r *Replica) joinLaterView() {
	views := make([]uint64, 0, r.n)
	for i, v := range r.viewSeen {
		if uint32(i) != r.cfg.Self && v > r.view {
			views = append(views, v)
		}
	}
	if len(views) <= r.f {
		return
	}
	slices.Sort(views)
	r.startViewChange(views[len(views)-1-r.f])
}

// startViewChange moves this replica to view target: it stops taking part in
// the normal case of its view and signs a VIEW-CHANGE carrying its stable
// checkpoint and its P set.
func (r *Replica) startViewChange(target uint64) {
	if target <= r.view {
		return
	}
	r.view = target
	r.active = false
	r.newView = nil
	r.armed = false
	r.viewChangeResentAt = r.now
	r.failedViews++
	r.viewChangesN++
	// The slots of the old view are done with: what prepared there is in
	// the P set.
	clear(r.slots)
	r.slotSeqMax = 0
	r.proposedSeq = 0
	r.pending.unbatchAll()
	vc := &ViewChange{View: target, StableSeq: r.stable, StableProof: r.stableProof, Replica: r.cfg.Self}
	var certs []certInfo
	for _, seq := range slices.Sorted(maps.Keys(r.prepared)) {
		c := r.prepared[seq]
		vc.Prepared = append(vc.Prepared, c.wire())
		certs = append(certs, certInfo{view: c.view, seq: c.seq, digest: c.digest, timestamp: c.timestamp})
	}
	r.ownViewChange = r.sign(KindViewChange, vc, nil)
	r.viewChanges[r.cfg.Self] = &viewChangeInfo{env: r.ownViewChange, vc: vc, stableDigest: r.stableDigest, certs: certs}
	r.viewSeen[r.cfg.Self] = target
	r.checkArmed()
	r.tryNewView()
}

// checkArmed starts the NEW-VIEW timeout once 2f+1 replicas (this one
// included) are known to have moved to this view or beyond.
func (r *Replica) checkArmed() {
	if r.active || r.armed {
		return
	}
	c := 0
	for _, vi := range r.viewChanges {
		if vi != nil && vi.vc.View >= r.view {
			c++
		}
	}
	if c >= r.quorum {
		r.armed = true
		r.armedAt = r.now
	}
}

// retransmitViewChange re-broadcasts this replica's VIEW-CHANGE while it waits
// for the NEW-VIEW, once per RetransmitInterval.
func (r *Replica) retransmitViewChange() {
	if r.ownViewChange == nil || r.now.Sub(r.viewChangeResentAt) < r.cfg.RetransmitInterval {
		return
	}
	r.viewChangeResentAt = r.now
	r.out = append(r.out, Broadcast{Env: r.ownViewChange})
}

func (r *Replica) stepViewChange(vc *ViewChange, env *Envelope) {
	from := vc.Replica
	if vc.View == 0 {
		r.dropped++
		return
	}
	if vc.StableSeq < r.stable {
		// Its window is behind: help it to a proof of h.
		r.answerBelowStable(from)
	}
	if old := r.viewChanges[from]; old != nil && vc.View <= old.vc.View {
		if vc.View == old.vc.View && !sameEnvelope(old.env, env) {
			if _, _, err := r.verifyViewChange(vc); err == nil {
				r.conflict(from, KindViewChange, vc.View, 0, old.env, env)
			}
		}
		if vc.View == r.view && r.active {
			r.answerNewView(from)
		}
		return
	}
	if vc.View < r.view || (vc.View == r.view && r.active) {
		// The sender is behind: in this view it has not seen the NEW-VIEW,
		// below it it will follow this replica's messages.
		if vc.View == r.view {
			r.answerNewView(from)
		}
		return
	}
	digest, certs, err := r.verifyViewChange(vc)
	if err != nil {
		r.dropped++
		return
	}
	r.viewChanges[from] = &viewChangeInfo{env: env, vc: vc, stableDigest: digest, certs: certs}
	r.noteView(from, vc.View)
	// A VIEW-CHANGE for a later view counts towards the 2f+1 that start the
	// NEW-VIEW timeout too: that replica left this view as well.
	r.checkArmed()
	r.tryNewView()
}

// answerNewView sends the NEW-VIEW of the current view to a replica that is
// still changing to it, at most once per RetransmitInterval. Only the primary
// answers: replicas relay nothing but their own messages.
func (r *Replica) answerNewView(to uint32) {
	if r.newView == nil || !r.isPrimary() {
		return
	}
	if !r.nvAnsweredAt[to].IsZero() && r.now.Sub(r.nvAnsweredAt[to]) < r.cfg.RetransmitInterval {
		return
	}
	r.nvAnsweredAt[to] = r.now
	r.out = append(r.out, Send{To: to, Env: r.newView})
}

// errBadViewChange wraps every reason a VIEW-CHANGE or NEW-VIEW is refused.
var errBadViewChange = errors.New("invalid view change")

// verifyViewChange checks a VIEW-CHANGE body: its stable checkpoint proof and
// every prepared certificate, nested signatures included. It returns the
// checkpoint's state digest and what the certificates state.
func (r *Replica) verifyViewChange(vc *ViewChange) (crypto.Digest, []certInfo, error) {
	var digest crypto.Digest
	switch {
	case vc.StableSeq%r.cfg.CheckpointInterval != 0:
		return digest, nil, fmt.Errorf("%w: stable seq %d is not a checkpoint", errBadViewChange, vc.StableSeq)
	case vc.StableSeq == 0 && len(vc.StableProof) != 0:
		return digest, nil, fmt.Errorf("%w: a proof for checkpoint 0", errBadViewChange)
	case uint64(len(vc.Prepared)) > r.cfg.WindowSeqs:
		return digest, nil, fmt.Errorf("%w: %d prepared certificates, window %d", errBadViewChange, len(vc.Prepared), r.cfg.WindowSeqs)
	}
	if vc.StableSeq > 0 {
		seq, d, err := VerifyCheckpointProof(vc.StableProof, r.cfg.Validators, r.cfg.Verifier)
		if err != nil {
			return digest, nil, fmt.Errorf("%w: %w", errBadViewChange, err)
		}
		if seq != vc.StableSeq {
			return digest, nil, fmt.Errorf("%w: proof for seq %d, not %d", errBadViewChange, seq, vc.StableSeq)
		}
		digest = d
	}
	certs := make([]certInfo, 0, len(vc.Prepared))
	prev := vc.StableSeq
	for i := range vc.Prepared {
		c, err := r.verifyPreparedCert(&vc.Prepared[i], vc.View)
		if err != nil {
			return digest, nil, err
		}
		if c.seq <= prev || c.seq-vc.StableSeq > r.cfg.WindowSeqs {
			return digest, nil, fmt.Errorf("%w: certificate for seq %d out of order or outside (%d, %d]", errBadViewChange, c.seq, vc.StableSeq, vc.StableSeq+r.cfg.WindowSeqs)
		}
		prev = c.seq
		certs = append(certs, c)
	}
	return digest, certs, nil
}

// verifyPreparedCert checks one prepared certificate of a VIEW-CHANGE for
// view vcView: a batchless PRE-PREPARE of an earlier view signed by that
// view's primary, and 2f PREPAREs for the same (view, seq, digest) signed by
// distinct backups.
func (r *Replica) verifyPreparedCert(pc *PreparedCert, vcView uint64) (certInfo, error) {
	e := &pc.PrePrepare
	if e.Kind != KindPrePrepare || len(e.Batch) != 0 {
		return certInfo{}, fmt.Errorf("%w: certificate holds a %v with %d requests, want a batchless pre-prepare", errBadViewChange, e.Kind, len(e.Batch))
	}
	m, err := e.Open(r.n)
	if err != nil {
		return certInfo{}, fmt.Errorf("%w: certificate: %w", errBadViewChange, err)
	}
	pp := m.PrePrepare
	c := certInfo{view: pp.View, seq: pp.Seq, digest: pp.Digest, timestamp: pp.Timestamp}
	primary := r.primary(pp.View)
	switch {
	case pp.View >= vcView:
		return c, fmt.Errorf("%w: certificate of view %d in a view change to %d", errBadViewChange, pp.View, vcView)
	case pp.Replica != primary:
		return c, fmt.Errorf("%w: pre-prepare of view %d by replica %d, not its primary", errBadViewChange, pp.View, pp.Replica)
	case len(pc.Prepares) != 2*r.f:
		return c, fmt.Errorf("%w: certificate for seq %d holds %d prepares, want %d", errBadViewChange, pp.Seq, len(pc.Prepares), 2*r.f)
	}
	seen := make([]bool, r.n)
	for i := range pc.Prepares {
		p := &pc.Prepares[i]
		if p.Kind != KindPrepare {
			return c, fmt.Errorf("%w: certificate for seq %d holds a %v", errBadViewChange, pp.Seq, p.Kind)
		}
		pm, err := p.Open(r.n)
		if err != nil {
			return c, fmt.Errorf("%w: certificate for seq %d: %w", errBadViewChange, pp.Seq, err)
		}
		b := pm.Prepare
		if b.View != pp.View || b.Seq != pp.Seq || b.Digest != pp.Digest || b.Replica == primary || seen[b.Replica] {
			return c, fmt.Errorf("%w: certificate for seq %d: prepare of replica %d does not match", errBadViewChange, pp.Seq, b.Replica)
		}
		seen[b.Replica] = true
	}
	if !r.cfg.Verifier.Verify(r.cfg.Validators[primary], KindPrePrepare.String(), e.Body, e.Sig) {
		return c, fmt.Errorf("%w: certificate for seq %d: bad pre-prepare signature", errBadViewChange, pp.Seq)
	}
	for i := range pc.Prepares {
		p := &pc.Prepares[i]
		pm, _ := p.Open(r.n)
		if !r.cfg.Verifier.Verify(r.cfg.Validators[pm.From], KindPrepare.String(), p.Body, p.Sig) {
			return c, fmt.Errorf("%w: certificate for seq %d: bad prepare signature of replica %d", errBadViewChange, pp.Seq, pm.From)
		}
	}
	return c, nil
}

// computeReissue is the NEW-VIEW computation, a function of the chosen
// VIEW-CHANGEs alone: from the highest stable checkpoint among them (min-s)
// to the highest prepared seq (max-s), each seq gets the digest prepared in
// the highest view (with its original timestamp), or a null batch. Two
// certificates of one view for different digests cannot both exist with at
// most f faulty replicas; should they, the smaller digest wins, so that every
// replica still computes the same set.
func computeReissue(vcs []*viewChangeInfo) reissue {
	var re reissue
	for _, vi := range vcs {
		if vi.vc.StableSeq > re.minSeq {
			re.minSeq, re.stableDigest, re.stableProof = vi.vc.StableSeq, vi.stableDigest, vi.vc.StableProof
		}
	}
	best := make(map[uint64]certInfo)
	maxSeq := re.minSeq
	for _, vi := range vcs {
		for _, c := range vi.certs {
			if c.seq <= re.minSeq {
				continue
			}
			maxSeq = max(maxSeq, c.seq)
			b, ok := best[c.seq]
			if !ok || c.view > b.view || (c.view == b.view && bytes.Compare(c.digest[:], b.digest[:]) < 0) {
				best[c.seq] = c
			}
		}
	}
	for seq := re.minSeq + 1; seq <= maxSeq; seq++ {
		if b, ok := best[seq]; ok {
			re.entries = append(re.entries, reissueEntry{seq: seq, digest: b.digest, timestamp: b.timestamp})
		} else {
			re.entries = append(re.entries, reissueEntry{seq: seq, digest: nullDigest, timestamp: nullTimestamp})
		}
	}
	return re
}

// tryNewView sends the NEW-VIEW once this replica is the primary of the view
// it changes to and holds 2f+1 VIEW-CHANGEs for it: the first 2f+1 in
// replica order, so the choice is a function of what it holds.
func (r *Replica) tryNewView() {
	if r.active || !r.isPrimary() {
		return
	}
	chosen := make([]*viewChangeInfo, 0, r.quorum)
	for _, vi := range r.viewChanges {
		if vi != nil && vi.vc.View == r.view {
			chosen = append(chosen, vi)
			if len(chosen) == r.quorum {
				break
			}
		}
	}
	if len(chosen) < r.quorum {
		return
	}
	re := computeReissue(chosen)
	nv := &NewView{View: r.view, Replica: r.cfg.Self, ViewChanges: make([]Envelope, len(chosen)), PrePrepares: make([]Envelope, len(re.entries))}
	for i, vi := range chosen {
		nv.ViewChanges[i] = *vi.env
	}
	for i, e := range re.entries {
		nv.PrePrepares[i] = *Seal(r.cfg.Signer, KindPrePrepare, &PrePrepare{View: r.view, Seq: e.seq, Digest: e.digest, Timestamp: e.timestamp, Replica: r.cfg.Self})
	}
	env := r.sign(KindNewView, nv, nil)
	r.enterView(env, nv, re)
}

func (r *Replica) stepNewView(nv *NewView, env *Envelope) {
	if nv.View == 0 || nv.Replica != r.primary(nv.View) || nv.View < r.view || (nv.View == r.view && r.active) {
		r.dropped++
		return
	}
	re, err := r.checkNewView(nv)
	if err != nil {
		r.dropped++
		if nv.View == r.view {
			// The primary signed a NEW-VIEW that does not follow from the
			// VIEW-CHANGEs it carries: proof that it is faulty.
			r.startViewChange(r.view + 1)
		}
		return
	}
	r.viewSeen[nv.Replica] = max(r.viewSeen[nv.Replica], nv.View)
	if nv.View > r.view {
		// Every view this replica enters has its own VIEW-CHANGE persisted
		// first: Prunable relies on it to hold the P set of earlier views.
		r.startViewChange(nv.View)
	}
	r.enterView(env, nv, re)
}

// checkNewView checks a NEW-VIEW: 2f+1 valid VIEW-CHANGEs for its view from
// distinct replicas, and exactly the PRE-PREPAREs they determine, each signed
// by the primary.
func (r *Replica) checkNewView(nv *NewView) (reissue, error) {
	if len(nv.ViewChanges) != r.quorum {
		return reissue{}, fmt.Errorf("%w: new-view with %d view-changes, want %d", errBadViewChange, len(nv.ViewChanges), r.quorum)
	}
	infos := make([]*viewChangeInfo, 0, r.quorum)
	seen := make([]bool, r.n)
	for i := range nv.ViewChanges {
		e := &nv.ViewChanges[i]
		if e.Kind != KindViewChange {
			return reissue{}, fmt.Errorf("%w: new-view carries a %v", errBadViewChange, e.Kind)
		}
		m, err := e.Open(r.n)
		if err != nil {
			return reissue{}, fmt.Errorf("%w: new-view: %w", errBadViewChange, err)
		}
		vc := m.ViewChange
		if vc.View != nv.View || seen[vc.Replica] {
			return reissue{}, fmt.Errorf("%w: new-view for view %d carries a view-change of replica %d for view %d (or twice)", errBadViewChange, nv.View, vc.Replica, vc.View)
		}
		seen[vc.Replica] = true
		if known := r.viewChanges[vc.Replica]; known != nil && sameEnvelope(known.env, e) {
			infos = append(infos, known)
			continue
		}
		if !r.cfg.Verifier.Verify(r.cfg.Validators[vc.Replica], KindViewChange.String(), e.Body, e.Sig) {
			return reissue{}, fmt.Errorf("%w: new-view: bad view-change signature of replica %d", errBadViewChange, vc.Replica)
		}
		digest, certs, err := r.verifyViewChange(vc)
		if err != nil {
			return reissue{}, fmt.Errorf("new-view: view-change of replica %d: %w", vc.Replica, err)
		}
		infos = append(infos, &viewChangeInfo{env: e, vc: vc, stableDigest: digest, certs: certs})
	}
	re := computeReissue(infos)
	if len(nv.PrePrepares) != len(re.entries) {
		return reissue{}, fmt.Errorf("%w: new-view re-issues %d pre-prepares, want %d", errBadViewChange, len(nv.PrePrepares), len(re.entries))
	}
	for i, want := range re.entries {
		e := &nv.PrePrepares[i]
		if e.Kind != KindPrePrepare || len(e.Batch) != 0 {
			return reissue{}, fmt.Errorf("%w: new-view entry %d is a %v with %d requests", errBadViewChange, i, e.Kind, len(e.Batch))
		}
		m, err := e.Open(r.n)
		if err != nil {
			return reissue{}, fmt.Errorf("%w: new-view entry %d: %w", errBadViewChange, i, err)
		}
		if *m.PrePrepare != (PrePrepare{View: nv.View, Seq: want.seq, Digest: want.digest, Timestamp: want.timestamp, Replica: nv.Replica}) {
			return reissue{}, fmt.Errorf("%w: new-view entry %d is not the pre-prepare its view-changes determine for seq %d", errBadViewChange, i, want.seq)
		}
		if !r.cfg.Verifier.Verify(r.cfg.Validators[nv.Replica], KindPrePrepare.String(), e.Body, e.Sig) {
			return reissue{}, fmt.Errorf("%w: new-view entry %d: bad signature", errBadViewChange, i)
		}
	}
	return re, nil
}

// enterView starts the normal case of the view this replica changed to,
// from a NEW-VIEW it sent or checked: it adopts the highest stable
// checkpoint among the VIEW-CHANGEs, accepts every re-issued PRE-PREPARE above
// its own h (with the batch when it holds it), and a backup PREPAREs them.
func (r *Replica) enterView(env *Envelope, nv *NewView, re reissue) {
	primary := r.isPrimary()
	r.active = true
	r.newView = env
	r.activeAt = r.now
	if !primary {
		r.keep(env)
	}
	if re.minSeq > r.stable {
		r.adoptStable(re.minSeq, re.stableDigest, re.stableProof)
	}
	maxTS := r.proposedTS
	for i, e := range re.entries {
		if e.seq <= r.stable {
			continue
		}
		pp := &nv.PrePrepares[i]
		sl := r.slotFor(r.view, e.seq)
		if sl.accepted {
			panic(fmt.Sprintf("pbft: seq %d of view %d accepted before its NEW-VIEW", e.seq, r.view))
		}
		sl.accepted = true
		sl.digest = e.digest
		sl.prePrepare = pp
		sl.timestamp = e.timestamp
		if e.digest == nullDigest {
			sl.setBatch([][]byte{}, nullTimestamp, nil)
		} else if b, ok := r.storedBatchFor(e.seq, e.digest); ok {
			sl.setBatch(b.batch, e.timestamp, b.reqHashes)
		}
		if primary {
			sl.ownPrePrepare = pp
			if len(sl.batch) == 0 {
				r.keep(pp)
			}
		}
		if len(sl.batch) > 0 {
			// Kept under this view so the batch outlives the old view's
			// PRE-PREPARE; the primary also sends it to backups that lack it.
			withBatch := &Envelope{Kind: pp.Kind, Body: pp.Body, Sig: pp.Sig, Batch: sl.batch}
			r.keep(withBatch)
			if primary {
				sl.ownPrePrepare = withBatch
				r.out = append(r.out, Broadcast{Env: withBatch})
			}
		}
		if !primary {
			sl.ownPrepare = r.sign(KindPrepare, &Prepare{View: r.view, Seq: e.seq, Digest: e.digest, Replica: r.cfg.Self}, nil)
			sl.prepares[r.cfg.Self] = vote{digest: e.digest, env: sl.ownPrepare}
		}
		sl.reqs = r.pending.markBatched(sl.reqHashes)
		sl.progressAt = r.now
		maxTS = max(maxTS, e.timestamp)
	}
	if primary {
		r.proposedSeq = max(re.minSeq+uint64(len(re.entries)), r.stable, r.delivered)
		r.proposedTS = maxTS
	}
	for _, e := range re.entries {
		if sl := r.slots[slotKey{view: r.view, seq: e.seq}]; sl != nil {
			r.advance(sl)
		}
	}
}
