package node

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/ledger"
)

// BenchmarkClusterAppend drives a 4-validator in-process cluster (real libp2p
// on loopback, fsync on, every signature checked) with closed-loop clients and
// reports committed events/s and latency percentiles from submit to a verified
// f+1 reply bundle.
func BenchmarkClusterAppend(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := newTestCluster(b, 4)
			cls := make([]*client.Client, clients)
			for i := range cls {
				cls[i] = c.newClient(i % 4)
			}
			var next atomic.Int64
			lat := make([]time.Duration, b.N)
			payload := make([]byte, 0, 128)
			payload = append(payload, `{"pad":"`...)
			for len(payload) < 126 {
				payload = append(payload, 'x')
			}
			payload = append(payload, `"}`...)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i := range cls {
				wg.Add(1)
				go func(cl *client.Client, i int) {
					defer wg.Done()
					for {
						k := next.Add(1) - 1
						if k >= int64(b.N) {
							return
						}
						var id [16]byte
						copy(id[:], fmt.Sprintf("%016d", k))
						cmd := ledger.Command{Append: &ledger.AppendCommand{
							Stream: fmt.Sprintf("bench-%d", i), ExpectedVersion: ledger.ExpectedAny,
							Events: []ledger.EventData{{ID: id, Type: "bench", ContentType: ledger.ContentJSON, Data: payload}},
						}}
						t0 := time.Now()
						if _, err := cl.Submit(context.Background(), cmd); err != nil {
							b.Error(err)
							return
						}
						lat[k] = time.Since(t0)
					}
				}(cls[i], i)
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
			entries, _ := c.nodes[0].store.Applied()
			b.ReportMetric(float64(c.nodes[0].store.LastPosition())/float64(entries), "events/entry")
		})
	}
}
