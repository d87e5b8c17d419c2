package pbft

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// faultSeeds is the seeds each older randomised test runs: ORDO_SIM_SEEDS
// raises the count, ORDO_SIM_SEED replays one seed (see simSeeds).
func faultSeeds(t *testing.T) []uint64 {
	count := 6
	if testing.Short() {
		count = 2
	}
	return simSeeds(t, count)
}

// simSeeds is seeds 1..count, or the count ORDO_SIM_SEEDS asks for, or the
// one seed ORDO_SIM_SEED names.
func simSeeds(t *testing.T, count int) []uint64 {
	if v := os.Getenv("ORDO_SIM_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ORDO_SIM_SEED=%q: %v", v, err)
		}
		return []uint64{seed}
	}
	if v := os.Getenv("ORDO_SIM_SEEDS"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 1 {
			t.Fatalf("ORDO_SIM_SEEDS=%q: want a positive count", v)
		}
		count = c
	}
	seeds := make([]uint64, count)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// TestRandomFaults drives replicas through loss, duplication, reordering,
// link cuts and a backup crash-restart, checking the invariants after every
// event; once the faults stop, every request must be applied everywhere.
func TestRandomFaults(t *testing.T) {
	for _, n := range []int{4, 7} {
		for _, seed := range faultSeeds(t) {
			t.Run(fmt.Sprintf("n=%d/seed=%d", n, seed), func(t *testing.T) {
				s := newSim(t, simOptions{n: n, seed: seed, cfg: func(c *Config) {
					c.BatchRequestsMax = 8
					c.WindowSeqs = 8
				}})
				s.lossRate, s.dupRate, s.delayMax = 0.05, 0.1, 6*time.Millisecond
				s.tick(time.Millisecond)
				total := 0
				victim := uint32(1 + s.rng.IntN(n-1))
				for round := range 300 {
					switch {
					case round == 60:
						s.crash(victim)
					case round == 140:
						s.restart(victim)
					case round == 180:
						// One-way cut: the victim hears nobody for a while.
						for j := range s.nodes {
							s.cut[j][victim] = uint32(j) != victim
						}
					case round == 230:
						for j := range s.nodes {
							s.cut[j][victim] = false
						}
					}
					if s.rng.IntN(3) == 0 {
						if err := s.submit(s.request([]byte(fmt.Sprintf("%d/%d", seed, round)))); err != nil {
							t.Fatal(err)
						}
						total++
					}
					s.tick(time.Millisecond)
				}
				s.lossRate, s.dupRate = 0, 0
				s.runUntil(5*time.Second, "every request applied everywhere after healing", s.allApplied(total))
				for _, node := range s.nodes {
					if node.delivered != uint64(len(s.log)) {
						t.Fatalf("replica %d delivered %d of %d", node.id, node.delivered, len(s.log))
					}
				}
			})
		}
	}
}

// TestByzantineBackupEquivocates: one replica sends each of its votes with a
// forged digest to some replicas and the real one to others.
func TestByzantineBackupEquivocates(t *testing.T) {
	for _, seed := range faultSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			s := newSim(t, simOptions{n: 4, seed: seed})
			s.delayMax = 3 * time.Millisecond
			const byz = 3
			s.drop = func(from, to uint32, env *Envelope) bool {
				if from != byz || to == 2 || env.Kind == KindPrePrepare {
					return false
				}
				m, err := env.Open(s.n)
				if err != nil {
					t.Fatal(err)
				}
				forged := crypto.Hash([]byte("forged"), []byte{byte(to)})
				var body any
				switch {
				case m.Prepare != nil:
					p := *m.Prepare
					p.Digest = forged
					body = &p
				case m.Commit != nil:
					c := *m.Commit
					c.Digest = forged
					body = &c
				}
				s.inject(to, from, s.sealAs(byz, env.Kind, body, nil))
				// Sometimes the real vote arrives too: an equivocation.
				return s.rng.IntN(2) == 0
			}
			s.tick(time.Millisecond)
			const total = 30
			for i := range total {
				s.submit(s.request([]byte(fmt.Sprintf("%d", i))))
				s.tick(time.Millisecond)
			}
			s.runUntil(2*time.Second, "honest replicas applied everything", s.allApplied(total))
			seen := uint64(0)
			for _, node := range s.nodes[:byz] {
				seen += node.r.Status().Equivocations
			}
			if seen == 0 {
				t.Fatal("no honest replica noticed an equivocation")
			}
		})
	}
}

// TestTwinPrimary: the primary signs two batches for one seq and sends one to
// replicas 1 and 2, the other to replica 3. Agreement holds, and replica 3
// catches up by state transfer.
func TestTwinPrimary(t *testing.T) {
	s := newSim(t, simOptions{n: 4, seed: 30})
	s.tick(time.Millisecond)
	twin := map[uint64]bool{}
	s.drop = func(from, to uint32, env *Envelope) bool {
		if from != 0 || to != 3 || env.Kind != KindPrePrepare {
			return false
		}
		m, _ := env.Open(s.n)
		pp := *m.PrePrepare
		if twin[pp.Seq] {
			return true
		}
		twin[pp.Seq] = true
		batch := [][]byte{s.request([]byte(fmt.Sprintf("twin %d", pp.Seq)))}
		pp.Digest = BatchDigest(pp.Timestamp, batch)
		s.inject(to, from, s.sealAs(0, KindPrePrepare, &pp, batch))
		return true
	}
	for i := range 3 {
		s.submit(s.request([]byte(fmt.Sprintf("real %d", i))), 0, 1, 2)
		s.tick(time.Millisecond)
	}
	s.runUntil(2*time.Second, "all replicas applied the real batches", s.allApplied(3))
	if s.nodes[3].caughtUp == 0 {
		t.Fatal("replica 3 applied the batches without state transfer")
	}
}

// FuzzStep feeds arbitrary bytes through DecodeEnvelope and Open into a
// replica's Step (outer signatures unchecked: the core must survive whatever
// the node lets through; nested ones the core checks itself). It must never
// panic, nor break the invariants.
func FuzzStep(f *testing.F) {
	s := newSim(f, simOptions{n: 4, seed: 40})
	batch := [][]byte{s.request([]byte("seed"))}
	ts := simEpoch.UnixNano()
	d := BatchDigest(ts, batch)
	for _, env := range []*Envelope{
		s.prePrepare(0, 0, 1, ts, batch),
		s.prePrepare(0, 0, 1<<40, ts, batch),
		s.sealAs(2, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 2}, nil),
		s.sealAs(3, KindCommit, &Commit{View: 0, Seq: 1, Digest: d, Replica: 3}, nil),
		s.sealAs(2, KindCommit, &Commit{View: 7, Seq: 1 << 62, Digest: d, Replica: 2}, nil),
		s.sealAs(2, KindExecuted, &Executed{Seq: 1, Replica: 2}, nil),
		s.sealAs(2, KindCheckpoint, &Checkpoint{Seq: 4, StateDigest: d, Replica: 2}, nil),
		s.sealAs(3, KindViewChange, &ViewChange{View: 1, Replica: 3, Prepared: []PreparedCert{{
			PrePrepare: withoutBatch(s.prePrepare(0, 0, 1, ts, batch)),
			Prepares: []Envelope{
				*s.sealAs(2, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 2}, nil),
				*s.sealAs(3, KindPrepare, &Prepare{View: 0, Seq: 1, Digest: d, Replica: 3}, nil),
			},
		}}}, nil),
		s.sealAs(1, KindNewView, &NewView{View: 1, Replica: 1, PrePrepares: []Envelope{*s.sealAs(1, KindPrePrepare, &PrePrepare{View: 1, Seq: 1, Digest: d, Timestamp: ts, Replica: 1}, nil)}}, nil),
	} {
		f.Add(codec.MustMarshal(env))
	}
	f.Add([]byte{})
	f.Add([]byte{0xa1, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := newSim(t, simOptions{n: 4, seed: 41, cheap: true})
		fs.isolateAll()
		for i := range fs.nodes {
			fs.tickOne(uint32(i), time.Millisecond)
		}
		env, err := DecodeEnvelope(data)
		if err != nil {
			return
		}
		m, err := env.Open(4)
		if err != nil {
			return
		}
		for i := range fs.nodes {
			// Twice: the second is a replay.
			fs.apply(uint32(i), fs.nodes[i].r.Step(m))
			fs.apply(uint32(i), fs.nodes[i].r.Step(m))
			fs.tickOne(uint32(i), time.Second)
		}
	})
}
