package node

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
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

// BenchmarkWriteBundle is a gateway's answer to one submit under ordo bench
// (one of 21 results, two EXECUTED statements), as JSON and as CBOR.
func BenchmarkWriteBundle(b *testing.B) {
	const batch = 21
	leaves := make([][]byte, batch)
	for i := range leaves {
		leaves[i] = codec.MustMarshal(&ledger.Result{RequestHash: crypto.Hash([]byte{byte(i)}), Code: ledger.CodeOK, Positions: []uint64{uint64(1000 + i)}, StreamVersion: 1, EntrySeq: 7})
	}
	proof, err := crypto.InclusionProof(leaves, batch/2)
	if err != nil {
		b.Fatal(err)
	}
	k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{1}, crypto.SeedSize))
	if err != nil {
		b.Fatal(err)
	}
	signer := crypto.NewSigner(k, crypto.Hash([]byte("bench")))
	root := crypto.MerkleRoot(leaves)
	bundle := &pbft.ReplyBundle{EntrySeq: 7, Result: leaves[batch/2], ResultIndex: batch / 2, ResultCount: batch, Proof: proof}
	for r := uint32(0); r < 2; r++ {
		env := pbft.Seal(signer, pbft.KindExecuted, &pbft.Executed{Seq: 7, ResultsRoot: root, EntryHash: root, Replica: r})
		bundle.Executed = append(bundle.Executed, codec.MustMarshal(env))
	}
	for _, accept := range []string{mediaJSON, mediaCBOR} {
		b.Run(accept[len("application/"):], func(b *testing.B) {
			req := submitWith(accept)
			b.ReportAllocs()
			for range b.N {
				w := httptest.NewRecorder()
				writeBundle(w, req, bundle)
			}
		})
	}
}
