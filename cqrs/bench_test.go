package cqrs

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ordoledger/ordo/eventlog"
)

// benchEvents is the size of the log BenchmarkApply projects.
const benchEvents = 100_000

// benchLog fills an in-memory log with benchEvents events: ledger accounts,
// posted and pending transfers and their resolutions, and orders, 500
// events per entry.
func benchLog(b *testing.B) *testLog {
	l := newTestLog(b)
	rng := rand.New(rand.NewPCG(1, 2))
	type item struct {
		stream string
		ev     ev
	}
	var entry []item
	flush := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		seq, _ := l.log.Applied()
		_, err := l.log.Apply(eventlog.EntryHeader{Seq: seq + 1, Timestamp: logBaseTime + int64(seq)}, func(tx *eventlog.Tx) ([][]byte, error) {
			for _, it := range entry {
				if _, _, err := tx.AppendEvents(it.stream, []eventlog.NewEvent{newEvent(it.ev)}); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		entry = entry[:0]
	}
	const accounts = 100
	var pending []string
	for i := range benchEvents {
		var it item
		switch k := rng.IntN(10); {
		case i < accounts:
			id := fmt.Sprintf("a%d", i)
			it = item{"account-" + id, ev{"AccountCreated", fmt.Sprintf(`{"id":%q,"code":1,"owner_key":"00","flags":[]}`, id), false}}
		case k < 3:
			id := fmt.Sprintf("t%d", i)
			d := rng.IntN(accounts)
			c := (d + 1 + rng.IntN(accounts-1)) % accounts
			p := k == 0
			if p {
				pending = append(pending, fmt.Sprintf(`{"pending_id":%q,"amount":1,"debit_account":"a%d","credit_account":"a%d"}`, id, d, c))
			}
			it = item{"transfer-" + id, ev{"TransferCreated", fmt.Sprintf(`{"id":%q,"debit_account":"a%d","credit_account":"a%d","amount":%d,"code":1,"pending":%t,"timeout_ms":0}`, id, d, c, 1+rng.IntN(100), p), false}}
		case k == 3 && len(pending) > 0:
			data := pending[0]
			pending = pending[1:]
			var id string
			fmt.Sscanf(data, `{"pending_id":%q`, &id)
			it = item{"transfer-" + id, ev{"PendingPosted", data, false}}
		default:
			it = item{fmt.Sprintf("order-%d", rng.IntN(1000)), ev{"OrderPlaced", fmt.Sprintf(`{"customer":"c%d","total":%d,"status":"new","sku":"s%d"}`, rng.IntN(200), rng.IntN(500), rng.IntN(20)), false}}
		}
		entry = append(entry, it)
		if len(entry) == 500 {
			flush()
		}
	}
	if len(entry) > 0 {
		flush()
	}
	return l
}

// BenchmarkApply measures how fast each projection (and all of them
// together) follows a log of benchEvents events from the start.
func BenchmarkApply(b *testing.B) {
	l := benchLog(b)
	orders, err := compileSpec(ordersSpec)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		projections []Projection
	}{
		{StreamsProjection, []Projection{streamsProjection{}}},
		{EventTypesProjection, []Projection{eventTypesProjection{}}},
		{BalancesProjection, []Projection{balancesProjection{}}},
		{ordersSpec.Name, []Projection{orders}},
		{"all", []Projection{streamsProjection{}, eventTypesProjection{}, balancesProjection{}, orders}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				e, err := open(Options{InMemory: true, Log: l.log, Logger: quiet}, c.projections)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				e.Start()
				for _, p := range c.projections {
					waitAt(b, e, p.Name(), l.last())
				}
				b.StopTimer()
				if err := e.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// The shape of `ordo bench` as a node's projections see it: every client
// appends single events to a stream of its own, and a committed batch holds
// about benchBatchEvents events of one type.
const (
	benchClients     = 64
	benchBatchEvents = 22
	benchPayload     = `{"n":0,"pad":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}`
)

// benchFeed makes the events `ordo bench` appends: stream i%benchClients
// gets event i, benchBatchEvents events share an entry.
type benchFeed struct {
	next     uint64
	versions [benchClients]uint64
}

func (f *benchFeed) batch(n int) []eventlog.Event {
	evs := make([]eventlog.Event, n)
	for i := range evs {
		f.next++
		c := f.next % benchClients
		seq := 1 + (f.next-1)/benchBatchEvents
		evs[i] = eventlog.Event{
			Position: f.next, Stream: fmt.Sprintf("bench-run-%d", c), Version: f.versions[c],
			Type: "bench", ContentType: contentJSON, Data: []byte(benchPayload),
			EntrySeq: seq, Timestamp: logBaseTime + int64(seq)*int64(time.Millisecond),
		}
		f.versions[c]++
	}
	return evs
}

// processCPU, where the platform tells, is the CPU time the process has
// used, on every core: it is set by cputime_unix_test.go.
var processCPU func() (time.Duration, error)

// BenchmarkApplyLive measures one projection transaction after another, as
// a node following `ordo bench` runs them, on a disk store: an op is one
// event, so ns/op and allocs/op are per event. The events are made up front
// (the node's runner takes them from the log's cache of recent events), so
// only the projections and their store are measured. cpu-ns/op is the
// process's CPU time per event, badger's goroutines included: on a shared
// machine it is steadier than the elapsed time.
func BenchmarkApplyLive(b *testing.B) {
	for _, c := range []struct {
		name        string
		projections []Projection
	}{
		{StreamsProjection, []Projection{streamsProjection{}}},
		{EventTypesProjection, []Projection{eventTypesProjection{}}},
		{"builtins", []Projection{streamsProjection{}, eventTypesProjection{}, balancesProjection{}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := newTestLog(b)
			e, err := open(Options{Dir: b.TempDir(), Log: l.log, Logger: quiet}, c.projections)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			runners := make([]*runner, len(c.projections))
			for i, p := range c.projections {
				if runners[i], err = e.runner(p.Name()); err != nil {
					b.Fatal(err)
				}
			}
			var feed benchFeed
			apply := func(evs []eventlog.Event) {
				for _, r := range runners {
					commitBatch(b, r, evs)
				}
			}
			// Every stream has a row already, as in a running benchmark.
			for range 4 * benchClients / benchBatchEvents {
				apply(feed.batch(benchBatchEvents))
			}
			batches := make([][]eventlog.Event, 0, b.N/benchBatchEvents+1)
			for left := b.N; left > 0; left -= benchBatchEvents {
				batches = append(batches, feed.batch(min(left, benchBatchEvents)))
			}
			b.ReportAllocs()
			var cpuStart time.Duration
			if processCPU != nil {
				if cpuStart, err = processCPU(); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for _, evs := range batches {
				apply(evs)
			}
			b.StopTimer()
			if processCPU != nil {
				cpuEnd, err := processCPU()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(cpuEnd-cpuStart)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}

// commitBatch applies evs to the runner's active generation in one
// transaction, as applyBatch does, and fails unless all of it commits.
func commitBatch(tb testing.TB, r *runner, evs []eventlog.Event) {
	tb.Helper()
	res, err := r.applyTxn(&r.active, evs)
	if err != nil || res.problemAt >= 0 {
		tb.Fatalf("%s: %+v, %v", r.name, res, err)
	}
	r.active.position, r.active.skipped = res.committed.Position, res.committed.Skipped
}
