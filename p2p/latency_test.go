package p2p

import (
	"runtime"
	"sort"
	"testing"
	"time"
)

// BenchmarkPingPong measures the round trip of one small frame between two
// validators, one at a time: the transport's latency, not its throughput.
func BenchmarkPingPong(b *testing.B) {
	hosts, _ := newCluster(b, 2, nil)
	startAll(hosts)
	waitMesh(b, hosts)
	go func() {
		for f := range hosts[1].Inbound() {
			hosts[1].Send(0, f.Frame)
		}
	}()
	frame := make([]byte, 128)
	rtts := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		for !hosts[0].Send(1, frame) {
			runtime.Gosched()
		}
		<-hosts[0].Inbound()
		rtts[i] = time.Since(t0)
	}
	b.StopTimer()
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50_rtt_us")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99_rtt_us")
}
