package pbft

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// The primary is down: the backups time out on a pending request, move to
// view 1 and its primary re-proposes the request there.
func TestViewChangeOnSilentPrimary(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			s := newSim(t, simOptions{n: n, seed: 100})
			s.tick(time.Millisecond)
			for i := range 3 {
				s.submit(s.request([]byte(fmt.Sprintf("before %d", i))))
			}
			s.runUntil(time.Second, "first requests everywhere", s.allApplied(3))
			s.crash(0)
			s.submit(s.request([]byte("after")))
			timeout := s.cfgs[1].ViewChangeTimeout
			s.runUntil(4*timeout, "request applied in view 1", s.allApplied(4))
			for _, node := range s.nodes[1:] {
				st := node.r.Status()
				if st.View != 1 || !st.ViewActive || st.Primary != 1 {
					t.Fatalf("replica %d: %+v", node.id, st)
				}
			}
			if took := s.now.Sub(simEpoch); took < timeout {
				t.Fatalf("view changed after %v, before the timeout", took)
			}
		})
	}
}

// openOf opens an envelope the test built or caught.
func (s *sim) openOf(env *Envelope) Message {
	m, err := env.Open(s.n)
	if err != nil {
		s.failf("open: %v", err)
	}
	return m
}

// A digest that prepared survives the view change with its batch; a seq
// below it that prepared nowhere becomes a null batch, delivered as an entry
// with no requests; its request is proposed again by the new primary.
func TestViewChangeKeepsPreparedAndFillsGaps(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 300, cfg: func(c *Config) { c.BatchRequestsMax = 1 }})
	s.tick(time.Millisecond)
	s.drop = func(from, to uint32, env *Envelope) bool {
		m := s.openOf(env)
		switch {
		case m.Commit != nil:
			return m.Commit.View == 0
		case m.Prepare != nil:
			return m.Prepare.View == 0 && m.Prepare.Seq == 1
		}
		return false
	}
	a, b := s.request([]byte("a")), s.request([]byte("b"))
	s.submit(a)
	s.submit(b)
	s.runUntil(time.Second, "seq 2 prepared at the backups", func() bool {
		for _, node := range s.nodes[1:] {
			if node.r.prepared[2] == nil {
				return false
			}
		}
		return true
	})
	// The drop stays: view 0 never commits, however often it retransmits.
	s.crash(0)
	s.runUntil(4*s.cfgs[1].ViewChangeTimeout, "both requests applied in view 1", s.allApplied(2))
	if len(s.log) != 3 || len(s.log[0].Batch) != 0 || s.log[0].View != 1 || s.log[0].Digest != nullDigest {
		t.Fatalf("seq 1: %d batches, first %+v", len(s.log), s.log[0])
	}
	if len(s.log[1].Batch) != 1 || string(s.log[1].Batch[0]) != string(b) || s.log[1].Cert.Timestamp == nullTimestamp {
		t.Fatal("seq 2 is not the prepared batch with its original timestamp")
	}
	if len(s.log[2].Batch) != 1 || string(s.log[2].Batch[0]) != string(a) {
		t.Fatal("the request of the lost seq was not proposed again")
	}
	for _, node := range s.nodes[1:] {
		if st := node.r.Status(); st.View != 1 || !st.ViewActive || st.Delivered != 3 {
			t.Fatalf("replica %d: %+v", node.id, st)
		}
	}
}

// The new primary's NEW-VIEW is recomputed by every backup: one whose
// re-issued set is wrong is refused, and proof enough to move on. Seq 1
// committed (and was delivered) at replica 6 only: a backup that took a null
// or another batch for it would split the log.
func TestNewViewRecomputed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s *sim, nv *NewView)
	}{
		{"changed digest", func(s *sim, nv *NewView) {
			pp := *s.openOf(&nv.PrePrepares[0]).PrePrepare
			pp.Digest = crypto.Hash([]byte("another batch"))
			nv.PrePrepares[0] = *s.sealAs(1, KindPrePrepare, &pp, nil)
		}},
		{"dropped entry", func(s *sim, nv *NewView) { nv.PrePrepares = nv.PrePrepares[1:] }},
		{"null for a prepared seq", func(s *sim, nv *NewView) {
			pp := *s.openOf(&nv.PrePrepares[0]).PrePrepare
			pp.Digest, pp.Timestamp = nullDigest, nullTimestamp
			nv.PrePrepares[0] = *s.sealAs(1, KindPrePrepare, &pp, nil)
		}},
		{"a view-change short", func(s *sim, nv *NewView) { nv.ViewChanges = nv.ViewChanges[1:] }},
		{"a view-change twice", func(s *sim, nv *NewView) { nv.ViewChanges[1] = nv.ViewChanges[0] }},
		{"pre-prepare signed by another", func(s *sim, nv *NewView) {
			nv.PrePrepares[0].Sig = s.sealAs(2, KindPrePrepare, s.openOf(&nv.PrePrepares[0]).PrePrepare, nil).Sig
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, simOptions{n: 7, seed: 301, cfg: func(c *Config) { c.BatchRequestsMax = 1 }})
			s.tick(time.Millisecond)
			s.drop = func(from, to uint32, env *Envelope) bool {
				return env.Kind == KindCommit && s.openOf(env).Commit.View == 0 && to != 6
			}
			raw := s.request([]byte("prepared"))
			s.submit(raw)
			s.runUntil(time.Second, "delivered at replica 6", func() bool { return s.nodes[6].delivered == 1 })
			s.crash(0)
			s.nodes[1].byz = true
			bad := 0
			s.byzOut = func(from *simNode, to uint32, env *Envelope) []*Envelope {
				if v, ok := viewOf(s.openOf(env)); ok && v == 1 && env.Kind != KindNewView {
					// Quiet in its view, so that only the recomputation can
					// catch the forgery (its core's true PRE-PREPAREs would
					// show it as an equivocation).
					return nil
				}
				if env.Kind != KindNewView {
					return []*Envelope{env}
				}
				nv := *s.openOf(env).NewView
				nv.ViewChanges = append([]Envelope(nil), nv.ViewChanges...)
				nv.PrePrepares = append([]Envelope(nil), nv.PrePrepares...)
				tc.mutate(s, &nv)
				bad++
				return []*Envelope{s.sealAs(1, KindNewView, &nv, nil)}
			}
			s.runUntil(10*s.cfgs[2].ViewChangeTimeout, "the request applied in view 2", func() bool {
				return s.allApplied(1)() && s.nodes[2].r.Status().View == 2
			})
			if bad == 0 {
				t.Fatal("no NEW-VIEW was mutated")
			}
			for _, i := range []uint32{2, 3, 4, 5, 6} {
				st := s.nodes[i].r.Status()
				if st.View != 2 || !st.ViewActive || st.Dropped == 0 {
					t.Fatalf("replica %d: %+v", i, st)
				}
			}
			if len(s.log) != 1 || string(s.log[0].Batch[0]) != string(raw) {
				t.Fatalf("log %+v: the prepared batch did not survive", s.log)
			}
		})
	}
}

// certWorld builds a VIEW-CHANGE for view 1 from replica 3 carrying a real
// prepared certificate for seq 1 of view 0, and the replica that checks it.
func certWorld(t *testing.T) (*sim, *Replica, ViewChange) {
	s := newSim(t, simOptions{n: 4, seed: 302})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	s.tickOne(2, time.Millisecond)
	acts, _ := s.nodes[0].r.Submit(s.request([]byte("x")))
	s.apply(0, acts)
	pp := sent(acts, KindPrePrepare)[0]
	d := s.openOf(pp).PrePrepare.Digest
	cert := PreparedCert{PrePrepare: withoutBatch(pp)}
	for _, from := range []uint32{1, 2} {
		cert.Prepares = append(cert.Prepares, *s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: from}, nil))
	}
	return s, s.nodes[2].r, ViewChange{View: 1, Prepared: []PreparedCert{cert}, Replica: 3}
}

// A VIEW-CHANGE is checked to the last nested signature: forged, short,
// mislabelled or misplaced certificates and unproven checkpoints are refused.
func TestViewChangeRefusesForgedCertificates(t *testing.T) {
	s, r, good := certWorld(t)
	if _, certs, err := r.verifyViewChange(&good); err != nil || len(certs) != 1 || certs[0].seq != 1 {
		t.Fatalf("the good view-change: %v", err)
	}
	withCert := func(f func(pc *PreparedCert)) func(vc *ViewChange) {
		return func(vc *ViewChange) {
			pc := vc.Prepared[0]
			pc.Prepares = append([]Envelope(nil), pc.Prepares...)
			f(&pc)
			vc.Prepared = []PreparedCert{pc}
		}
	}
	d := s.openOf(&good.Prepared[0].PrePrepare).PrePrepare.Digest
	cases := map[string]func(vc *ViewChange){
		"a prepare signed by another": withCert(func(pc *PreparedCert) { pc.Prepares[1].Sig = pc.Prepares[0].Sig }),
		"a prepare relabelled": withCert(func(pc *PreparedCert) {
			pc.Prepares[1] = *s.sealAs(2, KindCommit, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 2}, nil)
			pc.Prepares[1].Kind = KindPrepare
		}),
		"one prepare":     withCert(func(pc *PreparedCert) { pc.Prepares = pc.Prepares[:1] }),
		"a prepare twice": withCert(func(pc *PreparedCert) { pc.Prepares[1] = pc.Prepares[0] }),
		"the primary's prepare": withCert(func(pc *PreparedCert) {
			pc.Prepares[1] = *s.sealAs(0, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 0}, nil)
		}),
		"a prepare for another digest": withCert(func(pc *PreparedCert) {
			pc.Prepares[1] = *s.sealAs(2, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: crypto.Hash([]byte("y")), Replica: 2}, nil)
		}),
		"a pre-prepare by a backup": withCert(func(pc *PreparedCert) {
			pc.PrePrepare = *s.sealAs(3, KindPrePrepare, &PrePrepare{View: 0, Seq: 1, Digest: d, Replica: 3}, nil)
		}),
		"a pre-prepare with its batch":     withCert(func(pc *PreparedCert) { pc.PrePrepare.Batch = [][]byte{s.request([]byte("x"))} }),
		"a certificate of the view itself": func(vc *ViewChange) { vc.View = 0 },
		"two certificates for one seq":     func(vc *ViewChange) { vc.Prepared = append(vc.Prepared, vc.Prepared[0]) },
		"a certificate beyond the window": func(vc *ViewChange) {
			vc.StableSeq = 0
			far := s.cfgs[2].WindowSeqs + 1
			pp := s.sealAs(0, KindPrePrepare, &PrePrepare{View: 0, Seq: far, Digest: d, Replica: 0}, nil)
			pc := PreparedCert{PrePrepare: *pp}
			for _, from := range []uint32{1, 2} {
				pc.Prepares = append(pc.Prepares, *s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: far, Digest: d, Replica: from}, nil))
			}
			vc.Prepared = []PreparedCert{pc}
		},
		"a stable checkpoint without proof": func(vc *ViewChange) { vc.StableSeq = s.cfgs[2].CheckpointInterval },
		"a checkpoint off the interval":     func(vc *ViewChange) { vc.StableSeq = 1 },
		"a proof for checkpoint 0": func(vc *ViewChange) {
			vc.StableProof = []Envelope{*s.sealAs(3, KindCheckpoint, &Checkpoint{Seq: 4, Replica: 3}, nil)}
		},
	}
	for name, mutate := range cases {
		vc := good
		mutate(&vc)
		if _, _, err := r.verifyViewChange(&vc); err == nil {
			t.Errorf("%s: accepted", name)
		}
		// Through Step: refused, not stored, no evidence.
		dropped := r.Status().Dropped
		s.stepNow(2, s.sealAs(3, KindViewChange, &vc, nil))
		if r.viewChanges[3] != nil || r.Status().Dropped != dropped+1 {
			t.Errorf("%s: stored, or not counted as dropped", name)
		}
	}
	s.stepNow(2, s.sealAs(3, KindViewChange, &good, nil))
	if r.viewChanges[3] == nil {
		t.Fatal("the good view-change was not stored")
	}
}

// f+1 replicas in later views make a replica join the highest view f+1 of
// them reached; f alone do not.
func TestLivenessRuleJoinsLaterView(t *testing.T) {
	s := newSim(t, simOptions{n: 7, seed: 303})
	s.isolateAll()
	s.tickOne(6, time.Millisecond)
	r := s.nodes[6].r
	vc := func(from uint32, view uint64) *Envelope {
		return s.sealAs(from, KindViewChange, &ViewChange{View: view, Replica: from}, nil)
	}
	s.stepNow(6, vc(1, 9))
	s.stepNow(6, vc(2, 3))
	if r.Status().View != 0 {
		t.Fatal("joined a later view on f replicas")
	}
	acts := s.stepNow(6, vc(3, 5))
	got := sent(acts, KindViewChange)
	if len(got) != 1 || s.openOf(got[0]).ViewChange.View != 3 {
		t.Fatalf("f+1 replicas in views 9, 3, 5: %v, want a view-change to 3", acts)
	}
	if st := r.Status(); st.View != 3 || st.ViewActive {
		t.Fatalf("status %+v", st)
	}
	// Normal-case messages of a later view count too.
	acts = s.stepNow(6, s.sealAs(4, KindPrepare, &Prepare{View: 7, Seq: 1, Replica: 4}, nil))
	if got := sent(acts, KindViewChange); len(got) != 1 || s.openOf(got[0]).ViewChange.View != 5 {
		t.Fatalf("replicas in 9, 5 and 7: %v, want a view-change to 5", acts)
	}
}

// The NEW-VIEW timeout starts once 2f+1 replicas moved, and doubles with
// every view change that delivers nothing; one replica alone never moves on.
func TestViewChangeTimeoutDoubles(t *testing.T) {
	s := newSim(t, simOptions{n: 7, seed: 304})
	s.tick(time.Millisecond)
	T := s.cfgs[2].ViewChangeTimeout
	// Replicas 0 and 1 (f = 2), the primaries of views 0 and 1, are silent.
	s.crash(0)
	s.nodes[1].byz = true
	s.byzOut = func(*simNode, uint32, *Envelope) []*Envelope { return nil }
	var entered []time.Duration
	s.submit(s.request([]byte("x")))
	start := s.now
	s.runUntil(20*T, "view 2 active at replica 2", func() bool {
		st := s.nodes[2].r.Status()
		if int(st.View) > len(entered) {
			entered = append(entered, s.now.Sub(start))
		}
		return st.View == 2 && st.ViewActive
	})
	s.runUntil(T, "applied in view 2", s.allApplied(1))
	if len(entered) != 2 {
		t.Fatalf("views entered at %v", entered)
	}
	if entered[0] < T || entered[0] > T+10*time.Millisecond {
		t.Fatalf("left view 0 after %v, want the timeout %v", entered[0], T)
	}
	if gap := entered[1] - entered[0]; gap < 2*T || gap > 2*T+20*time.Millisecond {
		t.Fatalf("left view 1 after %v, want twice the timeout (%v)", gap, 2*T)
	}
	// A replica alone in a view never moves on.
	s2 := newSim(t, simOptions{n: 4, seed: 305})
	s2.tick(time.Millisecond)
	s2.isolate(3, true)
	s2.submit(s2.request([]byte("y")), 3)
	s2.tick(20 * T)
	if st := s2.nodes[3].r.Status(); st.View != 1 || st.ViewChanges != 1 {
		t.Fatalf("an isolated replica: %+v", st)
	}
}

// A replica that restarts while changing view sends the VIEW-CHANGE it
// signed before, not a new one, and still carries its prepared certificate.
func TestRestartDuringViewChange(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 306})
	s.tick(time.Millisecond)
	s.drop = func(from, to uint32, env *Envelope) bool { return env.Kind == KindCommit }
	s.submit(s.request([]byte("x")))
	s.runUntil(time.Second, "prepared at 2", func() bool { return s.nodes[2].r.prepared[1] != nil })
	s.drop = nil
	s.crash(0)
	s.isolate(2, true)
	s.runUntil(4*s.cfgs[2].ViewChangeTimeout, "replica 2 changing to view 1", func() bool { return s.nodes[2].r.Status().View == 1 })
	first := s.nodes[2].r.ownViewChange
	s.crash(2)
	s.restart(2)
	r := s.nodes[2].r
	if st := r.Status(); st.View != 1 || st.ViewActive || r.ownViewChange == nil || !sameEnvelope(r.ownViewChange, first) {
		t.Fatalf("after restart: %+v", st)
	}
	if c := r.prepared[1]; c == nil || !c.hasBatch {
		t.Fatal("the prepared certificate (and its batch) did not survive the restart")
	}
	s.isolate(2, false)
	s.runUntil(4*s.cfgs[2].ViewChangeTimeout, "view 1 active everywhere", func() bool {
		for _, node := range s.nodes[1:] {
			if st := node.r.Status(); st.View != 1 || !st.ViewActive {
				return false
			}
		}
		return s.allApplied(1)()
	})
}

// SmartBFT's bug: state transfer racing a view change delivered a decision
// twice. A replica far behind gets the NEW-VIEW (and Fetches, being below its
// min-s) while the re-issued seqs commit; whichever comes first, every seq is
// applied once (the world checks it on every Deliver) and none is skipped.
func TestStateTransferRacesViewChange(t *testing.T) {
	var both bool
	for _, delay := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			s := newSim(t, simOptions{n: 4, seed: 307, cfg: func(c *Config) { c.BatchRequestsMax = 1 }})
			s.fetchDelay = delay
			s.tick(time.Millisecond)
			s.isolate(3, true)
			for i := range 7 {
				s.submit(s.request([]byte(fmt.Sprintf("r%d", i))), 0, 1, 2)
				s.tick(2 * time.Millisecond)
			}
			// Seqs 1..6 committed; 7 prepared but its COMMITs lost.
			s.drop = func(from, to uint32, env *Envelope) bool {
				return env.Kind == KindCommit && s.openOf(env).Commit.Seq == 7
			}
			s.runUntil(time.Second, "6 applied at 0, 1, 2", func() bool {
				for _, node := range s.nodes[:3] {
					if node.delivered < 6 || node.r.prepared[7] == nil {
						return false
					}
				}
				return true
			})
			s.drop = nil
			s.crash(0)
			s.isolate(3, false)
			s.submit(s.request([]byte("last")), 1, 2, 3)
			var fetchedAfterNewView bool
			node := s.nodes[3]
			s.runUntil(3*time.Second, "every request applied at 1, 2, 3", func() bool {
				if st := node.r.Status(); st.View == 1 && st.ViewActive && node.fetches > 0 {
					fetchedAfterNewView = true
				}
				return s.allApplied(8)()
			})
			if node.delivered != uint64(len(s.log)) || len(s.log) < 8 {
				t.Fatalf("replica 3 applied %d of %d", node.delivered, len(s.log))
			}
			if !fetchedAfterNewView || node.caughtUp == 0 {
				t.Fatalf("replica 3 never fetched after the NEW-VIEW (%d fetched entries)", node.caughtUp)
			}
			if node.caughtUp < len(s.log) {
				both = true // some seqs by state transfer, some by the new view
			}
		})
	}
	if !both {
		t.Fatal("no delay had replica 3 deliver by both state transfer and the new view")
	}
}

// A primary that keeps other requests moving but never proposes one is
// deposed after CensorshipTimeoutFactor timeouts; the new primary proposes it.
func TestCensoredRequestForcesViewChange(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 308, cfg: func(c *Config) { c.BatchRequestsMax = 1 }})
	s.tick(time.Millisecond)
	T := s.cfgs[1].ViewChangeTimeout
	censored := s.request([]byte("censored"))
	s.nodes[0].byz = true
	s.byzOut = func(from *simNode, to uint32, env *Envelope) []*Envelope {
		if env.Kind == KindPrePrepare && len(env.Batch) == 1 && string(env.Batch[0]) == string(censored) {
			// In its place, a request it holds back from the queue.
			pp := *s.openOf(env).PrePrepare
			batch := [][]byte{s.signedRequest(1, pp.Seq, []byte("filler"))}
			pp.Digest = BatchDigest(pp.Timestamp, batch)
			return []*Envelope{s.sealAs(0, KindPrePrepare, &pp, batch)}
		}
		return []*Envelope{env}
	}
	s.submit(censored)
	start := s.now
	for i := 0; !s.nodes[1].executed[requestID(censored)]; i++ {
		if s.now.Sub(start) > 10*T {
			t.Fatal("the censored request was never applied")
		}
		s.submit(s.request([]byte(fmt.Sprintf("other %d", i))))
		s.tick(T / 8)
	}
	took := s.now.Sub(start)
	if st := s.nodes[1].r.Status(); st.View == 0 {
		t.Fatal("applied without a view change")
	}
	if took < CensorshipTimeoutFactor*T {
		t.Fatalf("view changed after %v, before %d timeouts", took, CensorshipTimeoutFactor)
	}
}

// Evidence is bounded: the latest EvidenceMax pairs, oldest first.
func TestEvidenceBounded(t *testing.T) {
	s, r := scriptedBackup(t, 309, nil)
	L := s.cfgs[1].WindowSeqs
	total := 0
	for seq := uint64(1); seq <= L; seq++ {
		for _, from := range []uint32{2, 3} {
			for k := range 4 {
				d := crypto.Hash([]byte{byte(seq), byte(from), byte(k)})
				s.stepNow(1, s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: seq, Digest: d, Replica: from}, nil))
				if k > 0 {
					total++
				}
			}
		}
	}
	st := r.Status()
	if total <= EvidenceMax || st.Equivocations != uint64(total) || len(st.Evidence) != EvidenceMax {
		t.Fatalf("%d equivocations: counted %d, kept %d", total, st.Equivocations, len(st.Evidence))
	}
	last := st.Evidence[EvidenceMax-1]
	if last.Seq != L || last.Replica != 3 || !s.evidenceHolds(last) {
		t.Fatalf("the newest evidence is %+v", last)
	}
	// Three conflicts per replica and seq, replica 2 first: the oldest kept
	// is the (total-EvidenceMax)th.
	idx := total - EvidenceMax
	wantSeq, wantFrom := uint64(idx/6+1), uint32(2)
	if idx%6 >= 3 {
		wantFrom = 3
	}
	if first := st.Evidence[0]; first.Seq != wantSeq || first.Replica != wantFrom {
		t.Fatalf("the oldest kept evidence is seq %d of replica %d, want seq %d of %d", first.Seq, first.Replica, wantSeq, wantFrom)
	}
}

// The NEW-VIEW computation: min-s is the highest stable checkpoint among the
// VIEW-CHANGEs; each seq above it gets the digest prepared in the highest
// view, with its timestamp; gaps up to the highest prepared seq are null.
func TestComputeReissue(t *testing.T) {
	d := func(tag string) crypto.Digest { return crypto.Hash([]byte(tag)) }
	vc := func(stable uint64, certs ...certInfo) *viewChangeInfo {
		return &viewChangeInfo{vc: &ViewChange{StableSeq: stable}, stableDigest: d(fmt.Sprint("state ", stable)), certs: certs}
	}
	re := computeReissue([]*viewChangeInfo{
		vc(4, certInfo{view: 0, seq: 5, digest: d("a"), timestamp: 50}, certInfo{view: 3, seq: 9, digest: d("old"), timestamp: 90}),
		vc(8, certInfo{view: 2, seq: 9, digest: d("new"), timestamp: 91}, certInfo{view: 1, seq: 12, digest: d("c"), timestamp: 120}),
		vc(0, certInfo{view: 5, seq: 9, digest: d("newest"), timestamp: 92}, certInfo{view: 0, seq: 3, digest: d("stale"), timestamp: 30}),
	})
	if re.minSeq != 8 || re.stableDigest != d("state 8") {
		t.Fatalf("min-s %d, want 8 from the highest stable checkpoint", re.minSeq)
	}
	want := []reissueEntry{
		{seq: 9, digest: d("newest"), timestamp: 92},
		{seq: 10, digest: nullDigest, timestamp: nullTimestamp},
		{seq: 11, digest: nullDigest, timestamp: nullTimestamp},
		{seq: 12, digest: d("c"), timestamp: 120},
	}
	if fmt.Sprint(re.entries) != fmt.Sprint(want) {
		t.Fatalf("entries %v, want %v", re.entries, want)
	}
	// Nothing prepared above min-s: nothing to re-issue.
	if re := computeReissue([]*viewChangeInfo{vc(8), vc(4, certInfo{view: 0, seq: 6, digest: d("x")})}); re.minSeq != 8 || len(re.entries) != 0 {
		t.Fatalf("%+v", re)
	}
	// Two certificates of one view for different digests (only with more
	// than f faulty): the smaller digest, whatever the order.
	x, y := d("x"), d("y")
	lo, hi := x, y
	if bytes.Compare(x[:], y[:]) > 0 {
		lo, hi = y, x
	}
	for _, order := range [][]crypto.Digest{{lo, hi}, {hi, lo}} {
		re := computeReissue([]*viewChangeInfo{vc(0, certInfo{view: 1, seq: 1, digest: order[0]}), vc(0, certInfo{view: 1, seq: 1, digest: order[1]})})
		if re.entries[0].digest != lo {
			t.Fatal("a tie between digests of one view is not broken the same way in every order")
		}
	}
}

// The NEW-VIEW timeout starts when 2f+1 replicas are known to have left the
// view, whether for this view or a later one (found by the simulator: with
// the quorum completed by later VIEW-CHANGEs, replicas waited forever).
func TestArmedByLaterViewChanges(t *testing.T) {
	s := newSim(t, simOptions{n: 7, seed: 310})
	s.isolateAll()
	s.tickOne(6, time.Millisecond)
	T := s.cfgs[6].ViewChangeTimeout
	acts, _ := s.nodes[6].r.Submit(s.request([]byte("x")))
	s.apply(6, acts)
	s.tickOne(6, T)
	r := s.nodes[6].r
	if st := r.Status(); st.View != 1 || st.ViewActive {
		t.Fatalf("after the request timeout: %+v", st)
	}
	vc := func(from uint32, view uint64) *Envelope {
		return s.sealAs(from, KindViewChange, &ViewChange{View: view, Replica: from}, nil)
	}
	s.stepNow(6, vc(3, 1))
	s.stepNow(6, vc(4, 1))
	s.stepNow(6, vc(1, 2))
	if r.armed {
		t.Fatal("armed with 4 of 7")
	}
	s.stepNow(6, vc(2, 2))
	if !r.armed || r.Status().View != 1 {
		t.Fatalf("2f+1 replicas left view 0 (two for view 2): armed %v, view %d", r.armed, r.Status().View)
	}
	s.tickOne(6, 2*T-time.Millisecond)
	if r.Status().View != 1 {
		t.Fatal("moved on before the doubled timeout")
	}
	s.tickOne(6, time.Millisecond)
	if st := r.Status(); st.View != 2 || s.openOf(r.ownViewChange).ViewChange.View != 2 {
		t.Fatalf("no move to view 2 after the doubled timeout: %+v", st)
	}
}
