package pbft

import (
	"testing"
	"time"
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
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		next := min(done+benchChunk, b.N)
		b.StopTimer()
		reqs := make([][]byte, 0, next-done)
		for i := done; i < next; i++ {
			reqs = append(reqs, s.signedRequest(0, uint64(i+1), command))
		}
		b.StartTimer()
		for _, raw := range reqs {
			if err := s.submit(raw); err != nil {
				b.Fatal(err)
			}
		}
		s.runUntil(time.Minute, "chunk applied everywhere", s.allApplied(next))
		done = next
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}
