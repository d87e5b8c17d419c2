//go:build unix

package ledger

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ordoledger/ordo/eventlog"
)

// BenchmarkExecuteDisk executes what ordo bench's clients send — 64 clients,
// each appending single 128-byte events to its own stream, 22 requests to a
// batch — into a log on disk that already holds 204,800 such events of 256
// clients and streams, the last of them still in badger's memtables: the
// executor's cost as a node sees it, reads of a large store included, without
// the network and the fsyncs. Besides requests/s (wall time, which a shared
// machine's other work stretches) it reports cpu-µs/request: the process's
// CPU time over the measured loop (badger's background work included, the
// making of requests and the checks of results too), per request.
func BenchmarkExecuteDisk(b *testing.B) {
	const (
		prefillClients  = 256
		prefillEvents   = 800 // per client
		prefillRequests = 1024
		clients         = 64
		batchRequests   = 22
		seqBase         = 1_700_000_000_000_000_000
	)
	payload := []byte(`{"pad":"` + strings.Repeat("x", 128-len(`{"pad":""}`)) + `"}`)
	h := openHarness(b, DefaultConfig(), eventlog.Options{Dir: b.TempDir()})
	n := 0
	// next is client c's (0..255) next append to its own stream, with a
	// clock-like seq and a fresh event id.
	next := func(c int) Request {
		n++
		e := EventData{Type: "bench", ContentType: ContentJSON, Data: payload}
		e.ID[0] = 0x10
		binary.BigEndian.PutUint64(e.ID[8:], uint64(n))
		return req(byte(c), seqBase+uint64(n), appendCmd(fmt.Sprint("bench-", c), ExpectedAny, e))
	}
	check := func(raw [][]byte) {
		for _, r := range decodeResults(b, raw) {
			if r.Code != CodeOK {
				b.Fatalf("%s %s", r.Code, r.Message)
			}
		}
	}
	for i := 0; i < prefillClients*prefillEvents; i += prefillRequests {
		reqs := make([]Request, prefillRequests)
		for j := range reqs {
			reqs[j] = next((i + j) % prefillClients)
		}
		check(h.runRaw(reqs...))
	}
	turn := 0
	b.ReportAllocs()
	cpu := processCPU(b)
	for b.Loop() {
		b.StopTimer()
		reqs := make([]Request, batchRequests)
		for j := range reqs {
			reqs[j] = next(turn % clients)
			turn++
		}
		b.StartTimer()
		raw := h.runRaw(reqs...)
		b.StopTimer()
		check(raw)
		b.StartTimer()
	}
	cpu = processCPU(b) - cpu
	b.ReportMetric(float64(batchRequests*b.N)/b.Elapsed().Seconds(), "requests/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(batchRequests*b.N), "cpu-µs/request")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
