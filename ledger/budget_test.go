package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/eventlog"
)

// used is how much of the write budget tx has used.
func used(tx *eventlog.Tx) cost {
	w, b := tx.Room()
	return cost{writes: eventlog.BatchWritesMax - w, bytes: eventlog.BatchWriteBytesMax - b}
}

func (c cost) within(bound cost) bool {
	return c.writes <= bound.writes && c.bytes <= bound.bytes && c.results <= bound.results
}

// longID is an id of exactly n bytes that starts with prefix.
func longID(prefix string, n int) string {
	return prefix + strings.Repeat("x", n-len(prefix))
}

// The bounds the ledger reserves room by must hold for the largest
// operations and results it makes: ids of the longest kind, pending
// transfers with deadlines, posts and voids, failures with the longest
// messages, and expiries.
func TestWriteBounds(t *testing.T) {
	h := newLedgerHarness(t, Config{})
	var got cost
	h.inspect = func(tx *eventlog.Tx) { got = used(tx) }
	checkBatch := func(what string, items []int, raw [][]byte) {
		t.Helper()
		bound := eventCountCost
		for i, n := range items {
			bound = bound.plus(opCost.plus(opFlushCost).times(n)).plus(itemsWindowCost(n))
			if len(raw[i]) > resultBytesBound(n) {
				t.Fatalf("%s: result %d of %d bytes, bound %d", what, i, len(raw[i]), resultBytesBound(n))
			}
		}
		if !got.within(bound) {
			t.Fatalf("%s: wrote %+v, bound %+v", what, got, bound)
		}
		t.Logf("%s: wrote %+v of the bound %+v", what, got, bound)
	}
	acct := func(i int) string { return longID(fmt.Sprintf("a%d-", i), AccountIDBytesMax) }
	xfer := func(kind string, i int) string { return longID(fmt.Sprintf("%s%d-", kind, i), TransferIDBytesMax) }
	var opens []LedgerOp
	for i := range 8 {
		opens = append(opens, LedgerOp{CreateAccount: &CreateAccountCommand{ID: acct(i), Code: 1, OwnerKey: client(1)}})
	}
	h.seq++
	r := req(1, h.seq, opsCmd(opens...))
	checkBatch("create accounts", []int{len(opens)}, h.runRaw(r))

	// Pending transfers with deadlines, each between other accounts.
	const n = 64
	var pend []LedgerOp
	for i := range n {
		pend = append(pend, LedgerOp{Transfer: &TransferCommand{ID: xfer("p", i), DebitAccount: acct(i % 8), CreditAccount: acct((i + 1) % 8),
			Amount: 1, Code: 1, Pending: true, TimeoutMs: uint64(1000 + i%2*1_000_000)}})
	}
	h.seq++
	checkBatch("pending transfers", []int{n}, h.runRawAt(1e9, req(1, h.seq, opsCmd(pend...))))

	// Posts and voids of the long-lived half, and failures with long messages.
	var settle []LedgerOp
	for i := 1; i < n; i += 2 {
		if i%4 == 1 {
			settle = append(settle, LedgerOp{PostPending: &PostPendingCommand{ID: xfer("s", i), PendingID: xfer("p", i)}})
		} else {
			settle = append(settle, LedgerOp{VoidPending: &VoidPendingCommand{ID: xfer("s", i), PendingID: xfer("p", i)}})
		}
	}
	h.seq++
	settleReq := req(1, h.seq, opsCmd(settle...))
	h.seq++
	mismatch := req(1, h.seq, xferCmd(TransferCommand{ID: xfer("m", 0), DebitAccount: acct(0), CreditAccount: acct(1), Amount: 1, Code: 2}))
	h.seq++
	failing := req(1, h.seq, opsCmd(settle...))
	// At 3 s the short-lived half has expired: the batch starts with n/2
	// expiries, bounded like operations.
	raw := h.runRawAt(3e9, settleReq, mismatch, failing)
	checkBatch("expiries, settlements and failures", []int{len(settle) + n/2, 1, len(settle)}, raw)
	if res := decodeResults(t, raw); res[0].Code != CodeOK || res[1].Code != CodeCodeMismatch || res[2].Code != CodeExists {
		t.Fatalf("settlements %s, mismatch %s, retry %s", res[0].Code, res[1].Code, res[2].Code)
	}
	evs, _, err := h.log.ReadAll(1, 0)
	if err != nil || len(evs) == 0 {
		t.Fatalf("read %d events: %v", len(evs), err)
	}
	for _, ev := range evs {
		if b := codec.MustMarshal(&ev); len(b) > ledgerEventBytesMax {
			t.Fatalf("ledger event %d of %d bytes, bound %d", ev.Position, len(b), ledgerEventBytesMax)
		}
	}
}

// tinyAppend is an append of n one-byte events, with ids from first on.
func tinyAppend(stream string, first, n int) []byte {
	evs := make([]EventData, n)
	for i := range evs {
		evs[i].ID[0] = 0x20
		binary.BigEndian.PutUint64(evs[i].ID[8:], uint64(first+i))
		evs[i].Type = "t"
		evs[i].Data = []byte{'1'}
		evs[i].ContentType = ContentJSON
	}
	return appendCmd(stream, ExpectedAny, evs...)
}

// A batch of appends of many tiny events (1.3 MB of commands, within
// batch_bytes_max) used to exceed badger's transaction and stop every
// replica. Now the appends that do not fit get CodeBatchFull, alike on every
// replica, the batch commits, and they go through when submitted again.
func TestBatchOfTinyEventsFillsUp(t *testing.T) {
	cfg := Config{}
	h, twin := newHarness(t, cfg), newHarness(t, cfg)
	const appends, perAppend = 60, 1000
	var reqs []Request
	for i := range appends {
		reqs = append(reqs, req(1, uint64(i+1), tinyAppend(fmt.Sprintf("s%d", i%3), i*perAppend, perAppend)))
	}
	raw := h.runRaw(reqs...)
	if twinRaw := twin.runRaw(reqs...); !slices.EqualFunc(raw, twinRaw, bytes.Equal) {
		t.Fatal("the twin log got other results")
	}
	var full []Request
	ok := 0
	for i, r := range decodeResults(t, raw) {
		switch r.Code {
		case CodeOK:
			if len(full) > 0 {
				t.Fatalf("append %d went through after a full one", i)
			}
			ok++
		case CodeBatchFull:
			if len(r.Positions) != 0 || r.Message == "" {
				t.Fatalf("batch_full result %+v", r)
			}
			full = append(full, req(1, uint64(appends+len(full)+1), reqs[i].Command))
		default:
			t.Fatalf("append %d: %s %q", i, r.Code, r.Message)
		}
	}
	if ok == 0 || len(full) == 0 {
		t.Fatalf("%d appends went through and %d were full, want some of each", ok, len(full))
	}
	e, err := h.log.Entry(1)
	if err != nil || e.EventCount != uint64(ok*perAppend) {
		t.Fatalf("entry 1 holds %d events (%v), want %d", e.EventCount, err, ok*perAppend)
	}
	// Submitted again, the full ones go through over the next batches.
	for len(full) > 0 {
		res := h.run(full...)
		var again []Request
		for i, r := range res {
			if r.Code == CodeBatchFull {
				again = append(again, req(1, full[len(full)-1].ClientSeq+uint64(len(again)+1), full[i].Command))
			} else if r.Code != CodeOK {
				t.Fatalf("resubmitted append: %s %q", r.Code, r.Message)
			}
		}
		if len(again) == len(full) {
			t.Fatal("a batch of resubmitted appends made no progress")
		}
		full = again
	}
	seq, _ := h.log.Applied()
	last, err := h.log.Entry(seq)
	if err != nil || last.FirstPosition+last.EventCount-1 != appends*perAppend {
		t.Fatalf("log ends at entry %+v (%v), want position %d", last, err, appends*perAppend)
	}
}

// Expiries stop where the budget would not keep room for a result per
// request; the rest expire in the next batch.
func TestExpiriesWithinBudget(t *testing.T) {
	h := newLedgerHarness(t, Config{})
	h.do(1, openCmd("src", 1, 1, 0))
	h.do(1, openCmd("dst", 1, 1, 0))
	const pending = 1024
	var ops []Request
	for c := range 4 {
		var cmd []LedgerOp
		for i := range pending / 4 {
			id := fmt.Sprintf("p%d", c*pending/4+i)
			cmd = append(cmd, LedgerOp{Transfer: &TransferCommand{ID: id, DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1, Pending: true, TimeoutMs: 1}})
		}
		h.seq++
		ops = append(ops, req(1, h.seq, opsCmd(cmd...)))
	}
	for i, r := range h.runAt(10e9, ops...) {
		if r.Code != CodeOK {
			t.Fatalf("pending command %d: %s %q", i, r.Code, r.Message)
		}
	}
	expired := func(seq uint64) int {
		e, err := h.log.Entry(seq)
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := h.log.ReadAll(e.FirstPosition, int(e.EventCount))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range evs {
			if ev.Type == EventPendingExpired {
				n++
			}
		}
		return n
	}
	bad := make([]Request, RequestsPerBatchMax)
	for i := range bad {
		h.seq++
		bad[i] = req(2, h.seq, []byte("not a command"))
	}
	h.runAt(20e9, bad...)
	seq, _ := h.log.Applied()
	first := expired(seq)
	if first == 0 || first >= pending {
		t.Fatalf("a batch of %d requests expired %d of %d pending transfers, want some but not all", len(bad), first, pending)
	}
	h.runAt(21e9, req(2, h.seq+1, []byte("not a command")))
	if second := expired(seq + 1); first+second != pending {
		t.Fatalf("expired %d then %d of %d", first, second, pending)
	}
}

// The largest commands the limits allow fit an otherwise empty batch, so
// none is refused as batch_full for good: an ops command by its bound, and an
// append of eventsPerAppendLimit events of CommandBytesMax by executing it.
func TestLargestCommandsFitABatch(t *testing.T) {
	ops := opCost.plus(opFlushCost).times(opsPerCommandLimit).plus(itemsWindowCost(opsPerCommandLimit)).plus(eventCountCost)
	if !ops.within(cost{eventlog.BatchWritesMax, eventlog.BatchWriteBytesMax, ResultsBytesMax}) {
		t.Fatalf("an ops command of %d operations may write %+v", opsPerCommandLimit, ops)
	}
	h := newHarness(t, Config{EventsPerAppendMax: eventsPerAppendLimit})
	evs := make([]EventData, eventsPerAppendLimit)
	typ := strings.Repeat("t", EventTypeBytesMax)
	for i := range evs {
		evs[i].ID[0] = 0x40
		binary.BigEndian.PutUint64(evs[i].ID[8:], uint64(i))
		evs[i].Type = typ
	}
	stream := longID("s", NameBytesMax)
	cmd := appendCmd(stream, ExpectedAny, evs...)
	per := (CommandBytesMax - len(cmd)) / len(evs)
	for i := range evs {
		evs[i].Data = bytes.Repeat([]byte{'d'}, per-4)
	}
	cmd = appendCmd(stream, ExpectedAny, evs...)
	if len(cmd) > CommandBytesMax || len(cmd) < CommandBytesMax*9/10 {
		t.Fatalf("command of %d bytes, want just under %d", len(cmd), CommandBytesMax)
	}
	if r := h.one(req(1, 1, cmd)); r.Code != CodeOK {
		t.Fatalf("the largest append: %s %q", r.Code, r.Message)
	}
}

// Results that write nothing are bounded too (ResultsBytesMax): an
// idempotent retry of a large append lists every position, and so does a
// client seq executed before, answered from the window. A batch of either
// refuses the results that do not fit, and its entry stays within the
// bound. On disk: an in-memory store takes no value over 1 MiB.
func TestBatchOfLargeResultsFillsUp(t *testing.T) {
	h := newDiskHarness(t, Config{})
	cmd := tinyAppend("retried", 0, 1000)
	if r := h.one(req(1, 1, cmd)); r.Code != CodeOK {
		t.Fatalf("first append: %s %q", r.Code, r.Message)
	}
	// About 3 KB per result: 2,048 of them are over 5 MiB.
	const n = 2048
	check := func(what string, reqs []Request, wantFull bool) {
		t.Helper()
		ok, full := 0, 0
		for i, r := range h.run(reqs...) {
			switch {
			case r.Code == CodeOK && len(r.Positions) == 1000:
				ok++
			case r.Code == CodeBatchFull && len(r.Positions) == 0:
				full++
			default:
				t.Fatalf("%s %d: %s with %d positions", what, i, r.Code, len(r.Positions))
			}
		}
		if ok == 0 || (full > 0) != wantFull {
			t.Fatalf("%s: %d answered and %d full", what, ok, full)
		}
		seq, _ := h.log.Applied()
		e, err := h.log.Entry(seq)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, r := range e.Results {
			total += len(r)
		}
		if total > ResultsBytesMax {
			t.Fatalf("%s: results of %d bytes", what, total)
		}
	}
	retries := make([]Request, n)
	for i := range retries {
		retries[i] = req(2, uint64(i+1), cmd)
	}
	check("retry", retries, true)

	repeats := make([]Request, n)
	for i := range repeats {
		repeats[i] = req(3, uint64(i+1), cmd)
	}
	check("first half", repeats[:n/2], false)
	check("second half", repeats[n/2:], false)
	check("repeat", repeats, true)
}
