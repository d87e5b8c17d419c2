package ledger

import (
	"testing"
)

// BenchmarkExecute1000 executes batches of 1,000 one-event appends from 64
// clients with clock-like seqs, past the client window, into an in-memory log:
// the executor's cost without the disk.
func BenchmarkExecute1000(b *testing.B) {
	const (
		batchRequests = 1000
		clients       = 64
	)
	h := newHarness(b, Config{ClientWindow: 256, EventsPerAppendMax: 10, EventBytesMax: 1 << 10})
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reqs := make([]Request, batchRequests)
		for j := range reqs {
			n++
			e := EventData{ID: evID(n), Type: "bench", Data: make([]byte, 128)}
			e.ID[1], e.ID[2], e.ID[3] = byte(n>>16), byte(n>>24), byte(n>>32)
			reqs[j] = req(byte(j%clients), uint64(n), appendCmd("stream-"+string(rune('a'+j%26)), ExpectedAny, e))
		}
		b.StartTimer()
		for _, r := range h.run(reqs...) {
			if r.Code != CodeOK {
				b.Fatalf("%s %s", r.Code, r.Message)
			}
		}
	}
	b.ReportMetric(float64(batchRequests*b.N)/b.Elapsed().Seconds(), "requests/s")
}
