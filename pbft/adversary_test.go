package pbft

import (
	"math/rand/v2"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// adversary rewrites what the Byzantine instances send. Each runs the honest
// core, so it takes part in the protocol; the adversary then drops, mutates,
// duplicates, replays or floods its messages, always signing with that
// replica's own key (ByzzFuzz-style small mutations plus the attacks of
// TESTING.md).
type adversary struct {
	s   *sim
	rng *rand.Rand
	// Behaviours, each applied with its own probability per message.
	silent       bool    // drop everything to silentTo peers
	silentTo     []bool  // per peer
	equivocate   bool    // a primary sends another batch to otherSide peers
	otherSide    []bool  // per peer
	mutatePP     float64 // seq ±1, view ±1, a changed or dropped request
	doubleVote   float64 // PREPARE, COMMIT, CHECKPOINT with another digest
	forgeVC      float64 // VIEW-CHANGE with withheld or forged certificates
	badNewView   float64 // NEW-VIEW with a wrong set, a wrong view, or none
	replay       float64 // old envelopes, kind relabelled, non-canonical
	floodPerSend int     // extra valid-looking and malformed messages
	// pool holds valid client requests a Byzantine primary may put in a
	// batch; history recent envelopes it may replay.
	pool    [][]byte
	history []*Envelope
	// rogue is a well-signed request of a client the genesis does not
	// admit: the node must refuse any batch holding it (I3).
	rogue []byte
	// lies keeps, per replica and (view, seq), what it decided to send in
	// place of its PRE-PREPARE, so that every peer hears the same lie (nil:
	// the truth); the equivocating side gets its own.
	lies map[lieKey][]*Envelope
	// forgedViews: per replica, the views it sent a bad NEW-VIEW for. It
	// stays quiet there afterwards, so that its core's true PRE-PREPAREs do
	// not give the forgery away as an equivocation: the backups' own
	// recomputation must catch it.
	forgedViews map[uint32]map[uint64]bool
}

// lieKey names one replica's PRE-PREPARE for one (view, seq), and the side
// of the network it goes to.
type lieKey struct {
	replica   uint32
	view, seq uint64
	other     bool
}

func newAdversary(s *sim) *adversary {
	a := &adversary{s: s, rng: s.rng, silentTo: make([]bool, s.n), otherSide: make([]bool, s.n), forgedViews: map[uint32]map[uint64]bool{}, lies: map[lieKey][]*Envelope{}}
	k := testKey(s.t, "rogue client", 0)
	var signer Signer = crypto.NewSigner(k, s.chain)
	if s.cheap {
		signer = cheapSigner{pub: k.Public()}
	}
	body := codec.MustMarshal(&Request{Client: k.Public(), Seq: 1, Command: []byte("rogue")})
	a.rogue = codec.MustMarshal(&SignedRequest{Body: body, Sig: signer.Sign(KindRequest.String(), body)})
	s.byzOut = a.out
	return a
}

// pickPeers marks each replica with probability p.
func (a *adversary) pickPeers(p float64) []bool {
	out := make([]bool, a.s.n)
	for i := range out {
		out[i] = a.rng.Float64() < p
	}
	return out
}

func (a *adversary) chance(p float64) bool { return p > 0 && a.rng.Float64() < p }

func (a *adversary) out(from *simNode, to uint32, env *Envelope) []*Envelope {
	if len(a.history) < 64 {
		a.history = append(a.history, env)
	} else {
		a.history[a.rng.IntN(len(a.history))] = env
	}
	out := a.rewrite(from, to, env)
	if a.chance(a.replay) {
		out = append(out, a.replayed(from, env)...)
	}
	for range a.floodPerSend {
		out = append(out, a.flood(from))
	}
	return out
}

// rewrite returns what replaces env on its way to replica to.
func (a *adversary) rewrite(from *simNode, to uint32, env *Envelope) []*Envelope {
	if a.silent && a.silentTo[to] {
		return nil
	}
	m, err := env.Open(a.s.n)
	if err != nil {
		return []*Envelope{env}
	}
	id := from.id
	if v, ok := viewOf(m); ok && a.forgedViews[id][v] && m.NewView == nil {
		return nil
	}
	switch {
	case m.PrePrepare != nil:
		key := lieKey{replica: id, view: m.PrePrepare.View, seq: m.PrePrepare.Seq, other: a.equivocate && a.otherSide[to]}
		if lie, ok := a.lies[key]; ok {
			if lie == nil {
				return []*Envelope{env}
			}
			return lie
		}
		lie := a.lieAbout(id, m.PrePrepare, env, key.other)
		a.lies[key] = lie
		if lie == nil {
			return []*Envelope{env}
		}
		return lie
	case m.Prepare != nil && a.chance(a.doubleVote):
		p := *m.Prepare
		p.Digest = a.digest()
		return a.maybeBoth(env, a.s.sealAs(id, KindPrepare, &p, nil))
	case m.Commit != nil && a.chance(a.doubleVote):
		c := *m.Commit
		c.Digest = a.digest()
		return a.maybeBoth(env, a.s.sealAs(id, KindCommit, &c, nil))
	case m.Checkpoint != nil && a.chance(a.doubleVote):
		c := *m.Checkpoint
		c.StateDigest = a.digest()
		return a.maybeBoth(env, a.s.sealAs(id, KindCheckpoint, &c, nil))
	case m.ViewChange != nil && a.chance(a.forgeVC):
		return []*Envelope{a.forgedViewChange(id, m.ViewChange)}
	case m.NewView != nil && (a.forgedViews[id][m.NewView.View] || a.chance(a.badNewView)):
		if a.forgedViews[id] == nil {
			a.forgedViews[id] = map[uint64]bool{}
		}
		a.forgedViews[id][m.NewView.View] = true
		return a.badNewViewOf(id, m.NewView)
	}
	return []*Envelope{env}
}

// lieAbout decides what replaces a PRE-PREPARE (nil: nothing): on the
// equivocating side another batch; otherwise, now and then, a mutation:
// seq ±1, view ±1, or a request changed or dropped; the truth may follow.
func (a *adversary) lieAbout(id uint32, orig *PrePrepare, env *Envelope, otherSide bool) []*Envelope {
	pp := *orig
	if otherSide {
		if batch, ok := a.otherBatch(env.Batch); ok {
			pp.Digest = BatchDigest(pp.Timestamp, batch)
			return []*Envelope{a.s.sealAs(id, KindPrePrepare, &pp, batch)}
		}
	}
	if !a.chance(a.mutatePP) {
		return nil
	}
	batch := env.Batch
	switch a.rng.IntN(4) {
	case 0:
		pp.Seq = pp.Seq + 1 - uint64(2*a.rng.IntN(2))
	case 1:
		pp.View = pp.View + 1 - uint64(2*a.rng.IntN(2))
	default:
		var ok bool
		if batch, ok = a.otherBatch(env.Batch); !ok {
			batch = env.Batch
		}
		pp.Digest = BatchDigest(pp.Timestamp, batch)
	}
	mutated := a.s.sealAs(id, KindPrePrepare, &pp, batch)
	if a.rng.IntN(2) == 0 {
		return []*Envelope{mutated, env}
	}
	return []*Envelope{mutated}
}

// maybeBoth sends the forged message alone, or both (an equivocation).
func (a *adversary) maybeBoth(real, forged *Envelope) []*Envelope {
	if a.rng.IntN(2) == 0 {
		return []*Envelope{forged, real}
	}
	return []*Envelope{forged}
}

func (a *adversary) digest() crypto.Digest {
	var b [8]byte
	for i := range b {
		b[i] = byte(a.rng.IntN(256))
	}
	return crypto.Hash([]byte("forged"), b[:])
}

// otherBatch returns a different batch: one request dropped, or a request
// from the pool (or, now and then, the rogue one) swapped in or added.
func (a *adversary) otherBatch(batch [][]byte) ([][]byte, bool) {
	if len(batch) > 1 && a.rng.IntN(2) == 0 {
		return append([][]byte(nil), batch[:len(batch)-1]...), true
	}
	if len(a.pool) == 0 {
		return nil, false
	}
	extra := a.pool[a.rng.IntN(len(a.pool))]
	if a.rng.IntN(8) == 0 {
		extra = a.rogue
	}
	for _, raw := range batch {
		if string(raw) == string(extra) {
			return nil, false
		}
	}
	out := append([][]byte(nil), batch...)
	if len(out) > 0 && a.rng.IntN(2) == 0 {
		out[a.rng.IntN(len(out))] = extra
	} else {
		out = append(out, extra)
	}
	return out, true
}

// forgedViewChange withholds certificates, forges one, or claims a stable
// checkpoint it has no proof of; it is signed with the replica's own key.
func (a *adversary) forgedViewChange(id uint32, vc *ViewChange) *Envelope {
	f := *vc
	f.Prepared = append([]PreparedCert(nil), vc.Prepared...)
	switch a.rng.IntN(4) {
	case 0:
		f.Prepared = nil
	case 1:
		if len(f.Prepared) > 0 {
			k := a.rng.IntN(len(f.Prepared))
			f.Prepared = append(f.Prepared[:k], f.Prepared[k+1:]...)
		}
	case 2:
		// A certificate for the next seq: a PRE-PREPARE and PREPAREs all in
		// other replicas' names but signed with this replica's key.
		seq := f.StableSeq + 1
		if len(f.Prepared) > 0 {
			last, _ := f.Prepared[len(f.Prepared)-1].PrePrepare.Open(a.s.n)
			seq = last.PrePrepare.Seq + 1
		}
		view := f.View - 1
		primary := uint32(view % uint64(a.s.n))
		d := a.digest()
		pc := PreparedCert{PrePrepare: *Seal(a.s.signer(id), KindPrePrepare, &PrePrepare{View: view, Seq: seq, Digest: d, Replica: primary})}
		for r := uint32(0); len(pc.Prepares) < 2*a.s.f && int(r) < a.s.n; r++ {
			if r != primary {
				pc.Prepares = append(pc.Prepares, *Seal(a.s.signer(id), KindPrepare, &Prepare{View: view, Seq: seq, Digest: d, Replica: r}))
			}
		}
		f.Prepared = append(f.Prepared, pc)
	default:
		f.StableSeq += a.s.cfgs[id].CheckpointInterval
		for i := range f.StableProof {
			c, err := f.StableProof[i].Open(a.s.n)
			if err != nil {
				continue
			}
			ck := *c.Checkpoint
			ck.Seq = f.StableSeq
			f.StableProof[i] = *Seal(a.s.signer(id), KindCheckpoint, &ck)
		}
	}
	return a.s.sealAs(id, KindViewChange, &f, nil)
}

// viewOf returns the view a message is about, if it has one.
func viewOf(m Message) (uint64, bool) {
	switch {
	case m.PrePrepare != nil:
		return m.PrePrepare.View, true
	case m.Prepare != nil:
		return m.Prepare.View, true
	case m.Commit != nil:
		return m.Commit.View, true
	case m.NewView != nil:
		return m.NewView.View, true
	}
	return 0, false
}

// badNewViewOf returns a NEW-VIEW that does not follow from its VIEW-CHANGEs,
// is for another view, or nothing at all. The dangerous forgeries replace a
// re-issued digest with a null batch, or with a batch of the forger's own
// that it then sends: a backup that accepted either would deliver it where
// the seq may have committed otherwise.
func (a *adversary) badNewViewOf(id uint32, nv *NewView) []*Envelope {
	f := *nv
	f.PrePrepares = append([]Envelope(nil), nv.PrePrepares...)
	var extra []*Envelope
	switch a.rng.IntN(5) {
	case 0:
		return nil
	case 1:
		f.View++
	case 2:
		if len(f.PrePrepares) > 0 {
			f.PrePrepares = f.PrePrepares[:len(f.PrePrepares)-1]
		} else {
			f.ViewChanges = f.ViewChanges[1:]
		}
	default:
		if len(f.PrePrepares) == 0 {
			return nil
		}
		// The adversary sees the world: it aims at the seqs some honest
		// replica delivered already, where a forgery would split the log.
		k := a.rng.IntN(len(f.PrePrepares))
		for i := range f.PrePrepares {
			if m, err := f.PrePrepares[i].Open(a.s.n); err == nil && m.PrePrepare.Seq <= uint64(len(a.s.log)) {
				k = i
				break
			}
		}
		m, err := f.PrePrepares[k].Open(a.s.n)
		if err != nil {
			return nil
		}
		pp := *m.PrePrepare
		switch {
		case pp.Digest != nullDigest && a.rng.IntN(2) == 0:
			pp.Digest, pp.Timestamp = nullDigest, nullTimestamp
		case len(a.pool) > 0:
			batch := [][]byte{a.pool[a.rng.IntN(len(a.pool))]}
			pp.Digest = BatchDigest(pp.Timestamp, batch)
			extra = append(extra, a.s.sealAs(id, KindPrePrepare, &pp, batch))
		default:
			pp.Digest = a.digest()
		}
		f.PrePrepares[k] = *Seal(a.s.signer(id), KindPrePrepare, &pp)
	}
	return append([]*Envelope{a.s.sealAs(id, KindNewView, &f, nil)}, extra...)
}

// replayed returns an old envelope again, one relabelled as another kind
// (same body and signature), or one re-signed over a non-canonical encoding.
func (a *adversary) replayed(from *simNode, env *Envelope) []*Envelope {
	switch a.rng.IntN(3) {
	case 0:
		return []*Envelope{a.history[a.rng.IntN(len(a.history))]}
	case 1:
		kinds := []Kind{KindPrePrepare, KindPrepare, KindCommit, KindCheckpoint, KindViewChange, KindNewView}
		r := *env
		r.Kind = kinds[a.rng.IntN(len(kinds))]
		if r.Kind != KindPrePrepare {
			r.Batch = nil
		}
		return []*Envelope{&r}
	default:
		m, err := env.Open(a.s.n)
		if err != nil || m.Prepare == nil {
			return nil
		}
		p := m.Prepare
		// Map keys out of order: valid CBOR, not the canonical encoding.
		body := []byte{0xa4}
		for _, kv := range [][2]any{{4, p.Replica}, {3, p.Digest}, {2, p.Seq}, {1, p.View}} {
			body = append(body, codec.MustMarshal(kv[0])...)
			body = append(body, codec.MustMarshal(kv[1])...)
		}
		return []*Envelope{{Kind: KindPrepare, Body: body, Sig: a.s.signer(from.id).Sign(KindPrepare.String(), body)}}
	}
}

// flood returns one valid-looking message signed by the replica (votes for
// any seq and view, checkpoints far ahead, view changes for far views) or a
// malformed one.
func (a *adversary) flood(from *simNode) *Envelope {
	id := from.id
	view := uint64(0)
	if from.up {
		view = from.r.Status().View
	}
	view += uint64(a.rng.IntN(4))
	seq := a.rng.Uint64N(64)
	if a.rng.IntN(4) == 0 {
		seq = a.rng.Uint64()
	}
	K := a.s.cfgs[id].CheckpointInterval
	switch a.rng.IntN(6) {
	case 0:
		return a.s.sealAs(id, KindPrepare, &Prepare{View: view, Seq: seq, Digest: a.digest(), Replica: id}, nil)
	case 1:
		return a.s.sealAs(id, KindCommit, &Commit{View: view, Seq: seq, Digest: a.digest(), Replica: id}, nil)
	case 2:
		return a.s.sealAs(id, KindCheckpoint, &Checkpoint{Seq: (seq/K + 1) * K, StateDigest: a.digest(), Replica: id}, nil)
	case 3:
		return a.s.sealAs(id, KindViewChange, &ViewChange{View: view + 1 + a.rng.Uint64N(1000), Replica: id}, nil)
	case 4:
		return a.s.sealAs(id, KindPrePrepare, &PrePrepare{View: view, Seq: seq, Digest: a.digest(), Replica: id}, nil)
	default:
		junk := make([]byte, a.rng.IntN(64))
		for i := range junk {
			junk[i] = byte(a.rng.IntN(256))
		}
		// Well-formed CBOR (the envelope must encode) that is no body.
		body := codec.MustMarshal(junk)
		return &Envelope{Kind: Kind(a.rng.IntN(10)), Body: body, Sig: a.s.signer(id).Sign("junk", body)}
	}
}
