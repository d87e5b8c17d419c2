package cqrs

import (
	"fmt"
	"math/rand/v2"
	"testing"

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
