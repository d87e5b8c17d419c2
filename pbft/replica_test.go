package pbft

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

func TestCommitInOrderOnAllReplicas(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			s := newSim(t, simOptions{n: n, seed: 1})
			s.delayMax = 3 * time.Millisecond // reorders messages
			s.tick(5 * time.Millisecond)
			const total = 40
			var order [][]byte
			for i := range total {
				raw := s.request([]byte(fmt.Sprintf("cmd-%d", i)))
				order = append(order, raw)
				if err := s.submit(raw); err != nil {
					t.Fatal(err)
				}
				s.step()
			}
			s.runUntil(time.Second, "all requests applied everywhere", s.allApplied(total))
			var got [][]byte
			for _, d := range s.log {
				got = append(got, d.Batch...)
			}
			if len(got) != total {
				t.Fatalf("log holds %d requests, want %d", len(got), total)
			}
			for i := range got {
				if !bytes.Equal(got[i], order[i]) {
					t.Fatalf("request %d out of submission order", i)
				}
			}
			for _, node := range s.nodes {
				st := node.r.Status()
				if st.Delivered != uint64(len(s.log)) || st.Committed != st.Delivered || st.Pending != 0 || st.InFlight != 0 {
					t.Fatalf("replica %d: status %+v after everything committed (log %d)", node.id, st, len(s.log))
				}
			}
		})
	}
}

func TestIdlePrimaryProposesImmediately(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 2, cfg: func(c *Config) { c.BatchDelay = time.Second }})
	s.isolateAll()
	primary := s.nodes[0].r

	// Before the first Tick the primary has no time to stamp a batch with.
	acts, err := primary.Submit(s.request([]byte("early")))
	s.apply(0, acts)
	if err != nil || len(sent(acts, KindPrePrepare)) != 0 {
		t.Fatalf("proposal before any Tick: %v, %v", acts, err)
	}
	acts = s.tickOne(0, time.Millisecond)
	pps := sent(acts, KindPrePrepare)
	if len(pps) != 1 || len(pps[0].Batch) != 1 {
		t.Fatalf("first Tick: %d pre-prepares, want 1 of 1 request", len(pps))
	}
	p, ok := acts[0].(Persist)
	if !ok || len(p.Envelopes) != 1 || p.Envelopes[0] != pps[0] {
		t.Fatalf("pre-prepare not persisted first: %v", acts)
	}

	// Idle again once seq 1 is out of the way? No: it is still in flight, so
	// the next request waits (BatchDelay is long).
	acts, _ = primary.Submit(s.request([]byte("busy")))
	s.apply(0, acts)
	if len(sent(acts, KindPrePrepare)) != 0 {
		t.Fatal("a busy primary proposed at once")
	}
	// A backup never proposes.
	acts, _ = s.nodes[1].r.Submit(s.request([]byte("backup")))
	s.tickOne(1, time.Second)
	if len(sent(acts, KindPrePrepare)) != 0 || s.nodes[1].r.Status().InFlight != 0 {
		t.Fatal("a backup proposed")
	}

	// With the network up, an idle primary proposes on Submit.
	s2 := newSim(t, simOptions{n: 4, seed: 2, cfg: func(c *Config) { c.BatchDelay = time.Second }})
	s2.tick(time.Millisecond)
	acts, _ = s2.nodes[0].r.Submit(s2.request([]byte("now")))
	s2.apply(0, acts)
	if len(sent(acts, KindPrePrepare)) != 1 {
		t.Fatalf("idle primary did not propose on Submit: %v", acts)
	}
	start := s2.now
	s2.runUntil(time.Second, "committed", s2.allApplied(1))
	if took := s2.now.Sub(start); took >= time.Second/2 {
		t.Fatalf("idle request took %v, as if it waited for BatchDelay", took)
	}
}

// submitNumbered submits request "r<i>" to replica 0 and carries out its
// actions.
func submitNumbered(t *testing.T, s *sim, i int) []Action {
	t.Helper()
	acts, err := s.nodes[0].r.Submit(s.request([]byte(fmt.Sprintf("r%d", i))))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(0, acts)
	return acts
}

func TestBatchCutByCount(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 3, cfg: func(c *Config) {
		c.BatchRequestsMax = 4
		c.BatchDelay = time.Second
	}})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	submit := func(i int) []Action { return submitNumbered(t, s, i) }
	if len(sent(submit(0), KindPrePrepare)) != 1 {
		t.Fatal("idle primary did not propose")
	}
	for i := 1; i <= 3; i++ {
		if len(sent(submit(i), KindPrePrepare)) != 0 {
			t.Fatalf("batch cut at %d requests, before batch_requests_max", i)
		}
	}
	pps := sent(submit(4), KindPrePrepare)
	if len(pps) != 1 || len(pps[0].Batch) != 4 {
		t.Fatalf("4th request: got %d pre-prepares, want one of 4 requests", len(pps))
	}
	m, err := pps[0].Open(4)
	if err != nil || m.PrePrepare.Seq != 2 {
		t.Fatalf("second batch: %+v, %v", m.PrePrepare, err)
	}
}

func TestBatchCutByBytes(t *testing.T) {
	probe := newSim(t, simOptions{n: 4, seed: 4})
	size := len(probe.request(bytes.Repeat([]byte{'x'}, 300)))
	s := newSim(t, simOptions{n: 4, seed: 4, cfg: func(c *Config) {
		c.BatchBytesMax = 3*size + size/2
		c.BatchDelay = time.Second
	}})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	primary := s.nodes[0].r
	var pps []*Envelope
	for i := range 5 {
		raw := s.request(bytes.Repeat([]byte{'x'}, 300))
		if len(raw) != size {
			t.Fatalf("request sizes differ: %d vs %d", len(raw), size)
		}
		acts, err := primary.Submit(raw)
		if err != nil {
			t.Fatal(err)
		}
		s.apply(0, acts)
		if i == 0 {
			continue // the idle proposal
		}
		pps = append(pps, sent(acts, KindPrePrepare)...)
		if i < 4 && len(pps) != 0 {
			t.Fatalf("cut after %d requests, below batch_bytes_max", i)
		}
	}
	// Four ready requests do not fit in 3.5 requests' bytes: three are cut.
	if len(pps) != 1 || len(pps[0].Batch) != 3 {
		t.Fatalf("got %d pre-prepares, want one of 3 requests", len(pps))
	}
	total := 0
	for _, raw := range pps[0].Batch {
		total += len(raw)
	}
	if total > 3*size+size/2 {
		t.Fatalf("batch of %d bytes exceeds batch_bytes_max", total)
	}
	if st := primary.Status(); st.Pending != 5 || st.InFlight != 2 || primary.pending.readyCount != 1 {
		t.Fatalf("status %+v, want 5 pending (1 ready), 2 in flight", st)
	}
}

func TestBatchCutByDelay(t *testing.T) {
	const delay = 10 * time.Millisecond
	s := newSim(t, simOptions{n: 4, seed: 5, cfg: func(c *Config) { c.BatchDelay = delay }})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	primary := s.nodes[0].r
	for i := range 3 {
		acts, err := primary.Submit(s.request([]byte(fmt.Sprintf("r%d", i))))
		if err != nil {
			t.Fatal(err)
		}
		s.apply(0, acts)
	}
	if st := primary.Status(); st.InFlight != 1 {
		t.Fatalf("in flight %d after the idle proposal, want 1", st.InFlight)
	}
	for range 9 {
		if pps := sent(s.tickOne(0, time.Millisecond), KindPrePrepare); len(pps) != 0 {
			t.Fatalf("cut before batch_delay passed (at %v)", s.now.Sub(simEpoch))
		}
	}
	pps := sent(s.tickOne(0, time.Millisecond), KindPrePrepare)
	if len(pps) != 1 || len(pps[0].Batch) != 2 {
		t.Fatalf("after batch_delay: %d pre-prepares, want one of 2 requests", len(pps))
	}
	m, _ := pps[0].Open(4)
	if m.PrePrepare.Timestamp != s.now.UnixNano() {
		t.Fatalf("timestamp %d, want the Tick time %d", m.PrePrepare.Timestamp, s.now.UnixNano())
	}
}

// With ProposalsInFlightMax seqs awaiting delivery, a busy primary waits
// past BatchDelay, proposes a full batch at once, and proposes the rest once a
// seq is delivered.
func TestProposalsInFlightMaxPacesTheBusyPrimary(t *testing.T) {
	const delay = 2 * time.Millisecond
	s := newSim(t, simOptions{n: 4, seed: 5, cfg: func(c *Config) {
		c.BatchDelay = delay
		c.BatchRequestsMax = 8
		c.ProposalsInFlightMax = 1
	}})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	primary := s.nodes[0].r
	submit := func(i int) []Action { return submitNumbered(t, s, i) }
	if len(sent(submit(0), KindPrePrepare)) != 1 {
		t.Fatal("idle primary did not propose")
	}
	for i := 1; i <= 3; i++ {
		submit(i)
	}
	for range 20 {
		if pps := sent(s.tickOne(0, time.Millisecond), KindPrePrepare); len(pps) != 0 {
			t.Fatalf("proposed with one seq in flight and a batch not full (at %v)", s.now.Sub(simEpoch))
		}
	}
	for i := 4; i <= 10; i++ {
		pps := sent(submit(i), KindPrePrepare)
		if want := i == 8; (len(pps) == 1) != want || (want && len(pps[0].Batch) != 8) {
			t.Fatalf("request %d: %d pre-prepares, want a full batch of 8 exactly at the 8th ready request", i, len(pps))
		}
	}
	// Let seq 1 commit and be delivered: the 2 left over go out.
	s.heal()
	s.runUntil(time.Second, "all applied", s.allApplied(11))
	if st := primary.Status(); st.Pending != 0 || st.Delivered != 3 {
		t.Fatalf("status %+v, want everything delivered in 3 seqs", st)
	}
}

// A busy primary counts a seq in flight until its executor reports it
// Executed, not merely until it is delivered: requests that arrive while the
// executor works join the next batch instead of making a small one of their
// own.
func TestPacingWaitsForExecution(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 9, cfg: func(c *Config) {
		c.BatchDelay = 2 * time.Millisecond
		c.BatchRequestsMax = 8
		c.ProposalsInFlightMax = 1
	}})
	s.nodes[0].holdExecution = true
	s.tick(time.Millisecond)
	submit := func(i int) []Action { return submitNumbered(t, s, i) }
	if len(sent(submit(0), KindPrePrepare)) != 1 {
		t.Fatal("idle primary did not propose")
	}
	primary := s.nodes[0].r
	s.runUntil(time.Second, "seq 1 delivered at the primary", func() bool { return primary.Status().Delivered == 1 })
	for i := 1; i <= 3; i++ {
		if pps := sent(submit(i), KindPrePrepare); len(pps) != 0 {
			t.Fatalf("request %d: proposed while seq 1 is delivered but not executed", i)
		}
	}
	for range 20 {
		if pps := sent(s.tickOne(0, time.Millisecond), KindPrePrepare); len(pps) != 0 {
			t.Fatalf("proposed a batch that is not full before seq 1 was executed (at %v)", s.now.Sub(simEpoch))
		}
	}
	pps := sent(s.executeHeld(0), KindPrePrepare)
	if len(pps) != 1 || len(pps[0].Batch) != 3 {
		t.Fatalf("once seq 1 was executed: %d pre-prepares, want one of the 3 waiting requests", len(pps))
	}
	s.nodes[0].holdExecution = false
	s.runUntil(time.Second, "all applied", s.allApplied(4))
	if st := primary.Status(); st.Delivered != 2 {
		t.Fatalf("delivered %d seqs, want 2", st.Delivered)
	}
}

func TestPipelining(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 6, cfg: func(c *Config) { c.BatchDelay = time.Millisecond }})
	s.delayMax = 4 * time.Millisecond
	s.tick(time.Millisecond)
	const total = 60
	for i := range total {
		if err := s.submit(s.request([]byte(fmt.Sprintf("p%d", i)))); err != nil {
			t.Fatal(err)
		}
		s.tick(time.Millisecond)
	}
	s.runUntil(time.Second, "all applied", s.allApplied(total))
	if got := s.nodes[0].maxInFlight; got < 2 {
		t.Fatalf("primary never had more than %d seqs in flight", got)
	}
	if len(s.log) < 3 {
		t.Fatalf("only %d batches", len(s.log))
	}
}

func TestWindowBoundsProposals(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 7, cfg: func(c *Config) {
		c.WindowSeqs = 3
		c.CheckpointInterval = 1
		c.BatchRequestsMax = 1
	}})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	for i := range 10 {
		acts, err := s.nodes[0].r.Submit(s.request([]byte(fmt.Sprintf("w%d", i))))
		if err != nil {
			t.Fatal(err)
		}
		s.apply(0, acts)
	}
	s.tickOne(0, time.Second)
	if st := s.nodes[0].r.Status(); st.InFlight != 3 || st.Pending != 10 {
		t.Fatalf("status %+v, want 3 in flight (window_seqs) and 10 pending", st)
	}
}

func TestBackupCrashThenCatchUp(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			s := newSim(t, simOptions{n: n, seed: 8})
			s.tick(time.Millisecond)
			down := uint32(n - 1)
			for i := range 5 {
				s.submit(s.request([]byte(fmt.Sprintf("a%d", i))))
				s.step()
			}
			s.runUntil(time.Second, "first requests everywhere", s.allApplied(5))
			s.crash(down)
			// More than a window of batches commit without it.
			for i := range 60 {
				s.submit(s.request([]byte(fmt.Sprintf("b%d", i))))
				s.tick(3 * time.Millisecond)
			}
			s.runUntil(time.Second, "commits with a backup down", s.allApplied(65))
			if s.nodes[down].delivered >= uint64(len(s.log)) {
				t.Fatal("the crashed backup kept up")
			}
			s.restart(down)
			for i := range 5 {
				s.submit(s.request([]byte(fmt.Sprintf("c%d", i))))
				s.tick(2 * time.Millisecond)
			}
			s.runUntil(2*time.Second, "restarted backup caught up", func() bool {
				return s.allApplied(70)() && s.nodes[down].delivered == uint64(len(s.log))
			})
			node := s.nodes[down]
			if node.fetches == 0 || node.caughtUp == 0 {
				t.Fatalf("restarted backup: %d fetches, %d entries by state transfer", node.fetches, node.caughtUp)
			}
			if st := node.r.Status(); st.Delivered != uint64(len(s.log)) {
				t.Fatalf("restarted backup status %+v, log %d", st, len(s.log))
			}
		})
	}
}

// A backup, cut off from the network, is fed scripted messages.
func scriptedBackup(t *testing.T, seed uint64, cfg func(*Config)) (*sim, *Replica) {
	t.Helper()
	s := newSim(t, simOptions{n: 4, seed: seed, cfg: cfg})
	s.isolateAll()
	s.tickOne(1, time.Millisecond)
	return s, s.nodes[1].r
}

func TestDuplicateVotesDoNotFormQuorums(t *testing.T) {
	// At the primary, whose own pre-prepare is not a prepare: 2f = 2 distinct
	// backups must prepare.
	s := newSim(t, simOptions{n: 4, seed: 9})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	r := s.nodes[0].r
	acts, _ := r.Submit(s.request([]byte("one")))
	s.apply(0, acts)
	pps := sent(acts, KindPrePrepare)
	if len(pps) != 1 {
		t.Fatal("no proposal")
	}
	m, _ := pps[0].Open(4)
	d := m.PrePrepare.Digest
	prepare := func(from uint32) *Envelope {
		return s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: from}, nil)
	}
	commit := func(from uint32) *Envelope {
		return s.sealAs(from, KindCommit, &Commit{View: 0, Seq: 1, Digest: d, Replica: from}, nil)
	}
	p1 := prepare(1)
	for range 3 {
		if acts := s.stepNow(0, p1); len(sent(acts, KindCommit)) != 0 {
			t.Fatal("one backup's prepare, replayed, made the slot prepared")
		}
	}
	if acts := s.stepNow(0, prepare(2)); len(sent(acts, KindCommit)) != 1 {
		t.Fatal("2f distinct prepares did not make the slot prepared")
	}
	c1 := commit(1)
	for range 3 {
		if acts := s.stepNow(0, c1); len(delivers(acts)) != 0 {
			t.Fatal("a replayed commit formed a quorum")
		}
	}
	acts = s.stepNow(0, commit(3))
	ds := delivers(acts)
	if len(ds) != 1 || len(ds[0].Cert.Commits) != 3 {
		t.Fatalf("2f+1 distinct commits: %d delivers", len(ds))
	}
	if st := r.Status(); st.Equivocations != 0 || st.Delivered != 1 {
		t.Fatalf("status %+v", st)
	}

	// At a backup, a PREPARE from the primary does not count.
	s2, b := scriptedBackup(t, 9, nil)
	batch := [][]byte{s2.request([]byte("one"))}
	ts := s2.now.UnixNano()
	d2 := BatchDigest(ts, batch)
	s2.stepNow(1, s2.prePrepare(0, 0, 1, ts, batch))
	if acts := s2.stepNow(1, s2.sealAs(0, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d2, Replica: 0}, nil)); len(sent(acts, KindCommit)) != 0 {
		t.Fatal("a prepare from the primary counted")
	}
	if b.Status().Dropped != 1 {
		t.Fatal("the primary's prepare was not counted as dropped")
	}
}

func TestEquivocationIgnoredAndCounted(t *testing.T) {
	s, r := scriptedBackup(t, 10, nil)
	batch := [][]byte{s.request([]byte("one"))}
	ts := s.now.UnixNano()
	d := BatchDigest(ts, batch)
	forged := crypto.Hash([]byte("another batch"))
	// Replica 2 votes for the forged digest first, then for the real one:
	// the first vote stands.
	s.stepNow(1, s.sealAs(2, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: forged, Replica: 2}, nil))
	s.stepNow(1, s.sealAs(2, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 2}, nil))
	if st := r.Status(); st.Equivocations != 1 {
		t.Fatalf("equivocations %d, want 1", st.Equivocations)
	}
	acts := s.stepNow(1, s.prePrepare(0, 0, 1, ts, batch))
	if len(sent(acts, KindPrepare)) != 1 || len(sent(acts, KindCommit)) != 0 {
		t.Fatalf("prepared with the equivocator's second vote: %v", acts)
	}
	if acts := s.stepNow(1, s.sealAs(3, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 3}, nil)); len(sent(acts, KindCommit)) != 1 {
		t.Fatal("not prepared with 2f honest prepares")
	}
	// Same for commits.
	s.stepNow(1, s.sealAs(3, KindCommit, &Commit{View: 0, Seq: 1, Digest: forged, Replica: 3}, nil))
	s.stepNow(1, s.sealAs(3, KindCommit, &Commit{View: 0, Seq: 1, Digest: d, Replica: 3}, nil))
	st := r.Status()
	if st.Equivocations != 2 || len(st.Evidence) != 2 {
		t.Fatalf("equivocations %d, evidence %d, want 2 and 2", st.Equivocations, len(st.Evidence))
	}
	for i, want := range []struct {
		kind Kind
		from uint32
	}{{KindPrepare, 2}, {KindCommit, 3}} {
		ev := st.Evidence[i]
		if ev.Kind != want.kind || ev.Replica != want.from || ev.View != 0 || ev.Seq != 1 || !s.evidenceHolds(ev) {
			t.Fatalf("evidence %d: %+v", i, ev)
		}
	}
	s.stepNow(1, s.sealAs(2, KindCommit, &Commit{View: 0, Seq: 1, Digest: d, Replica: 2}, nil))
	if st := r.Status(); st.Delivered != 0 {
		t.Fatal("delivered with a commit quorum that counted an equivocator's second vote")
	}
	acts = s.stepNow(1, s.sealAs(0, KindCommit, &Commit{View: 0, Seq: 1, Digest: d, Replica: 0}, nil))
	if ds := delivers(acts); len(ds) != 1 || ds[0].Digest != d {
		t.Fatalf("honest quorum did not deliver: %v", acts)
	}
}

func TestPrePrepareRefused(t *testing.T) {
	s, r := scriptedBackup(t, 11, func(c *Config) { c.BatchRequestsMax = 2; c.BatchBytesMax = 2048 })
	now := s.now.UnixNano()
	skew := int64(s.cfgs[1].ClockSkewMax)
	req := func(tag string) []byte { return s.request([]byte(tag)) }
	one := [][]byte{req("a")}
	cases := []struct {
		name string
		env  *Envelope
	}{
		{"from a non-primary", s.prePrepare(2, 0, 1, now, one)},
		{"wrong view", s.prePrepare(1%4, 1, 1, now, one)},
		{"wrong digest", s.sealAs(0, KindPrePrepare, &PrePrepare{View: 0, Seq: 1, Digest: crypto.Hash([]byte("x")), Timestamp: now, Replica: 0}, one)},
		{"digest of another timestamp", s.sealAs(0, KindPrePrepare, &PrePrepare{View: 0, Seq: 1, Digest: BatchDigest(now+1, one), Timestamp: now, Replica: 0}, one)},
		{"seq at the low watermark", s.prePrepare(0, 0, 0, now, one)},
		{"seq beyond the window", s.prePrepare(0, 0, s.cfgs[1].WindowSeqs+1, now, one)},
		{"timestamp in the future", s.prePrepare(0, 0, 1, now+skew+1, one)},
		{"empty batch", s.prePrepare(0, 0, 1, now, nil)},
		{"too many requests", s.prePrepare(0, 0, 1, now, [][]byte{req("b"), req("c"), req("d")})},
		{"too many bytes", s.prePrepare(0, 0, 1, now, [][]byte{bytes.Repeat([]byte{1}, 2049)})},
		{"duplicate request", s.prePrepare(0, 0, 1, now, [][]byte{one[0], one[0]})},
	}
	for _, c := range cases {
		dropped := r.Status().Dropped
		m, err := c.env.Open(4)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if acts := r.Step(m); len(acts) != 0 {
			t.Fatalf("%s: accepted: %v", c.name, acts)
		}
		if r.Status().Dropped != dropped+1 {
			t.Fatalf("%s: not counted as dropped", c.name)
		}
	}
	if st := r.Status(); st.InFlight != 0 || st.Equivocations != 0 {
		t.Fatalf("refusals left state behind: %+v", st)
	}
	// At the skew bound exactly it is accepted.
	if acts := s.stepNow(1, s.prePrepare(0, 0, 1, now+skew, one)); len(sent(acts, KindPrepare)) != 1 {
		t.Fatal("timestamp at now+clock_skew_max refused")
	}

	// A replica that has had no Tick has no clock to check against.
	fresh := newSim(t, simOptions{n: 4, seed: 11})
	m, _ := fresh.prePrepare(0, 0, 1, 0, one).Open(4)
	if acts := fresh.nodes[1].r.Step(m); len(acts) != 0 {
		t.Fatal("accepted a pre-prepare before any Tick")
	}
}

// TestBatchOfPendingRequests: a backup takes the IDs of the requests it has
// pending from its queue instead of hashing them again. Every answer must be
// the one hashing gives: requests out of queue order, not pending, one bit
// off a pending one, or repeated.
func TestBatchOfPendingRequests(t *testing.T) {
	s, r := scriptedBackup(t, 21, func(c *Config) { c.BatchRequestsMax = 8 })
	var queued [][]byte
	for i := range 6 {
		raw := s.request([]byte(fmt.Sprintf("pending-%d", i)))
		if _, err := r.Submit(raw); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, raw)
	}
	a, b, c, d, e, f := queued[0], queued[1], queued[2], queued[3], queued[4], queued[5]
	other := s.request([]byte("not pending"))
	flipped := func(raw []byte) []byte {
		x := bytes.Clone(raw)
		x[len(x)-1] ^= 1
		return x
	}
	now := s.now.UnixNano()
	// Stepped without the simulated node: a bit off, a request's signature
	// fails, which the node would refuse before Step.
	step := func(env *Envelope) []Action {
		t.Helper()
		m, err := env.Open(4)
		if err != nil {
			t.Fatal(err)
		}
		return r.Step(m)
	}
	batchWithDigestOf := func(batch, digestOf [][]byte) *Envelope {
		return s.sealAs(0, KindPrePrepare, &PrePrepare{View: 0, Seq: 1, Digest: BatchDigest(now, digestOf), Timestamp: now, Replica: 0}, batch)
	}
	refused := []struct {
		name string
		env  *Envelope
	}{
		{"a pending request twice", s.prePrepare(0, 0, 1, now, [][]byte{a, a})},
		{"a pending request twice, apart", s.prePrepare(0, 0, 1, now, [][]byte{a, b, a})},
		{"a pending request out of order, twice", s.prePrepare(0, 0, 1, now, [][]byte{b, a, b})},
		{"a request not pending, twice", s.prePrepare(0, 0, 1, now, [][]byte{other, a, other})},
		{"pending requests' digest over other bytes", batchWithDigestOf([][]byte{flipped(a), b}, [][]byte{a, b})},
		{"other bytes' digest over pending requests", batchWithDigestOf([][]byte{a, b}, [][]byte{flipped(a), b})},
	}
	for _, c := range refused {
		dropped := r.Status().Dropped
		if acts := step(c.env); len(acts) != 0 {
			t.Fatalf("%s: accepted: %v", c.name, acts)
		}
		if r.Status().Dropped != dropped+1 {
			t.Fatalf("%s: not counted as dropped", c.name)
		}
	}

	// Out of queue order, with a request not pending here and one a bit off
	// a pending one: accepted, and only the pending ones are batched.
	batch := [][]byte{b, a, other, flipped(c), d}
	if acts := step(s.prePrepare(0, 0, 1, now, batch)); len(sent(acts, KindPrepare)) != 1 {
		t.Fatalf("batch of pending and other requests refused: %v", acts)
	}
	if st := r.Status(); st.Pending != 6 || r.pending.readyCount != 3 {
		t.Fatalf("pending %d (%d not batched), want 6 (c, e and f)", st.Pending, r.pending.readyCount)
	}
	digest := BatchDigest(now, batch)
	var ds []Deliver
	for _, from := range []uint32{2, 3} {
		step(s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: digest, Replica: from}, nil))
		ds = append(ds, delivers(step(s.sealAs(from, KindCommit, &Commit{View: 0, Seq: 1, Digest: digest, Replica: from}, nil)))...)
	}
	if len(ds) != 1 || len(ds[0].Batch) != len(batch) {
		t.Fatalf("delivered %+v, want seq 1", ds)
	}
	if st := r.Status(); st.Pending != 3 {
		t.Fatalf("pending %d after delivery, want 3 (c, e and f)", st.Pending)
	}
	// Copies of what was delivered are ignored, pending here before or not,
	// and so is c, still pending.
	for _, raw := range [][]byte{a, other, flipped(c), c} {
		if acts, err := r.Submit(raw); acts != nil || err != nil {
			t.Fatalf("resubmitted: %v, %v", acts, err)
		}
	}
	if st := r.Status(); st.Pending != 3 {
		t.Fatalf("pending %d after resubmissions, want 3", st.Pending)
	}
	// The rest, in queue order after a gap the delivery left.
	if acts := step(s.prePrepare(0, 0, 2, now+1, [][]byte{c, e, f})); len(sent(acts, KindPrepare)) != 1 || r.pending.readyCount != 0 {
		t.Fatalf("batch of the rest: %v, %d not batched", acts, r.pending.readyCount)
	}
}

// TestDeliveredRequestsRemembered: a replica ignores a resubmitted request
// while it is among the latest RecentDeliveredMax delivered ones, and queues
// it again after, whether it was pending here or not.
func TestDeliveredRequestsRemembered(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 22})
	s.isolateAll()
	r := s.nodes[2].r
	notPending, wasPending := []byte("delivered elsewhere"), []byte("delivered here")
	if _, err := r.Submit(wasPending); err != nil {
		t.Fatal(err)
	}
	r.Forget([][]byte{notPending, wasPending})
	fill := func(from, to int) {
		var reqs [][]byte
		for i := from; i < to; i++ {
			reqs = append(reqs, []byte(fmt.Sprintf("fill-%d", i)))
		}
		r.Forget(reqs)
	}
	submit := func(raw []byte, wantPending int) {
		t.Helper()
		if _, err := r.Submit(raw); err != nil {
			t.Fatal(err)
		}
		if p := r.Status().Pending; p != wantPending {
			t.Fatalf("%s after %d deliveries: pending %d, want %d", raw, RecentDeliveredMax, p, wantPending)
		}
		if n := len(r.pending.byHash); n > r.pending.len()+RecentDeliveredMax {
			t.Fatalf("index holds %d requests, %d pending", n, r.pending.len())
		}
	}
	fill(0, RecentDeliveredMax-2)
	submit(notPending, 0)
	submit(wasPending, 0)
	fill(RecentDeliveredMax, RecentDeliveredMax+1)
	submit(notPending, 1)
	submit(wasPending, 1)
	fill(RecentDeliveredMax+1, RecentDeliveredMax+2)
	submit(wasPending, 2)
}

func TestRetransmissionRepairsLoss(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 12})
	s.tick(time.Millisecond)
	ppSends := 0
	s.drop = func(from, to uint32, env *Envelope) bool {
		if env.Kind != KindPrePrepare || (to != 1 && to != 2) {
			return false
		}
		ppSends++
		return ppSends <= 2 // the first copy to each of 1 and 2
	}
	s.submit(s.request([]byte("lost")))
	start := s.now
	s.runUntil(time.Second, "committed after loss", s.allApplied(1))
	if ppSends < 4 {
		t.Fatalf("pre-prepare sent %d times to replicas 1 and 2, want a retransmission", ppSends)
	}
	if took := s.now.Sub(start); took < s.cfgs[0].RetransmitInterval {
		t.Fatalf("committed after %v, before any retransmission could happen", took)
	}

	// Lost COMMITs: a replica whose peers already delivered is answered with
	// their kept COMMITs when it retransmits.
	s2 := newSim(t, simOptions{n: 4, seed: 13})
	s2.tick(time.Millisecond)
	lost := 0
	s2.drop = func(from, to uint32, env *Envelope) bool {
		if env.Kind == KindCommit && to == 3 && lost < 3 {
			lost++
			return true
		}
		return false
	}
	s2.submit(s2.request([]byte("commits lost")))
	s2.runUntil(time.Second, "replica 3 delivered after losing every commit", s2.allApplied(1))
	if lost != 3 || s2.nodes[3].caughtUp != 0 {
		t.Fatalf("dropped %d commits; %d entries by state transfer", lost, s2.nodes[3].caughtUp)
	}
}

func TestSubmitBounds(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 14, cfg: func(c *Config) {
		c.PendingRequestsMax = 3
		c.BatchBytesMax = 1024
	}})
	s.isolateAll()
	r := s.nodes[2].r
	reqs := [][]byte{s.request([]byte("a")), s.request([]byte("b")), s.request([]byte("c"))}
	for _, raw := range reqs {
		if _, err := r.Submit(raw); err != nil {
			t.Fatal(err)
		}
	}
	if acts, err := r.Submit(reqs[1]); err != nil || acts != nil {
		t.Fatalf("duplicate of a pending request: %v, %v", acts, err)
	}
	if _, err := r.Submit(s.request([]byte("d"))); !errors.Is(err, ErrPendingFull) {
		t.Fatalf("full queue: %v, want ErrPendingFull", err)
	}
	if _, err := r.Submit(make([]byte, 1025)); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("oversized request: %v, want ErrRequestTooLarge", err)
	}
	if st := r.Status(); st.Pending != 3 {
		t.Fatalf("pending %d, want 3", st.Pending)
	}
	// Delivered requests leave every replica's queue.
	r.Forget(reqs[:2])
	if _, err := r.Submit(s.request([]byte("e"))); err != nil {
		t.Fatalf("after room was made: %v", err)
	}
}

func TestDeliveredRequestsLeavePendingEverywhere(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 15, cfg: func(c *Config) { c.PendingRequestsMax = 8 }})
	s.tick(time.Millisecond)
	for round := range 5 {
		for i := range 8 {
			if err := s.submit(s.request([]byte(fmt.Sprintf("%d-%d", round, i)))); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		s.runUntil(time.Second, "round applied", s.allApplied(8*(round+1)))
		for _, node := range s.nodes {
			if p := node.r.Status().Pending; p != 0 {
				t.Fatalf("replica %d keeps %d delivered requests pending", node.id, p)
			}
		}
	}
}

func TestFetchWhenBehind(t *testing.T) {
	s, _ := scriptedBackup(t, 16, nil)
	L := s.cfgs[1].WindowSeqs
	d := crypto.Hash([]byte("d"))
	commit := func(from uint32, seq uint64) *Envelope {
		return s.sealAs(from, KindCommit, &Commit{View: 0, Seq: seq, Digest: d, Replica: from}, nil)
	}
	// Beyond the window: f+1 replicas make it a Fetch at once.
	if acts := s.stepNow(1, commit(2, L+5)); len(fetches(acts)) != 0 {
		t.Fatal("one replica (≤ f) ahead caused a fetch")
	}
	acts := s.stepNow(1, commit(3, L+7))
	if f := fetches(acts); len(f) != 1 || f[0].AfterSeq != 0 {
		t.Fatalf("f+1 replicas ahead: %v", acts)
	}
	if acts := s.stepNow(1, commit(0, L+9)); len(fetches(acts)) != 0 {
		t.Fatal("fetched twice within retransmit_interval")
	}

	// Within the window: commits for later seqs from f+1 replicas and no
	// delivery for retransmit_interval.
	s2, _ := scriptedBackup(t, 17, nil)
	c := func(from uint32, seq uint64) *Envelope {
		return s2.sealAs(from, KindCommit, &Commit{View: 0, Seq: seq, Digest: d, Replica: from}, nil)
	}
	s2.stepNow(1, c(2, 3))
	s2.stepNow(1, c(3, 3))
	interval := s2.cfgs[1].RetransmitInterval
	got := 0
	for elapsed := time.Duration(0); elapsed < interval; elapsed += time.Millisecond {
		got += len(fetches(s2.tickOne(1, time.Millisecond)))
	}
	if got != 1 {
		t.Fatalf("%d fetches in the first retransmit_interval, want 1", got)
	}
}

func TestCaughtUpDeliversCommittedSlots(t *testing.T) {
	s, r := scriptedBackup(t, 18, nil)
	batch := [][]byte{s.request([]byte("three"))}
	ts := s.now.UnixNano() - 1000
	d := BatchDigest(ts, batch)
	s.stepNow(1, s.prePrepare(0, 0, 3, ts, batch))
	for _, from := range []uint32{2, 3} {
		s.stepNow(1, s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: 3, Digest: d, Replica: from}, nil))
		s.stepNow(1, s.sealAs(from, KindCommit, &Commit{View: 0, Seq: 3, Digest: d, Replica: from}, nil))
	}
	if st := r.Status(); st.Committed != 3 || st.Delivered != 0 {
		t.Fatalf("status %+v, want seq 3 committed and nothing delivered", st)
	}
	// The node applied seqs 1 and 2 from peers; their log time is later than
	// the pre-prepare timestamp of seq 3.
	acts := r.CaughtUp(2, ts+50)
	ds := delivers(acts)
	if len(ds) != 1 || ds[0].Seq != 3 || ds[0].Timestamp != ts+51 || ds[0].Cert.Timestamp != ts {
		t.Fatalf("after CaughtUp: %+v", ds)
	}
	if acts := r.CaughtUp(1, ts); acts != nil {
		t.Fatalf("CaughtUp backwards: %v", acts)
	}
	if st := r.Status(); st.Delivered != 3 {
		t.Fatalf("delivered %d", st.Delivered)
	}
	// Messages for delivered seqs never deliver again.
	m, _ := s.prePrepare(0, 0, 3, ts, batch).Open(4)
	if acts := r.Step(m); len(delivers(acts)) != 0 {
		t.Fatal("a seq at or below delivered was delivered again")
	}
}

func TestRestartNeverSignsConflict(t *testing.T) {
	s, _ := scriptedBackup(t, 19, nil)
	batch := [][]byte{s.request([]byte("first"))}
	ts := s.now.UnixNano()
	first := s.prePrepare(0, 0, 1, ts, batch)
	acts := s.stepNow(1, first)
	prep := sent(acts, KindPrepare)
	if len(prep) != 1 {
		t.Fatal("no prepare")
	}
	// The pre-prepare (with its batch) is kept with the vote.
	if p, ok := acts[0].(Persist); !ok || len(p.Envelopes) != 2 || p.Envelopes[0] != first && !sameEnvelope(p.Envelopes[0], first) {
		t.Fatalf("persisted %v", acts[0])
	}
	s.crash(1)
	s.restart(1)
	s.tickOne(1, time.Millisecond)
	// The original is recognised (no second signature); the replica answers
	// the primary with the prepare it signed before.
	acts = s.stepNow(1, first)
	if len(s.nodes[1].st.Log) != 2 {
		t.Fatalf("persisted %d envelopes, want the pre-prepare and the prepare", len(s.nodes[1].st.Log))
	}
	if got := sent(acts, KindPrepare); len(got) != 1 || !bytes.Equal(got[0].Sig, prep[0].Sig) {
		t.Fatalf("answer to the primary: %v", acts)
	}
	// And it retransmits it on its own.
	var again []*Envelope
	for range 100 {
		again = append(again, sent(s.tickOne(1, time.Millisecond), KindPrepare)...)
	}
	if len(again) == 0 || !bytes.Equal(again[0].Sig, prep[0].Sig) {
		t.Fatal("restarted replica did not retransmit its prepare")
	}
	// A conflicting pre-prepare for the seq it prepared is refused: two
	// pre-prepares the primary signed for one (view, seq) are evidence, and
	// proof enough to leave the view.
	other := [][]byte{s.request([]byte("second"))}
	acts = s.stepNow(1, s.prePrepare(0, 0, 1, s.now.UnixNano(), other))
	if len(sent(acts, KindPrepare)) != 0 {
		t.Fatal("signed a conflicting prepare after restart")
	}
	if len(sent(acts, KindViewChange)) != 1 {
		t.Fatalf("no view change on an equivocating primary: %v", acts)
	}
	st := s.nodes[1].r.Status()
	if st.Equivocations != 1 || len(st.Evidence) != 1 || st.View != 1 || st.ViewActive {
		t.Fatalf("status %+v", st)
	}
	if ev := st.Evidence[0]; ev.Kind != KindPrePrepare || ev.Replica != 0 || !s.evidenceHolds(ev) {
		t.Fatalf("evidence %+v", ev)
	}
}

func TestPrimaryRestartKeepsItsProposals(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 20})
	s.isolateAll()
	s.tickOne(0, time.Millisecond)
	acts, _ := s.nodes[0].r.Submit(s.request([]byte("a")))
	s.apply(0, acts)
	pp := sent(acts, KindPrePrepare)
	if len(pp) != 1 {
		t.Fatal("no proposal")
	}
	s.crash(0)
	s.restart(0)
	acts = s.tickOne(0, time.Millisecond)
	// Retransmitted as signed before, with its batch.
	re := sent(acts, KindPrePrepare)
	if len(re) != 1 || !bytes.Equal(re[0].Sig, pp[0].Sig) || len(re[0].Batch) != 1 {
		t.Fatalf("restarted primary: %v", acts)
	}
	acts, _ = s.nodes[0].r.Submit(s.request([]byte("b")))
	s.apply(0, acts)
	acts = s.tickOne(0, time.Second)
	next := sent(acts, KindPrePrepare)
	proposed2 := false
	for _, e := range next {
		m, _ := e.Open(4)
		switch m.PrePrepare.Seq {
		case 1:
			if !bytes.Equal(e.Sig, pp[0].Sig) {
				t.Fatal("restarted primary signed seq 1 again")
			}
		case 2:
			proposed2 = true
		}
	}
	if !proposed2 {
		t.Fatal("restarted primary did not propose seq 2")
	}
	// Heal: both commit everywhere.
	for i := range s.nodes {
		s.isolate(uint32(i), false)
	}
	s.tick(time.Millisecond)
	s.runUntil(2*time.Second, "both batches applied", s.allApplied(2))
}

func TestNewRefusesBadState(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 21})
	cfg := s.cfgs[1]
	d := crypto.Hash([]byte("d"))
	prep := func(from uint32, seq uint64, digest crypto.Digest) Envelope {
		return *s.sealAs(from, KindPrepare, &Prepare{View: 0, Seq: seq, Digest: digest, Replica: from}, nil)
	}
	batch := [][]byte{s.request([]byte("x"))}
	cases := []struct {
		name string
		st   State
	}{
		{"another replica's commit", State{Log: []Envelope{*s.sealAs(2, KindCommit, &Commit{View: 0, Seq: 1, Digest: d, Replica: 2}, nil)}}},
		{"another replica's view-change", State{View: 1, Log: []Envelope{*s.sealAs(2, KindViewChange, &ViewChange{View: 1, Replica: 2}, nil)}}},
		{"a later view without its view-change", State{View: 1}},
		{"conflicting digests", State{Log: []Envelope{prep(1, 1, d), prep(1, 1, crypto.Hash([]byte("e")))}}},
		{"a later view than persisted", State{Log: []Envelope{*s.sealAs(1, KindPrepare, &Prepare{View: 2, Seq: 1, Digest: d, Replica: 1}, nil)}}},
		{"pre-prepare by a backup", State{Log: []Envelope{*s.prePrepare(1, 0, 1, 5, batch)}}},
		{"primary's commit without its pre-prepare", State{View: 1, Log: []Envelope{*s.sealAs(1, KindCommit, &Commit{View: 1, Seq: 1, Digest: d, Replica: 1}, nil)}}},
		{"not decodable", State{Log: []Envelope{{Kind: KindPrepare, Body: []byte{0xff}}}}},
	}
	for _, c := range cases {
		if _, err := New(cfg, c.st); err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
	}
	// Stale entries (at or below Delivered) are fine.
	if _, err := New(cfg, State{Delivered: 5, Log: []Envelope{prep(1, 3, d)}}); err != nil {
		t.Fatal(err)
	}
}

// A restored envelope beyond the window is kept, and binds once the window
// reaches it.
func TestRestoreBeyondWindow(t *testing.T) {
	s, _ := scriptedBackup(t, 24, nil)
	L := s.cfgs[1].WindowSeqs
	batch := [][]byte{s.request([]byte("far"))}
	ts := s.now.UnixNano()
	d := BatchDigest(ts, batch)
	far := L + 2
	st := State{Log: []Envelope{*s.sealAs(1, KindPrepare, &Prepare{View: 0, Seq: far, Digest: d, Replica: 1}, nil)}}
	s.nodes[1].st = st
	s.nodes[1].signed[sigKey{KindPrepare, 0, far}] = d
	s.crash(1)
	s.restart(1)
	r := s.nodes[1].r
	// The restored slot lacks its batch: the first Tick asks for a fetch.
	if f := fetches(s.tickOne(1, time.Millisecond)); len(f) != 1 || f[0].AfterSeq != 0 {
		t.Fatalf("first Tick after restoring a slot without its batch: %v", f)
	}
	// Once the window reaches it (a stable checkpoint at K), a conflicting
	// pre-prepare is refused.
	K := s.cfgs[1].CheckpointInterval
	state := crypto.Hash([]byte("state"))
	for _, from := range []uint32{0, 2, 3} {
		s.stepNow(1, s.sealAs(from, KindCheckpoint, &Checkpoint{Seq: K, StateDigest: state, Replica: from}, nil))
	}
	if st := r.Status(); st.StableCheckpoint != K || far > K+L {
		t.Fatalf("stable %d, want %d", st.StableCheckpoint, K)
	}
	acts := r.CaughtUp(far-1, ts-1)
	s.apply(1, acts)
	other := [][]byte{s.request([]byte("other"))}
	if acts := s.stepNow(1, s.prePrepare(0, 0, far, ts, other)); len(sent(acts, KindPrepare)) != 0 {
		t.Fatal("signed a conflict for a restored seq beyond the window")
	}
	if r.Status().Equivocations != 1 {
		t.Fatal("conflict not counted")
	}
}

func TestConfigValidate(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 22})
	good := s.cfgs[0]
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Config){
		"no validators":          func(c *Config) { c.Validators = nil },
		"self out of range":      func(c *Config) { c.Self = 4 },
		"no signer":              func(c *Config) { c.Signer = nil },
		"zero chain":             func(c *Config) { c.ChainID = crypto.Digest{} },
		"zero batch requests":    func(c *Config) { c.BatchRequestsMax = 0 },
		"zero batch bytes":       func(c *Config) { c.BatchBytesMax = 0 },
		"batch over msg limit":   func(c *Config) { c.BatchBytesMax = 16 << 20 },
		"negative delay":         func(c *Config) { c.BatchDelay = -1 },
		"zero window":            func(c *Config) { c.WindowSeqs = 0 },
		"huge window":            func(c *Config) { c.WindowSeqs = WindowSeqsMax + 1 },
		"zero pending":           func(c *Config) { c.PendingRequestsMax = 0 },
		"zero skew":              func(c *Config) { c.ClockSkewMax = 0 },
		"zero retransmit":        func(c *Config) { c.RetransmitInterval = 0 },
		"duplicate validator":    func(c *Config) { c.Validators = []crypto.PublicKey{s.pubs[0], s.pubs[0]} },
		"too many batch entries": func(c *Config) { c.BatchRequestsMax = 1 << 20 },
		"no verifier":            func(c *Config) { c.Verifier = nil },
		"zero checkpoint":        func(c *Config) { c.CheckpointInterval = 0 },
		"checkpoint over L/2":    func(c *Config) { c.CheckpointInterval = c.WindowSeqs/2 + 1 },
		"zero view timeout":      func(c *Config) { c.ViewChangeTimeout = 0 },
		"huge view timeout":      func(c *Config) { c.ViewChangeTimeout = ViewChangeTimeoutMaxLimit + 1 },
	}
	for name, mutate := range cases {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := New(c, State{}); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
}

func TestExecutedIsNotHandled(t *testing.T) {
	s, r := scriptedBackup(t, 23, nil)
	env := s.sealAs(2, KindExecuted, &Executed{Seq: 1, Replica: 2}, nil)
	m, err := env.Open(4)
	if err != nil {
		t.Fatal(err)
	}
	if acts := r.Step(m); acts != nil {
		t.Fatalf("executed: %v", acts)
	}
	if acts := r.Step(Message{}); acts != nil || r.Status().Dropped != 1 {
		t.Fatal("an empty message was not dropped")
	}
}

func TestBatchDigestOfIDs(t *testing.T) {
	var batch [][]byte
	for size := range 40 {
		for _, ts := range []int64{0, -1, 1 << 62, 1_700_000_000_123_456_789} {
			if got, want := batchDigestOfIDs(ts, hashRequests(batch)), BatchDigest(ts, batch); got != want {
				t.Fatalf("%d requests, ts %d: %v, want %v", size, ts, got, want)
			}
		}
		batch = append(batch, bytes.Repeat([]byte{byte(size)}, size))
	}
}
