package ledger

import (
	"fmt"
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

// BenchmarkTransfers executes batches of 1,000 single-transfer requests
// between 100 accounts of 10 owners into an in-memory log: the ledger
// executor's cost without the disk, reported as transfers/s.
func BenchmarkTransfers(b *testing.B) {
	const (
		batchTransfers = 1000
		accounts       = 100
		owners         = 10
	)
	h := newHarness(b, DefaultConfig())
	id := func(i int) string { return fmt.Sprintf("acct-%02d", i) }
	owner := func(i int) byte { return byte(1 + i%owners) }
	seqs := map[byte]uint64{}
	next := func(c byte) uint64 { seqs[c]++; return seqs[c] }
	open := make([]Request, accounts)
	for i := range open {
		open[i] = req(owner(i), next(owner(i)), openCmd(id(i), 1, owner(i), 0))
	}
	for _, r := range h.run(open...) {
		if r.Code != CodeOK {
			b.Fatalf("open: %s %s", r.Code, r.Message)
		}
	}
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reqs := make([]Request, batchTransfers)
		for j := range reqs {
			n++
			from, to := n%accounts, (n*7+1)%accounts
			if from == to {
				to = (to + 1) % accounts
			}
			reqs[j] = req(owner(from), next(owner(from)), xferCmd(TransferCommand{
				ID: fmt.Sprintf("t-%d", n), DebitAccount: id(from), CreditAccount: id(to), Amount: uint64(1 + n%50), Code: 1,
			}))
		}
		b.StartTimer()
		for _, r := range h.run(reqs...) {
			if r.Code != CodeOK {
				b.Fatalf("%s %s", r.Code, r.Message)
			}
		}
	}
	b.ReportMetric(float64(batchTransfers*b.N)/b.Elapsed().Seconds(), "transfers/s")
}
