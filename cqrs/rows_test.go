package cqrs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/eventlog"
)

// wideStreams is how many streams hotWorkload writes to once per pass: more
// than one transaction keeps decoded and than one generation caches.
const wideStreams = rowsCachedMax + txnRowsChangedMax

// hotWorkload appends events that hit few keys many times: transfers among
// four accounts (posted, pending and resolved, some to the account itself),
// orders by three customers on three streams (some skipped by the orders
// spec), and `ordo bench`'s shape (benchClients streams, one type). Then it
// writes to wideStreams streams, twice over.
func hotWorkload(l *testLog, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	const accounts = 4
	for i := range accounts {
		s, typ, d := account(fmt.Sprintf("a%d", i), 1+i)
		l.append(s, ev{typ, d, false})
	}
	type reservation struct {
		id, debit, credit string
		amount            uint64
	}
	var pending []reservation
	for i := range 1500 {
		switch k := rng.IntN(10); {
		case k < 3:
			r := reservation{
				id:     fmt.Sprintf("t%d", i),
				debit:  fmt.Sprintf("a%d", rng.IntN(accounts)),
				credit: fmt.Sprintf("a%d", rng.IntN(accounts)),
				amount: 1 + rng.Uint64N(1000),
			}
			p := rng.IntN(3) == 0
			if p {
				pending = append(pending, r)
			}
			s, typ, d := transfer(r.id, r.debit, r.credit, r.amount, p)
			l.append(s, ev{typ, d, false})
		case k == 3 && len(pending) > 0:
			r := pending[0]
			pending = pending[1:]
			typ := []string{typePendingPosted, typePendingVoided, typePendingExpired}[rng.IntN(3)]
			s, typ, d := resolve(typ, r.id, r.debit, r.credit, rng.Uint64N(r.amount+1))
			l.append(s, ev{typ, d, false})
		case k < 6:
			evs := make([]ev, 1+rng.IntN(5))
			for j := range evs {
				evs[j] = ev{"OrderPlaced", fmt.Sprintf(`{"customer":"c%d","total":%d,"status":%q,"sku":"s%d"}`,
					rng.IntN(3), rng.IntN(500)-100, []string{"new", "paid"}[rng.IntN(2)], rng.IntN(4)), false}
				switch rng.IntN(8) {
				case 0:
					evs[j] = ev{"OrderPlaced", `{"total":5}`, false}
				case 1:
					evs[j] = ev{"OrderNote", `{"customer":"c1"}`, false}
				}
			}
			l.append(fmt.Sprintf("order-%d", rng.IntN(3)), evs...)
		default:
			l.append(fmt.Sprintf("bench-run-%d", i%benchClients), ev{"bench", benchPayload, false})
		}
	}
	for range 2 {
		for i := range wideStreams {
			l.append(fmt.Sprintf("wide-%d", i), ev{"Wide", `{}`, false})
		}
	}
}

// projectedRows are a projection's rows (key to JSON) and skipped events.
type projectedRows struct {
	rows    map[string]string
	skipped uint64
}

// perEventRows applies every event of the log to the built-in projections
// and the orders spec over a memTx, one event at a time: every row is read,
// decoded, encoded and written for each event, as the engine did before it
// kept rows decoded.
func perEventRows(t *testing.T, l *testLog) map[string]projectedRows {
	t.Helper()
	orders, err := compileSpec(ordersSpec)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]projectedRows)
	for _, p := range []Projection{streamsProjection{}, eventTypesProjection{}, balancesProjection{}, orders} {
		tx := newMemTx()
		var skipped uint64
		for from := uint64(1); from <= l.last(); {
			evs, next, err := l.log.ReadAll(from, eventlog.ReadLimitMax)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs {
				if !p.Wants(&evs[i]) {
					continue
				}
				switch err := p.Apply(tx, &evs[i]); {
				case errors.Is(err, ErrSkip):
					skipped++
				case err != nil:
					t.Fatalf("%s at %d: %v", p.Name(), evs[i].Position, err)
				}
			}
			from = next
		}
		rows := make(map[string]string, len(tx.rows))
		for k, v := range tx.rows {
			rows[k] = string(v)
		}
		out[p.Name()] = projectedRows{rows: rows, skipped: skipped}
	}
	return out
}

// sameProjections fails unless the engine holds want's rows and skip counts.
func sameProjections(t *testing.T, what string, e *Engine, want map[string]projectedRows) {
	t.Helper()
	for name, w := range want {
		sameRows(t, what+": "+name, dump(t, e, name), w.rows)
		if got := statusOf(e, name).SkippedEvents; got != w.skipped {
			t.Errorf("%s: %s skipped %d events, one event at a time %d", what, name, got, w.skipped)
		}
	}
}

// TestBatchedRowsEqualPerEvent: the rows the engine builds in transactions
// of many events on the same keys — keeping rows decoded within a
// transaction and across transactions — are those that applying and
// storing one event at a time builds.
func TestBatchedRowsEqualPerEvent(t *testing.T) {
	l := newTestLog(t)
	live := openEngine(t, l, Options{Dir: t.TempDir(), Specs: []Spec{ordersSpec}})
	live.Start()
	hotWorkload(l, 1)
	want := perEventRows(t, l)

	if n, events := len(want[BalancesProjection].rows), l.last(); n != 4 || events < 4000 {
		t.Fatalf("workload: %d accounts, %d events; want 4 accounts and thousands of events", n, events)
	}
	var counted uint64
	for k, row := range want[EventTypesProjection].rows {
		var r typeRow
		if err := json.Unmarshal([]byte(row), &r); err != nil || r.Type != k {
			t.Fatalf("event-types row %q: %s, %v", k, row, err)
		}
		counted += r.Count
	}
	if n := len(want[EventTypesProjection].rows); counted != l.last() || n != 9 {
		t.Fatalf("event-types: %d rows counting %d events, want 9 counting %d", n, counted, l.last())
	}
	if want[ordersSpec.Name].skipped == 0 {
		t.Fatal("orders: the workload skipped nothing")
	}

	for _, c := range []struct {
		name string
		opts Options
	}{
		{"one event per transaction", Options{BatchEventsMax: 1}},
		{"batches of 100", Options{Dir: t.TempDir(), BatchEventsMax: 100}},
		{"batches of the most events", Options{Dir: t.TempDir()}},
	} {
		c.opts.Specs = []Spec{ordersSpec}
		e := openEngine(t, l, c.opts)
		e.Start()
		waitAll(t, e, l)
		sameProjections(t, c.name, e, want)
	}
	waitAll(t, live, l)
	sameProjections(t, "following the log live", live, want)
}

// TestCrashWithRowsKeptDecoded: crashes before and after commits of
// transactions of many events on the same keys, whose rows the engine keeps
// decoded from one transaction to the next, lose no event and apply none
// twice.
func TestCrashWithRowsKeptDecoded(t *testing.T) {
	l := newTestLog(t)
	hotWorkload(l, 2)
	crashAndReopen(t, l, 150)
}

// TestFailedTransactionLeavesNoChangedRow: when an event fails in the middle
// of a transaction, the rows its events had changed in place are not what
// the shorter transaction that replaces it starts from, and the projection
// stops at the event, visibly.
func TestFailedTransactionLeavesNoChangedRow(t *testing.T) {
	l := newTestLog(t)
	ref := &ledgerEvents{t: t, tx: newMemTx()}
	appendBoth := func(stream, typ, data string) uint64 {
		ref.must(stream, typ, data)
		return l.append(stream, ev{typ, data, false})[0]
	}
	for _, id := range []string{"A", "B", "X"} {
		appendBoth(account(id, 1))
	}
	// The first transaction (five events) commits A, B and X, so the
	// second finds them cached, changes A twice and fails on the third
	// event, after changing A again: B's credits overflow.
	appendBoth(transfer("T1", "X", "B", math.MaxUint64-10, false))
	appendBoth(transfer("T2", "A", "X", 5, false))
	appendBoth(transfer("T3", "A", "X", 1, false))
	last := appendBoth(transfer("T4", "A", "X", 1, false))
	s, typ, d := transfer("T5", "A", "B", 20, false)
	bad := l.append(s, ev{typ, d, false})[0]

	e := openEngine(t, l, Options{Dir: t.TempDir(), BatchEventsMax: 5})
	e.Start()
	waitState(t, e, BalancesProjection, "failure", func(s runnerState) bool { return s.active.failure != nil })
	st := statusOf(e, BalancesProjection)
	if st.Status != StatusFailed || st.FailedPosition != bad || st.Position != last || !strings.Contains(st.Error, "overflows") {
		t.Errorf("balances after an overflow: %+v", st)
	}
	want := make(map[string]string)
	for k, v := range ref.tx.rows {
		want[k] = string(v)
	}
	sameRows(t, "balances before the overflow", dump(t, e, BalancesProjection), want)
	if !strings.Contains(want["A"], `"debits_posted":7,`) {
		t.Errorf("reference row A: %s", want["A"])
	}
}

// TestDiscardedTransactionLeavesCacheAsCommitted: a transaction that does
// not commit leaves the rows cached between transactions as the last commit
// left them, so applying its events again counts them once.
func TestDiscardedTransactionLeavesCacheAsCommitted(t *testing.T) {
	l := newTestLog(t)
	projections := []Projection{streamsProjection{}, eventTypesProjection{}}
	e, err := open(Options{Dir: t.TempDir(), Log: l.log, Logger: quiet}, projections)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var feed benchFeed
	batches := make([][]eventlog.Event, 3*benchClients/benchBatchEvents)
	for i := range batches {
		batches[i] = feed.batch(benchBatchEvents)
	}
	crash := false
	e.testHook = func(p hookPoint, _ string, _ uint64) bool { return crash && p == beforeCommit }
	for _, p := range projections {
		r, err := e.runner(p.Name())
		if err != nil {
			t.Fatal(err)
		}
		tx := newMemTx()
		for i, evs := range batches {
			if i%2 == 1 {
				crash = true
				if _, err := r.applyTxn(&r.active, evs); !errors.Is(err, errCrash) {
					t.Fatalf("%s: %v, want the simulated crash", p.Name(), err)
				}
				crash = false
			}
			commitBatch(t, r, evs)
			for j := range evs {
				if err := p.Apply(tx, &evs[j]); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := make(map[string]string)
		for k, v := range tx.rows {
			want[k] = string(v)
		}
		sameRows(t, p.Name(), dump(t, e, p.Name()), want)
	}
}

// paddedRow is a built-in row of any size, for paddedRows.
type paddedRow struct {
	N   int    `json:"n"`
	Pad string `json:"pad"`
}

func (r *paddedRow) appendJSON(b []byte) []byte {
	return fmt.Appendf(b, `{"n":%d,"pad":%q}`, r.N, r.Pad)
}

// paddedRows keeps rows decoded as the built-ins do: per event it counts
// in one shared row and keeps a large row of its own (eight for "Huge"), so
// that a batch's rows outgrow one badger transaction only when written.
type paddedRows struct{}

func (paddedRows) Name() string                  { return "padded" }
func (paddedRows) Version() int                  { return 1 }
func (paddedRows) Wants(ev *eventlog.Event) bool { return true }
func (paddedRows) Apply(t Tx, ev *eventlog.Event) error {
	count, _, err := loadRow[paddedRow](t, "count")
	if err != nil {
		return err
	}
	count.N++
	if err := keepRow(t, "count", count); err != nil {
		return err
	}
	n := 1
	if ev.Type == "Huge" {
		n = 8
	}
	for i := range n {
		if err := keepRow(t, fmt.Sprintf("%d-%d", ev.Position, i), &paddedRow{N: i, Pad: strings.Repeat("x", 400<<10)}); err != nil {
			return err
		}
	}
	return nil
}

// TestKeptRowsSplitWhenTooBigForATransaction: rows kept decoded that
// outgrow a badger transaction when written make the engine commit fewer
// events at a time; one event whose rows alone do not fit stops the
// projection, visibly.
func TestKeptRowsSplitWhenTooBigForATransaction(t *testing.T) {
	l := newTestLog(t)
	for range 20 {
		l.append("s", ev{"Big", `{}`, false})
	}
	huge := l.append("s", ev{"Huge", `{}`, false})[0]
	e := openEngine(t, l, Options{})
	if err := e.Register(paddedRows{}); err != nil {
		t.Fatal(err)
	}
	e.Start()
	s := waitState(t, e, "padded", "failure", func(s runnerState) bool { return s.active.failure != nil })
	if s.active.position != huge-1 || s.active.failure.position != huge || !strings.Contains(s.active.failure.err, "exceed one transaction") {
		t.Errorf("position %d, failure %+v; want every event before %d applied and a failure at it", s.active.position, s.active.failure, huge)
	}
	rows := dump(t, e, "padded")
	if len(rows) != 21 || rows["count"] != `{"n":20,"pad":""}` {
		t.Errorf("%d rows, count %s; want 21 rows, a count of 20", len(rows), rows["count"])
	}
}

// tickRows counts "Tick" events in a row it keeps decoded, and stores
// tickStateBytes of private state for every event, straight into the badger
// transaction: six events fit in one transaction, seven do not. A Tick
// changes its row before its state makes the transaction too big.
type tickRows struct{}

// tickStateBytes is 2/13 of badger's transaction limit (15% of the memtable).
const tickStateBytes = memTableBytes * 15 / 100 / 13 * 2

func (tickRows) Name() string                  { return "ticks" }
func (tickRows) Version() int                  { return 1 }
func (tickRows) Wants(ev *eventlog.Event) bool { return true }
func (tickRows) Apply(t Tx, ev *eventlog.Event) error {
	var ticks *paddedRow
	if ev.Type == "Tick" {
		var err error
		if ticks, _, err = loadRow[paddedRow](t, "ticks"); err != nil {
			return err
		}
		ticks.N++
	}
	if err := t.SetState(strconv.FormatUint(ev.Position, 10), make([]byte, tickStateBytes)); err != nil {
		return err
	}
	if ticks == nil {
		return nil
	}
	return keepRow(t, "ticks", ticks)
}

// TestSplitTransactionLeavesNoChangedRowCached: an event that changes a
// cached row and then makes its transaction too big is applied again in the
// next transaction, from the row as committed, not as it changed it.
func TestSplitTransactionLeavesNoChangedRowCached(t *testing.T) {
	l := newTestLog(t)
	// Transactions of six events: the first commits the Tick's row, the
	// second takes it from the cache on the Tick, its seventh event.
	l.append("s", ev{"Tick", `{}`, false})
	for range 11 {
		l.append("s", ev{"Pad", `{}`, false})
	}
	l.append("s", ev{"Tick", `{}`, false})
	for range 3 {
		l.append("s", ev{"Pad", `{}`, false})
	}
	e := openEngine(t, l, Options{})
	if err := e.Register(tickRows{}); err != nil {
		t.Fatal(err)
	}
	e.Start()
	waitAt(t, e, "ticks", l.last())
	if got, _, err := e.Get("ticks", "ticks"); err != nil || string(got) != `{"n":2,"pad":""}` {
		t.Errorf("ticks row %s, %v; want a count of 2", got, err)
	}
}

// TestBuiltinRowsEncodeAsJSONMarshal: the hand-written encoders write what
// json.Marshal wrote before them, byte for byte, whatever the text.
func TestBuiltinRowsEncodeAsJSONMarshal(t *testing.T) {
	texts := []string{"", "orders-1", "a.b:c@d_e-f", `quote " and \ backslash`, "<html> & more", "tab\tnew\nline\x00\x1f\x7f",
		"é ü 日本", "\u2028\u2029", "bad \xff\xfe utf-8", strings.Repeat("x", RowKeyBytesMax)}
	for _, s := range texts {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString([]byte("prefix"), s); string(got) != "prefix"+string(want) {
			t.Errorf("string %q: %s, want %s", s, got, want)
		}
	}
	nums := []uint64{0, 1, 1 << 63, math.MaxUint64}
	for i, s := range texts {
		n := nums[i%len(nums)]
		sr := streamRow{Stream: s, Version: n, Events: n + 1, FirstPosition: 1, LastPosition: n, FirstTime: formatTime(int64(n >> 1)), LastTime: s}
		want, err := json.Marshal(&sr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sr.appendJSON(nil); string(got) != string(want) {
			t.Errorf("streams row\n got %s\nwant %s", got, want)
		}
		tr := typeRow{Type: s, Count: n}
		if want, _ = json.Marshal(&tr); string(tr.appendJSON(nil)) != string(want) {
			t.Errorf("event-types row\n got %s\nwant %s", tr.appendJSON(nil), want)
		}
		for _, debits := range []uint64{0, n, math.MaxUint64 - n} {
			ar := accountRow{Account: s, Code: n, DebitsPosted: debits, CreditsPosted: n, DebitsPending: n / 3, CreditsPending: 7, LastTransfer: texts[(i+1)%len(texts)]}
			// The row as balances wrote it with json.Marshal, balance included.
			balance := strconv.FormatUint(ar.CreditsPosted-ar.DebitsPosted, 10)
			if ar.DebitsPosted > ar.CreditsPosted {
				balance = "-" + strconv.FormatUint(ar.DebitsPosted-ar.CreditsPosted, 10)
			}
			want, err := json.Marshal(struct {
				Account        string      `json:"account"`
				Code           uint64      `json:"code"`
				DebitsPosted   uint64      `json:"debits_posted"`
				CreditsPosted  uint64      `json:"credits_posted"`
				DebitsPending  uint64      `json:"debits_pending"`
				CreditsPending uint64      `json:"credits_pending"`
				Balance        json.Number `json:"balance"`
				LastTransfer   string      `json:"last_transfer"`
			}{ar.Account, ar.Code, ar.DebitsPosted, ar.CreditsPosted, ar.DebitsPending, ar.CreditsPending, json.Number(balance), ar.LastTransfer})
			if err != nil {
				t.Fatal(err)
			}
			if got := ar.appendJSON(nil); string(got) != string(want) {
				t.Errorf("balances row\n got %s\nwant %s", got, want)
			}
		}
	}
}

// TestRowCacheBound: a generation caches at most rowsCachedMax rows, the
// latest to enter, and a row a transaction took is not cached until put
// back.
func TestRowCacheBound(t *testing.T) {
	var c rowCache
	for i := range rowsCachedMax + 10 {
		c.put(strconv.Itoa(i), &typeRow{Count: uint64(i)})
		c.put(strconv.Itoa(i), &typeRow{Count: uint64(i) + 1})
	}
	if len(c.rows) != rowsCachedMax || len(c.ring) != rowsCachedMax {
		t.Errorf("%d rows, %d keys in the ring; want %d", len(c.rows), len(c.ring), rowsCachedMax)
	}
	for i := range 10 {
		if _, ok := c.take(strconv.Itoa(i)); ok {
			t.Errorf("row %d, among the oldest, is still cached", i)
		}
	}
	for _, i := range []int{10, rowsCachedMax + 9} {
		key := strconv.Itoa(i)
		row, ok := c.take(key)
		if !ok || row.(*typeRow).Count != uint64(i)+1 {
			t.Fatalf("row %d: %v, %v; want its latest value", i, row, ok)
		}
		if _, ok := c.take(key); ok {
			t.Errorf("row %d is still cached once taken", i)
		}
		c.put(key, row)
		if _, ok := c.take(key); !ok {
			t.Errorf("row %d is not cached once put back", i)
		}
	}
	if len(c.rows) != rowsCachedMax {
		t.Errorf("%d rows after taking and putting back; want %d", len(c.rows), rowsCachedMax)
	}
}
