package ledger

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/eventlog"
)

// reopen closes the harness's log and opens it again from opts.Dir, with
// the event log's caches and memos empty.
func (h *harness) reopen(opts eventlog.Options) {
	h.t.Helper()
	if err := h.log.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.log = openTestLog(h.t, opts)
}

// cacheWorkload draws the requests of TestExecutorCacheChangesNothing.
type cacheWorkload struct {
	clock  map[byte]uint64 // each client's clock-like seqs
	sent   []Request
	events int // event numbers handed out
	fresh  int // fresh streams made
}

func (w *cacheWorkload) request(t *rapid.T) Request {
	c := byte(1 + choose(t, "client", 1, 1, 1, 1))
	w.clock[c] += rapid.Uint64Range(1, 3).Draw(t, "tick")
	seq := w.clock[c] - min(w.clock[c], rapid.Uint64Range(0, 4).Draw(t, "jitter"))
	event := func() EventData {
		w.events++
		return ev(w.events)
	}
	var cmd []byte
	switch choose(t, "request", 6, 3, 2, 2, 2, 2, 3) {
	case 0: // as ordo bench does: the client's own stream
		cmd = appendCmd(fmt.Sprint("own-", c), ExpectedAny, event())
	case 1:
		evs := []EventData{event()}
		if choose(t, "two events", 3, 1) == 1 {
			evs = append(evs, event())
		}
		cmd = appendCmd(fmt.Sprint("shared-", choose(t, "shared", 1, 1, 1)), rapid.Int64Range(-3, 3).Draw(t, "expected"), evs...)
	case 2:
		w.fresh++
		cmd = appendCmd(fmt.Sprint("fresh-", w.fresh), ExpectedNoStream, event())
	case 3: // a retry of the same client seq
		if len(w.sent) > 0 {
			return w.sent[rapid.IntRange(0, len(w.sent)-1).Draw(t, "retried")]
		}
		cmd = appendCmd("own-0", ExpectedAny, event())
	case 4: // a command again under a new seq: an idempotent event-id retry, or id reuse
		if len(w.sent) > 0 {
			cmd = w.sent[rapid.IntRange(0, len(w.sent)-1).Draw(t, "resent")].Command
			if choose(t, "other content", 3, 1) == 1 {
				var parsed Command
				if err := codec.Unmarshal(cmd, &parsed); err == nil && parsed.Append != nil {
					parsed.Append.Events[0].Data = []byte(`{"other":true}`)
					cmd = codec.MustMarshal(&parsed)
				}
			}
		} else {
			cmd = appendCmd("own-0", ExpectedAny, event())
		}
	case 5: // an old seq: too old, executed out of order, or a retained one
		seq = rapid.Uint64Range(0, w.clock[c]).Draw(t, "old seq")
		cmd = appendCmd(fmt.Sprint("own-", c), ExpectedAny, event())
	default:
		accounts := []string{"A0", "A1", "A2", "A3"}
		transfer := fmt.Sprint("T", rapid.IntRange(0, 9).Draw(t, "transfer"))
		switch choose(t, "ledger op", 1, 2, 1, 1) {
		case 0:
			cmd = openCmd(oneOf(t, "account", accounts...), 1, c, 0)
		case 1:
			cmd = xferCmd(TransferCommand{
				ID: transfer, DebitAccount: oneOf(t, "debit", accounts...), CreditAccount: oneOf(t, "credit", accounts...),
				Amount: uint64(1 + choose(t, "amount", 1, 1, 1)), Code: 1,
				Pending: choose(t, "pending", 1, 1) == 1, TimeoutMs: []uint64{0, 1000}[choose(t, "timeout", 1, 1)],
			})
		case 2:
			cmd = postCmd(fmt.Sprint("P", rapid.IntRange(0, 3).Draw(t, "post")), transfer, 0)
		default:
			cmd = voidCmd(fmt.Sprint("V", rapid.IntRange(0, 3).Draw(t, "void")), transfer)
		}
	}
	r := req(c, seq, cmd)
	w.sent = append(w.sent, r)
	return r
}

// TestExecutorCacheChangesNothing executes random workloads — appends to
// shared, own and fresh streams, retries of a client seq, old seqs,
// idempotent event-id retries and id reuse, ledger operations with pending
// transfers that expire — on a log with the event log's cache, on one
// without it, and (in a third of the runs) on one on disk that is reopened
// between batches. Results, entries, heads, state digests and events must
// be byte for byte the same.
func TestExecutorCacheChangesNothing(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			ClientWindow: rapid.IntRange(1, 2*lowSeqsMax+3).Draw(rt, "window"), EventsPerAppendMax: 3, EventBytesMax: 64,
			OpsPerCommandMax: 4, OpsPerBatchMax: 16, ExpiriesPerBatchMax: 2,
		}
		hs := []*harness{newHarness(rt, cfg), openHarness(rt, cfg, eventlog.Options{InMemory: true, NoExecutorCache: true})}
		disk := eventlog.Options{Dir: t.TempDir()}
		onDisk := choose(rt, "on disk", 2, 1) == 1
		if onDisk {
			hs = append(hs, openHarness(rt, cfg, disk))
		}
		w := &cacheWorkload{clock: map[byte]uint64{}}
		ts := int64(1_700_000_000e9)
		for b := range rapid.IntRange(1, 20).Draw(rt, "batches") {
			reqs := make([]Request, rapid.IntRange(1, 24).Draw(rt, "batch size"))
			for i := range reqs {
				reqs[i] = w.request(rt)
			}
			ts += rapid.Int64Range(1, 1500).Draw(rt, "ms passing") * 1e6
			if onDisk && choose(rt, "reopen", 3, 1) == 1 {
				hs[2].reopen(disk)
			}
			want := hs[0].runRawAt(ts, reqs...)
			seq, head := hs[0].log.Applied()
			_, state := hs[0].log.StateDigest()
			entry := entryBytes(rt, hs[0].log, seq)
			for i, h := range hs[1:] {
				if got := h.runRawAt(ts, reqs...); !slices.EqualFunc(got, want, bytes.Equal) {
					rt.Fatalf("batch %d: log %d got other results", b, i+1)
				}
				if _, hd := h.log.Applied(); hd != head {
					rt.Fatalf("batch %d: log %d has another head", b, i+1)
				}
				if _, st := h.log.StateDigest(); st != state {
					rt.Fatalf("batch %d: log %d has another state digest", b, i+1)
				}
				if !bytes.Equal(entryBytes(rt, h.log, seq), entry) {
					rt.Fatalf("batch %d: log %d has another entry", b, i+1)
				}
			}
		}
		evs := eventBytes(rt, hs[0].log)
		for i, h := range hs[1:] {
			if !bytes.Equal(eventBytes(rt, h.log), evs) {
				rt.Fatalf("log %d has other events", i+1)
			}
		}
	})
}

func entryBytes(t *rapid.T, l *eventlog.Log, seq uint64) []byte {
	e, err := l.Entry(seq)
	if err != nil {
		t.Fatal(err)
	}
	return codec.MustMarshal(e)
}

func eventBytes(t *rapid.T, l *eventlog.Log) []byte {
	var all []eventlog.Event
	for from := uint64(1); ; {
		evs, next, err := l.ReadAll(from, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return codec.MustMarshal(all)
		}
		all, from = append(all, evs...), next
	}
}

// In a steady load of single-event appends, each client to its own stream,
// the executor does not read badger at all (the event id is new, which the
// log's ID filter tells; without the cache it is read) and starts one scan
// per batch (the expiry index).
func TestSteadyAppendsReadNoKeys(t *testing.T) {
	const (
		clients       = 64
		batchRequests = 22
	)
	for _, off := range []bool{false, true} {
		h := openHarness(t, DefaultConfig(), eventlog.Options{InMemory: true, NoExecutorCache: off})
		var gets, seeks int
		h.inspect = func(tx *eventlog.Tx) { gets, seeks = tx.Reads() }
		n := 0
		for b := range 20 {
			reqs := make([]Request, batchRequests)
			for i := range reqs {
				n++
				c := byte(n % clients)
				reqs[i] = req(c, 1_700_000_000_000_000_000+uint64(n), appendCmd(fmt.Sprint("own-", c), ExpectedAny, ev(n)))
			}
			for _, r := range h.run(reqs...) {
				if r.Code != CodeOK {
					t.Fatalf("%s %s", r.Code, r.Message)
				}
			}
			// After three rounds every client has results, a stream and a memo.
			if b < 3*clients/batchRequests+1 {
				continue
			}
			if off {
				// Without the cache: the client's record, its highest seq
				// (a scan), the stream's version (a scan), the event id, and
				// the ledger's event count.
				if gets != 2*batchRequests+1 || seeks != 2*batchRequests+1 {
					t.Fatalf("without the cache, batch %d: %d reads and %d scans", b, gets, seeks)
				}
				continue
			}
			if gets != 0 || seeks != 1 {
				t.Fatalf("batch %d: %d reads and %d scans for %d appends, want 0 and 1", b, gets, seeks, batchRequests)
			}
		}
	}
}

// After a restart the log has no memos: the highest retained seq is found
// again, and retained, new and too-old seqs are told apart as before.
func TestClientWindowAfterRestart(t *testing.T) {
	opts := eventlog.Options{Dir: t.TempDir()}
	h := openHarness(t, Config{ClientWindow: 2}, opts)
	first := h.runRaw(
		req(1, 10, appendCmd("s", ExpectedAny, ev(1))),
		req(1, 30, appendCmd("s", ExpectedAny, ev(2))),
		req(1, 20, appendCmd("s", ExpectedAny, ev(3))))
	h.reopen(opts)
	again := h.runRaw(
		req(1, 30, appendCmd("s", ExpectedAny, ev(2))),
		req(1, 20, appendCmd("s", ExpectedAny, ev(3))))
	if !bytes.Equal(again[0], first[1]) || !bytes.Equal(again[1], first[2]) {
		t.Fatal("after a restart, retained seqs did not get their stored results")
	}
	h.reopen(opts)
	rs := h.run(
		req(1, 25, appendCmd("s", ExpectedAny, ev(4))),
		req(1, 31, appendCmd("s", ExpectedAny, ev(5))),
		req(1, 24, appendCmd("s", ExpectedAny, ev(6))))
	wantResult(t, "seq 25, between the retained", rs[0], CodeOK, "[4]", 3)
	wantResult(t, "seq 31, above the highest", rs[1], CodeOK, "[5]", 4)
	wantResult(t, "seq 24, below the retained 30 and 31", rs[2], CodeSeqTooOld, "[]", -1)
}
