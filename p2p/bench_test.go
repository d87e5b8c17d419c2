package p2p

import (
	"runtime"
	"sync"
	"testing"
)

// BenchmarkMeshBroadcast measures 4 validators each broadcasting 128-byte
// frames to the other three; one op is one frame sent by every validator.
func BenchmarkMeshBroadcast(b *testing.B) {
	const n, frameBytes = 4, 128
	hosts, _ := newCluster(b, n, func(c *Config) { c.SendQueueLen = 1 << 16 })
	startAll(hosts)
	waitMesh(b, hosts)
	frame := make([]byte, frameBytes)
	want := (n - 1) * b.N
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			for range want {
				<-h.Inbound()
			}
		})
	}
	b.ResetTimer()
	for _, h := range hosts {
		wg.Go(func() {
			for range b.N {
				for j := range hosts {
					// Retry on a full queue: the benchmark measures the
					// transport, not drops.
					for uint32(j) != h.cfg.Self && !h.Send(uint32(j), frame) {
						runtime.Gosched()
					}
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	var dropped uint64
	for _, h := range hosts {
		dropped += h.Stats().FramesDropped
	}
	b.ReportMetric(float64(n*want)/b.Elapsed().Seconds(), "frames_delivered/s")
	b.ReportMetric(float64(dropped), "full_queue_retries")
}
