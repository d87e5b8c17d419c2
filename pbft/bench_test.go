package pbft

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// benchChunk is how many requests the benchmark submits before running the
// network until they are applied everywhere.
const benchChunk = 2048

// BenchmarkCore measures requests through 4 cores on the in-memory network,
// with the cheap hash signatures: the protocol's own cost plus envelope
// encoding and decoding, per request (ns/op is per request).
func BenchmarkCore(b *testing.B) {
	s := newSim(b, simOptions{n: 4, seed: 1, cheap: true, cfg: func(c *Config) {
		c.BatchRequestsMax = 256
		c.WindowSeqs = 64
		c.PendingRequestsMax = 4 * benchChunk
	}})
	s.tick(time.Millisecond)
	command := make([]byte, 128)
	benchChunks(b, func(seq uint64) []byte { return s.signedRequest(0, seq, command) }, func(reqs [][]byte, applied int) {
		for _, raw := range reqs {
			if err := s.submit(raw); err != nil {
				b.Fatal(err)
			}
		}
		s.runUntil(time.Minute, "chunk applied everywhere", s.allApplied(applied))
	})
}

// benchChunks runs b.N requests in chunks of benchChunk, each request built
// off the clock by request(seq) for seqs 1..b.N; run submits a chunk and
// returns once the first applied requests are applied everywhere. It reports
// requests/s.
func benchChunks(b *testing.B, request func(seq uint64) []byte, run func(reqs [][]byte, applied int)) {
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		next := min(done+benchChunk, b.N)
		b.StopTimer()
		reqs := make([][]byte, 0, next-done)
		for i := done; i < next; i++ {
			reqs = append(reqs, request(uint64(i+1)))
		}
		b.StartTimer()
		run(reqs, next)
		done = next
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// BenchmarkCoreLean is the core's own cost per request (ns/op), without the
// simulator: four replicas whose actions go straight to each other's Step
// (each envelope opened as the node's verifier opens it), the cheap hash
// signatures, no persistence, no fault injection and no invariant checks,
// which make up most of BenchmarkCore's time. Every request is submitted to
// every replica, as the nodes forward them.
func BenchmarkCoreLean(b *testing.B) {
	const n = 4
	pubs := make([]crypto.PublicKey, n)
	for i := range pubs {
		pubs[i] = testKey(b, "replica", i).Public()
	}
	reps := make([]*Replica, n)
	for i := range reps {
		cfg := testConfig()
		cfg.Validators, cfg.Self = pubs, uint32(i)
		cfg.Signer, cfg.Verifier = cheapSigner{pub: pubs[i]}, cheapVerifier{}
		cfg.BatchRequestsMax, cfg.WindowSeqs, cfg.CheckpointInterval = 256, 64, 16
		cfg.PendingRequestsMax, cfg.ProposalsInFlightMax = 4*benchChunk, 1
		r, err := New(cfg, State{})
		if err != nil {
			b.Fatal(err)
		}
		reps[i] = r
	}
	type message struct {
		to  uint32
		env *Envelope
	}
	var queue []message
	applied := make([]int, n)
	var handle func(i uint32, acts []Action)
	handle = func(i uint32, acts []Action) {
		for _, a := range acts {
			switch a := a.(type) {
			case Broadcast:
				for j := range uint32(n) {
					if j != i {
						queue = append(queue, message{to: j, env: a.Env})
					}
				}
			case Send:
				queue = append(queue, message{to: a.To, env: a.Env})
			case Deliver:
				applied[i] += len(a.Batch)
				handle(i, reps[i].Executed(a.Seq, crypto.Hash(binary.BigEndian.AppendUint64(nil, a.Seq))))
			}
		}
	}
	now := simEpoch
	tick := func() {
		now = now.Add(time.Millisecond)
		for i, r := range reps {
			handle(uint32(i), r.Tick(now))
		}
	}
	run := func() {
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			msg, err := m.env.Open(n)
			if err != nil {
				b.Fatal(err)
			}
			handle(m.to, reps[m.to].Step(msg))
		}
	}
	tick()
	client := cheapSigner{pub: testKey(b, "client", 0).Public()}
	command := make([]byte, 128)
	request := func(seq uint64) []byte { return signedRequestBy(client, client.pub, seq, command) }
	benchChunks(b, request, func(reqs [][]byte, next int) {
		for _, raw := range reqs {
			for i, r := range reps {
				acts, err := r.Submit(raw)
				if err != nil {
					b.Fatal(err)
				}
				handle(uint32(i), acts)
			}
		}
		run()
		for ticks := 0; slices.Min(applied) < next; ticks++ {
			if ticks > 10_000 {
				b.Fatalf("stuck: applied %v of %d", applied, next)
			}
			tick()
			run()
		}
	})
}
