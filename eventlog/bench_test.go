package eventlog

import (
	"fmt"
	"testing"

	"github.com/ordoledger/ordo/crypto"
)

// BenchmarkApply1000 applies batches of 1,000 events (10 requests of 100
// events, 128-byte payloads) to a log on disk with SyncWrites, as a validator
// runs it.
func BenchmarkApply1000(b *testing.B) {
	const (
		requests          = 10
		eventsPerRequest  = 100
		payloadBytes      = 128
		eventsPerBatchMax = requests * eventsPerRequest
	)
	l := openDir(b, b.TempDir())
	defer l.Close()
	payload := make([]byte, payloadBytes)
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := header(uint64(i+1), requests)
		_, err := l.Apply(h, func(tx *Tx) ([][]byte, error) {
			results := make([][]byte, requests)
			for r := 0; r < requests; r++ {
				evs := make([]NewEvent, eventsPerRequest)
				for e := range evs {
					n++
					evs[e] = NewEvent{ID: id(n), Type: "bench", Data: payload, ContentHash: crypto.Hash(payload)}
				}
				if _, _, err := tx.AppendEvents(fmt.Sprintf("stream-%d", n%64), evs); err != nil {
					return nil, err
				}
				results[r] = []byte{byte(r)}
			}
			return results, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(eventsPerBatchMax*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendNewStreams applies batches of 100 one-event appends, each to
// a stream never seen before, to a log on disk: every stream version is a
// miss of the executor cache, read from badger.
func BenchmarkAppendNewStreams(b *testing.B) {
	const appendsPerBatch = 100
	l := openDir(b, b.TempDir())
	defer l.Close()
	payload := make([]byte, 128)
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := l.Apply(header(uint64(i+1), appendsPerBatch), func(tx *Tx) ([][]byte, error) {
			results := make([][]byte, appendsPerBatch)
			for r := range results {
				n++
				stream := fmt.Sprintf("new-%d", n)
				if v, err := tx.StreamVersion(stream); err != nil || v != -1 {
					return nil, fmt.Errorf("new stream %s at version %d: %v", stream, v, err)
				}
				ev := NewEvent{ID: id(n), Type: "bench", Data: payload, ContentHash: crypto.Hash(payload)}
				if _, _, err := tx.AppendEvents(stream, []NewEvent{ev}); err != nil {
					return nil, err
				}
				results[r] = []byte{byte(r)}
			}
			return results, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*appendsPerBatch), "ns/append")
}
