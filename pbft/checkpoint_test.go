package pbft

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Checkpoints become stable every K seqs on every replica, with a proof that
// verifies; the window follows h, so more than L batches commit; and what
// the replicas keep, in memory and on disk, stays bounded.
func TestCheckpointsBecomeStable(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 200, cfg: func(c *Config) {
		c.WindowSeqs, c.CheckpointInterval, c.BatchRequestsMax = 8, 4, 1
	}})
	s.tick(time.Millisecond)
	const total = 30
	for i := range total {
		s.submit(s.request([]byte(fmt.Sprintf("c%d", i))))
		s.tick(time.Millisecond)
	}
	s.runUntil(2*time.Second, "every request applied", s.allApplied(total))
	s.tick(100 * time.Millisecond)
	if len(s.log) != total {
		t.Fatalf("%d batches, want %d (one request each)", len(s.log), total)
	}
	for _, node := range s.nodes {
		r := node.r
		seq, digest, proof := r.StableCheckpoint()
		if seq != 28 || r.Status().StableCheckpoint != 28 {
			t.Fatalf("replica %d: stable checkpoint %d, want 28", node.id, seq)
		}
		got, gotDigest, err := VerifyCheckpointProof(proof, s.pubs, s.verifier())
		if err != nil || got != seq || gotDigest != digest || digest != s.chainAt[seq-1] {
			t.Fatalf("replica %d: proof for %d, %v: %v", node.id, got, gotDigest, err)
		}
		if len(r.slots) > 8 || len(r.ckpts) > 2 || len(r.prepared) > 8 || len(r.batches) > 8 {
			t.Fatalf("replica %d keeps %d slots, %d checkpoint seqs, %d certificates, %d batch seqs", node.id, len(r.slots), len(r.ckpts), len(r.prepared), len(r.batches))
		}
		for _, e := range node.st.Log {
			if Prunable(&e, s.n, node.delivered, seq, node.st.View) {
				t.Fatalf("replica %d still persists a prunable %v", node.id, e.Kind)
			}
		}
		if len(node.st.Log) > 4*8+8 {
			t.Fatalf("replica %d persists %d envelopes", node.id, len(node.st.Log))
		}
	}
}

// A replica that never hears of a stable checkpoint cannot vote beyond
// h + L: the window is bounded by the stable checkpoint, not by delivery.
func TestWindowFollowsStableCheckpoint(t *testing.T) {
	s, r := scriptedBackup(t, 201, func(c *Config) { c.WindowSeqs, c.CheckpointInterval = 8, 4 })
	batch := func(i int) [][]byte { return [][]byte{s.request([]byte(fmt.Sprintf("w%d", i)))} }
	ts := s.now.UnixNano()
	for seq := uint64(1); seq <= 9; seq++ {
		b := batch(int(seq))
		acts := s.stepNow(1, s.prePrepare(0, 0, seq, ts+int64(seq), b))
		want := 1
		if seq > 8 {
			want = 0
		}
		if got := len(sent(acts, KindPrepare)); got != want {
			t.Fatalf("seq %d: %d prepares, want %d", seq, got, want)
		}
	}
	// 2f+1 checkpoints for 4 move h to 4: seq 9 is in the window now, and
	// everything at or below 4 is gone.
	state := crypto.Hash([]byte("state at 4"))
	for _, from := range []uint32{0, 2, 3} {
		s.stepNow(1, s.sealAs(from, KindCheckpoint, &Checkpoint{Seq: 4, StateDigest: state, Replica: from}, nil))
	}
	if st := r.Status(); st.StableCheckpoint != 4 {
		t.Fatalf("stable %d, want 4", st.StableCheckpoint)
	}
	for k := range r.slots {
		if k.seq <= 4 {
			t.Fatalf("slot for seq %d kept below h", k.seq)
		}
	}
	if acts := s.stepNow(1, s.prePrepare(0, 0, 9, ts+9, batch(9))); len(sent(acts, KindPrepare)) != 1 {
		t.Fatal("seq 9 not accepted once h moved to 4")
	}
	if acts := s.stepNow(1, s.prePrepare(0, 0, 4, ts+4, batch(4))); len(sent(acts, KindPrepare)) != 0 {
		t.Fatal("seq 4 accepted at h")
	}
}

// CHECKPOINTs count distinct replicas agreeing on a digest; a replica that
// states two digests for one seq is evidence; one below h is answered with
// this replica's own CHECKPOINT for h.
func TestCheckpointVotes(t *testing.T) {
	s, r := scriptedBackup(t, 202, nil)
	K := s.cfgs[1].CheckpointInterval
	a, b := crypto.Hash([]byte("a")), crypto.Hash([]byte("b"))
	ck := func(from uint32, seq uint64, d crypto.Digest) *Envelope {
		return s.sealAs(from, KindCheckpoint, &Checkpoint{Seq: seq, StateDigest: d, Replica: from}, nil)
	}
	s.stepNow(1, ck(2, K, a))
	s.stepNow(1, ck(2, K, a))
	s.stepNow(1, ck(3, K, b))
	if r.Status().StableCheckpoint != 0 {
		t.Fatal("stable from one replica's replays and a mismatching one")
	}
	s.stepNow(1, ck(2, K, b))
	st := r.Status()
	if st.Equivocations != 1 || len(st.Evidence) != 1 || st.Evidence[0].Kind != KindCheckpoint || !s.evidenceHolds(st.Evidence[0]) {
		t.Fatalf("two checkpoint digests of replica 2: %+v", st)
	}
	// Not a multiple of K: refused.
	dropped := st.Dropped
	s.stepNow(1, ck(0, K+1, a))
	if r.Status().Dropped != dropped+1 {
		t.Fatal("a checkpoint off the interval was not refused")
	}
	// Own execution at K with digest a, and replica 0: a quorum.
	s.apply(1, r.Executed(K, a))
	acts := s.stepNow(1, ck(0, K, a))
	if r.Status().StableCheckpoint != K {
		t.Fatal("2f+1 matching checkpoints did not make K stable")
	}
	p, ok := acts[0].(Persist)
	if !ok || len(p.Envelopes) != 3 {
		t.Fatalf("the proof was not persisted: %v", acts)
	}
	// Replica 3 stated b at K: it is below h here, and gets replica 1's own.
	acts = s.stepNow(1, ck(3, K, b))
	if got := sent(acts, KindCheckpoint); len(got) != 1 {
		t.Fatalf("a replica below h was not answered: %v", acts)
	}
	if got := sent(s.stepNow(1, ck(3, K, b)), KindCheckpoint); len(got) != 0 {
		t.Fatal("answered twice within retransmit_interval")
	}
}

// A replica whose window is far behind adopts a stable checkpoint that 2f+1
// replicas prove beyond it, and fetches the state up to it.
func TestCheckpointBeyondWindowAdopted(t *testing.T) {
	s, r := scriptedBackup(t, 203, nil)
	L := s.cfgs[1].WindowSeqs
	far := 3 * L
	d := crypto.Hash([]byte("far"))
	var got []Fetch
	for _, from := range []uint32{0, 2, 3} {
		got = append(got, fetches(s.stepNow(1, s.sealAs(from, KindCheckpoint, &Checkpoint{Seq: far, StateDigest: d, Replica: from}, nil)))...)
	}
	if st := r.Status(); st.StableCheckpoint != far {
		t.Fatalf("stable %d, want %d", st.StableCheckpoint, far)
	}
	if len(got) == 0 || got[0].AfterSeq != 0 {
		t.Fatalf("fetches %v, want one after seq 0", got)
	}
	// It applies far beyond by state transfer: a CHECKPOINT for each
	// multiple of K, but it keeps only a bounded few of its own.
	K := s.cfgs[1].CheckpointInterval
	for seq := uint64(1); seq <= 10*L; seq++ {
		s.apply(1, r.Executed(seq, crypto.Hash([]byte{byte(seq)})))
	}
	if len(r.ownCkpts) > int(L/K)+2 {
		t.Fatalf("keeps %d own checkpoints, window %d / %d", len(r.ownCkpts), L, K)
	}
}

// A stable checkpoint survives a restart: the proof was persisted.
func TestCheckpointSurvivesRestart(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 204, cfg: func(c *Config) { c.BatchRequestsMax = 1 }})
	s.tick(time.Millisecond)
	for i := range 9 {
		s.submit(s.request([]byte(fmt.Sprintf("r%d", i))))
		s.tick(time.Millisecond)
	}
	s.runUntil(time.Second, "applied", s.allApplied(9))
	s.tick(50 * time.Millisecond)
	want := s.nodes[2].r.Status().StableCheckpoint
	if want != 8 {
		t.Fatalf("stable %d before the restart, want 8", want)
	}
	s.crash(2)
	s.restart(2)
	seq, digest, proof := s.nodes[2].r.StableCheckpoint()
	if seq != want || digest != s.chainAt[want-1] {
		t.Fatalf("after restart: stable %d, want %d", seq, want)
	}
	if _, _, err := VerifyCheckpointProof(proof, s.pubs, s.verifier()); err != nil {
		t.Fatalf("restored proof: %v", err)
	}
}

func TestVerifyCheckpointProof(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 205})
	d := crypto.Hash([]byte("state"))
	ck := func(from uint32, seq uint64, digest crypto.Digest) Envelope {
		return *s.sealAs(from, KindCheckpoint, &Checkpoint{Seq: seq, StateDigest: digest, Replica: from}, nil)
	}
	good := []Envelope{ck(0, 8, d), ck(1, 8, d), ck(3, 8, d)}
	if seq, got, err := VerifyCheckpointProof(good, s.pubs, s.verifier()); err != nil || seq != 8 || got != d {
		t.Fatalf("good proof: %d %v %v", seq, got, err)
	}
	forged := ck(2, 8, d)
	forged.Sig = ck(3, 8, d).Sig
	relabelled := *s.sealAs(2, KindPrepare, &Checkpoint{Seq: 8, StateDigest: d, Replica: 2}, nil)
	relabelled.Kind = KindCheckpoint
	cases := map[string][]Envelope{
		"too few":            good[:2],
		"too many":           append(append([]Envelope(nil), good...), ck(2, 8, d)),
		"a replica twice":    {good[0], good[1], good[1]},
		"another seq":        {good[0], good[1], ck(3, 12, d)},
		"another digest":     {good[0], good[1], ck(3, 8, crypto.Hash([]byte("other")))},
		"a forged signature": {good[0], good[1], forged},
		"another kind's sig": {good[0], good[1], relabelled},
		"not a checkpoint":   {good[0], good[1], *s.sealAs(3, KindCommit, &Commit{Seq: 8, Replica: 3}, nil)},
		"seq 0":              {ck(0, 0, d), ck(1, 0, d), ck(3, 0, d)},
	}
	for name, proof := range cases {
		if _, _, err := VerifyCheckpointProof(proof, s.pubs, s.verifier()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPrunable(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 206})
	d := crypto.Hash([]byte("d"))
	pp := func(view, seq uint64) *Envelope {
		return s.sealAs(uint32(view%4), KindPrePrepare, &PrePrepare{View: view, Seq: seq, Digest: d, Replica: uint32(view % 4)}, nil)
	}
	prep := func(view, seq uint64) *Envelope {
		return s.sealAs(1, KindPrepare, &Prepare{View: view, Seq: seq, Digest: d, Replica: 1}, nil)
	}
	commit := func(view, seq uint64) *Envelope {
		return s.sealAs(1, KindCommit, &Commit{View: view, Seq: seq, Digest: d, Replica: 1}, nil)
	}
	ck := func(seq uint64) *Envelope {
		return s.sealAs(1, KindCheckpoint, &Checkpoint{Seq: seq, StateDigest: d, Replica: 1}, nil)
	}
	vc := func(view uint64) *Envelope {
		return s.sealAs(1, KindViewChange, &ViewChange{View: view, Replica: 1}, nil)
	}
	nv := func(view uint64) *Envelope {
		return s.sealAs(uint32(view%4), KindNewView, &NewView{View: view, Replica: uint32(view % 4)}, nil)
	}
	// applied 20, stable 16, view 3.
	cases := []struct {
		name string
		env  *Envelope
		want bool
	}{
		{"pre-prepare at h", pp(3, 16), true},
		{"pre-prepare above h, this view", pp(3, 18), false},
		{"pre-prepare of an older view, applied", pp(2, 18), true},
		{"pre-prepare of an older view, not applied: its batch", pp(2, 21), false},
		{"prepare at h", prep(3, 16), true},
		{"prepare above h, this view", prep(3, 30), false},
		{"prepare of an older view", prep(2, 30), true},
		{"commit above h, this view", commit(3, 17), false},
		{"commit of an older view", commit(1, 17), true},
		{"checkpoint below h", ck(12), true},
		{"checkpoint at h: the proof", ck(16), false},
		{"checkpoint above h", ck(20), false},
		{"view-change of an older view", vc(2), true},
		{"view-change of this view", vc(3), false},
		{"view-change of a later view", vc(4), false},
		{"new-view of an older view", nv(2), true},
		{"new-view of this view", nv(3), false},
		{"executed", s.sealAs(1, KindExecuted, &Executed{Seq: 30, Replica: 1}, nil), true},
		{"undecodable", &Envelope{Kind: KindPrepare, Body: codec.MustMarshal("junk")}, true},
	}
	for _, c := range cases {
		if got := Prunable(c.env, 4, 20, 16, 3); got != c.want {
			t.Errorf("%s: Prunable = %v, want %v", c.name, got, c.want)
		}
	}
}

// signedEnvelopeBytesMax really bounds the largest vote, checkpoint and
// batchless pre-prepare, and a VIEW-CHANGE and NEW-VIEW as large as a
// replica accepts fit the bounds Config.Validate checks.
func TestMessageBoundsHold(t *testing.T) {
	s := newSim(t, simOptions{n: 7, seed: 207})
	top := ^uint64(0)
	d := crypto.Hash([]byte("d"))
	big := []*Envelope{
		s.sealAs(6, KindPrePrepare, &PrePrepare{View: top, Seq: top, Digest: d, Timestamp: -1 << 63, Replica: 6}, nil),
		s.sealAs(6, KindPrepare, &Prepare{View: top, Seq: top, Digest: d, Replica: 6}, nil),
		s.sealAs(6, KindCommit, &Commit{View: top, Seq: top, Digest: d, Replica: 6}, nil),
		s.sealAs(6, KindCheckpoint, &Checkpoint{Seq: top, StateDigest: d, Replica: 6}, nil),
	}
	for _, e := range big {
		if b := len(codec.MustMarshal(e)); b > signedEnvelopeBytesMax {
			t.Fatalf("a %v envelope takes %d bytes, above %d", e.Kind, b, signedEnvelopeBytesMax)
		}
	}
	const L = 64
	q := Quorum(7)
	vc := &ViewChange{View: top, StableSeq: top, Replica: 6}
	for range q {
		vc.StableProof = append(vc.StableProof, *big[3])
	}
	for range L {
		pc := PreparedCert{PrePrepare: *big[0]}
		for range q - 1 {
			pc.Prepares = append(pc.Prepares, *big[1])
		}
		vc.Prepared = append(vc.Prepared, pc)
	}
	vcEnv := s.sealAs(6, KindViewChange, vc, nil)
	if b := uint64(len(codec.MustMarshal(vcEnv))); b > viewChangeBytesMax(7, L) {
		t.Fatalf("a full view-change takes %d bytes, above the bound %d", b, viewChangeBytesMax(7, L))
	}
	nv := &NewView{View: top, Replica: 6}
	for range q {
		nv.ViewChanges = append(nv.ViewChanges, *vcEnv)
	}
	for range L {
		nv.PrePrepares = append(nv.PrePrepares, *big[0])
	}
	if b := uint64(len(codec.MustMarshal(s.sealAs(6, KindNewView, nv, nil)))); b > newViewBytesMax(7, L) {
		t.Fatalf("a full new-view takes %d bytes, above the bound %d", b, newViewBytesMax(7, L))
	}
	// And the codec takes them back.
	if _, err := DecodeEnvelope(codec.MustMarshal(s.sealAs(6, KindNewView, nv, nil))); err != nil {
		t.Fatalf("a full new-view does not decode: %v", err)
	}
}

// Config.Validate refuses a window that would let a NEW-VIEW outgrow the
// message limit.
func TestConfigBoundsNewView(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 208})
	cfg := s.cfgs[0]
	var keys []crypto.PublicKey
	for i := range 64 {
		keys = append(keys, testKey(t, "many", i).Public())
	}
	cfg.Validators = keys
	cfg.WindowSeqs, cfg.CheckpointInterval = 1<<12, 1
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "NEW-VIEW") {
		t.Fatalf("64 validators with window 4096: %v", err)
	}
	cfg.WindowSeqs = 16
	if err := cfg.Validate(); err != nil {
		t.Fatalf("64 validators with window 16: %v", err)
	}
}
