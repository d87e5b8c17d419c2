package cqrs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/eventlog"
)

func TestBuiltinRows(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	e.Start()
	p1 := l.append("orders-1", ev{"OrderPlaced", `{"x":1}`, false}, ev{"OrderPaid", `{}`, false})
	l.append("other", ev{"OrderPlaced", "raw bytes", true})
	p3 := l.append("orders-1", ev{"OrderShipped", `{}`, false})
	waitAll(t, e, l)

	got, pos, err := e.Get(StreamsProjection, "orders-1")
	if err != nil {
		t.Fatal(err)
	}
	if pos != 4 {
		t.Errorf("position %d, want 4", pos)
	}
	first := formatTime(logBaseTime + int64(1e6))
	last := formatTime(logBaseTime + 3*int64(1e6))
	want := fmt.Sprintf(`{"stream":"orders-1","version":2,"events":3,"first_position":%d,"last_position":%d,"first_time":%q,"last_time":%q}`,
		p1[0], p3[0], first, last)
	if string(got) != want {
		t.Errorf("streams row\n got %s\nwant %s", got, want)
	}
	got, _, err = e.Get(EventTypesProjection, "OrderPlaced")
	if err != nil || string(got) != `{"type":"OrderPlaced","count":2}` {
		t.Errorf("event-types row %s, %v", got, err)
	}
	if _, _, err := e.Get(StreamsProjection, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing row: %v, want ErrNotFound", err)
	}
	if _, _, err := e.Get("nope", "x"); !errors.Is(err, ErrUnknownProjection) {
		t.Errorf("unknown projection: %v, want ErrUnknownProjection", err)
	}
	if got := e.Positions(); got[StreamsProjection] != 4 || got[BalancesProjection] != 4 || got[EventTypesProjection] != 4 {
		t.Errorf("positions %v, want 4 each", got)
	}
}

// TestRebuildEqualsIncremental builds every projection live while the log
// grows, in small batches, then from scratch in large batches, then by
// Rebuild: all three must hold the same rows, byte for byte.
func TestRebuildEqualsIncremental(t *testing.T) {
	l := newTestLog(t)
	inc := openEngine(t, l, Options{Specs: []Spec{ordersSpec}, BatchEventsMax: 7})
	inc.Start()
	newWorkload(l, 1).run(1500)
	waitAll(t, inc, l)

	scratch := openEngine(t, l, Options{Specs: []Spec{ordersSpec}})
	scratch.Start()
	waitAll(t, scratch, l)

	names := []string{StreamsProjection, EventTypesProjection, BalancesProjection, ordersSpec.Name}
	before := make(map[string]map[string]string)
	for _, name := range names {
		before[name] = dump(t, inc, name)
		if len(before[name]) == 0 {
			t.Fatalf("%s: no rows", name)
		}
		sameRows(t, name+" from scratch", dump(t, scratch, name), before[name])
		if a, b := statusOf(inc, name).SkippedEvents, statusOf(scratch, name).SkippedEvents; a != b {
			t.Errorf("%s: skipped %d incrementally, %d from scratch", name, a, b)
		}
	}
	if statusOf(inc, ordersSpec.Name).SkippedEvents == 0 {
		t.Error("orders: no event was skipped; the workload has some without a customer")
	}

	for _, name := range names {
		old := waitState(t, inc, name, "running", func(s runnerState) bool { return s.shadow == nil }).active.gen
		if err := inc.Rebuild(name); err != nil {
			t.Fatal(err)
		}
		waitState(t, inc, name, "rebuilt", func(s runnerState) bool { return s.shadow == nil && s.active.gen != old })
		sameRows(t, name+" rebuilt", dump(t, inc, name), before[name])
	}
}

// stepCounter counts events per stream; its version is in every row, and
// it can block (gate) or fail (on type "Boom") to script scenarios.
type stepCounter struct {
	name    string
	version int
	gate    chan struct{}
	failOn  string
}

func (c *stepCounter) Name() string                  { return c.name }
func (c *stepCounter) Version() int                  { return c.version }
func (c *stepCounter) Wants(ev *eventlog.Event) bool { return true }
func (c *stepCounter) Apply(t Tx, ev *eventlog.Event) error {
	if c.gate != nil {
		<-c.gate
	}
	if c.failOn != "" && ev.Type == c.failOn {
		return fmt.Errorf("cannot apply %s", ev.Type)
	}
	var r struct{ N int }
	if _, err := getRow(t, ev.Stream, &r); err != nil {
		return err
	}
	return t.Set(ev.Stream, fmt.Appendf(nil, `{"stream":%q,"n":%d,"v":%d}`, ev.Stream, r.N+1, c.version))
}

func TestFailingProjectionStopsAtTheEvent(t *testing.T) {
	l := newTestLog(t)
	dir := t.TempDir()
	for i := range 20 {
		l.append(fmt.Sprintf("s-%d", i%3), ev{"Fine", `{}`, false})
	}
	boom := l.append("s-0", ev{"Fine", `{}`, false}, ev{"Boom", `{}`, false}, ev{"Fine", `{}`, false})[1]
	for i := range 10 {
		l.append(fmt.Sprintf("s-%d", i%3), ev{"Fine", `{}`, false})
	}

	for attempt := range 2 {
		e := openEngine(t, l, Options{Dir: dir})
		if err := e.Register(&stepCounter{name: "counter", version: 1, failOn: "Boom"}); err != nil {
			t.Fatal(err)
		}
		e.Start()
		s := waitState(t, e, "counter", "failure", func(s runnerState) bool { return s.active.failure != nil })
		if s.active.failure.position != boom || s.active.position != boom-1 {
			t.Fatalf("attempt %d: failed at %d with position %d, want failure at %d, position %d",
				attempt, s.active.failure.position, s.active.position, boom, boom-1)
		}
		st := statusOf(e, "counter")
		if st.Status != StatusFailed || st.FailedPosition != boom || !strings.Contains(st.Error, "cannot apply Boom") {
			t.Errorf("status %+v", st)
		}
		// The events before the failing one (in the same batch) are applied.
		got, _, err := e.Get("counter", "s-0")
		if err != nil || row(t, got)["n"] != jsonNum(8) {
			t.Errorf("s-0 before the failure: %s, %v; want n 8", got, err)
		}
		// The others keep going.
		for _, name := range []string{StreamsProjection, EventTypesProjection, BalancesProjection} {
			waitAt(t, e, name, l.last())
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// A fixed version rebuilds and resumes.
	e := openEngine(t, l, Options{Dir: dir})
	if err := e.Register(&stepCounter{name: "counter", version: 2}); err != nil {
		t.Fatal(err)
	}
	e.Start()
	waitState(t, e, "counter", "fixed", func(s runnerState) bool {
		return s.shadow == nil && s.active.version == 2 && s.active.position == l.last()
	})
	if st := statusOf(e, "counter"); st.Status != StatusRunning || st.Error != "" {
		t.Errorf("after the fix: %+v", st)
	}
	got, _, err := e.Get("counter", "s-0")
	if err != nil || row(t, got)["n"] != jsonNum(14) {
		t.Errorf("s-0 after the fix: %s, %v; want n 14", got, err)
	}
}

func TestVersionBumpRebuildsInShadow(t *testing.T) {
	l := newTestLog(t)
	dir := t.TempDir()
	for i := range 300 {
		l.append(fmt.Sprintf("s-%02d", i%30), ev{"E", `{}`, false})
	}
	e1 := openEngine(t, l, Options{Dir: dir})
	if err := e1.Register(&stepCounter{name: "counter", version: 1}); err != nil {
		t.Fatal(err)
	}
	e1.Start()
	waitAt(t, e1, "counter", l.last())
	oldPos := l.last()
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}

	gate := make(chan struct{})
	e2 := openEngine(t, l, Options{Dir: dir})
	if err := e2.Register(&stepCounter{name: "counter", version: 2, gate: gate}); err != nil {
		t.Fatal(err)
	}
	e2.Start()
	waitState(t, e2, "counter", "rebuilding", func(s runnerState) bool { return s.shadow != nil })
	for i := range 60 {
		l.append(fmt.Sprintf("s-%02d", i%30), ev{"E", `{}`, false})
	}
	st := statusOf(e2, "counter")
	if st.Status != StatusRebuilding || st.Version != 2 || st.ServingVersion != 1 || st.RebuildPercent >= 100 {
		t.Errorf("while rebuilding: %+v", st)
	}
	// The old rows keep serving, at their old position.
	got, pos, err := e2.Get("counter", "s-07")
	if err != nil || pos != oldPos || string(got) != `{"stream":"s-07","n":10,"v":1}` {
		t.Errorf("during the rebuild: %s at %d, %v", got, pos, err)
	}

	// Every read is one snapshot: all rows of one version, and (as every
	// event counts once) their counts add up to the position they were read at.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			rows, _, pos, err := e2.List("counter", "", ListLimitMax, "")
			if err != nil {
				t.Error(err)
				return
			}
			var sum, version uint64
			for i, r := range rows {
				var c struct{ N, V uint64 }
				if err := json.Unmarshal(r.Data, &c); err != nil {
					t.Error(err)
					return
				}
				if i == 0 {
					version = c.V
				}
				if c.V != version {
					t.Errorf("at position %d rows of versions %d and %d", pos, version, c.V)
					return
				}
				sum += c.N
			}
			if sum != pos || (version == 1 && pos != oldPos) {
				t.Errorf("version %d rows count %d events at position %d", version, sum, pos)
				return
			}
			if version == 2 {
				return
			}
		}
	}()
	close(gate)
	waitState(t, e2, "counter", "swapped", func(s runnerState) bool { return s.shadow == nil && s.active.version == 2 })
	wg.Wait()
	waitAt(t, e2, "counter", l.last())
	got, pos, err = e2.Get("counter", "s-07")
	if err != nil || pos != l.last() || string(got) != `{"stream":"s-07","n":12,"v":2}` {
		t.Errorf("after the swap: %s at %d, %v", got, pos, err)
	}
}

func TestRegisterRules(t *testing.T) {
	l := newTestLog(t)
	e := openEngine(t, l, Options{})
	for _, p := range []Projection{
		&stepCounter{name: StreamsProjection, version: 1},
		&stepCounter{name: "Bad Name", version: 1},
		&stepCounter{name: "neg", version: -1},
	} {
		if err := e.Register(p); err == nil {
			t.Errorf("Register(%s, %d) accepted", p.Name(), p.Version())
		}
	}
	e.Start()
	if err := e.Register(&stepCounter{name: "late", version: 1}); err == nil {
		t.Error("Register after Start accepted")
	}
	if err := e.Rebuild("nope"); !errors.Is(err, ErrUnknownProjection) {
		t.Errorf("Rebuild(nope): %v", err)
	}
	bad := ordersSpec
	bad.Reduce = []Reduce{{Op: "avg", Field: "/x", As: "a"}}
	if _, err := Open(Options{InMemory: true, Log: l.log, Logger: quiet, Specs: []Spec{bad}}); err == nil || !strings.Contains(err.Error(), `op "avg" unknown`) {
		t.Errorf("Open with a bad spec: %v", err)
	}
	if _, err := Open(Options{InMemory: true, Logger: quiet}); err == nil {
		t.Error("Open without a log accepted")
	}
	if _, err := Open(Options{InMemory: true, Log: l.log, BatchEventsMax: BatchEventsMax + 1}); err == nil {
		t.Error("Open with too large a batch accepted")
	}
}

func jsonNum(n int) any { return json.Number(fmt.Sprint(n)) }

// bigRows writes rows of rowBytes under perEvent keys for every event, so a
// batch outgrows one badger transaction.
type bigRows struct {
	perEvent int
	panicOn  string
}

func (b *bigRows) Name() string                  { return "big" }
func (b *bigRows) Version() int                  { return 1 }
func (b *bigRows) Wants(ev *eventlog.Event) bool { return true }
func (b *bigRows) Apply(t Tx, ev *eventlog.Event) error {
	if ev.Type == b.panicOn {
		panic("boom")
	}
	n := b.perEvent
	if ev.Type == "Huge" {
		n = 8
	}
	pad := strings.Repeat("x", 400<<10)
	for i := range n {
		if err := t.Set(fmt.Sprintf("%d-%d", ev.Position, i), fmt.Appendf(nil, `{"pad":%q}`, pad)); err != nil {
			return err
		}
	}
	return nil
}

// TestBatchSplitsWhenTooBigForATransaction: a batch whose writes outgrow a
// badger transaction is committed in shorter pieces; one event whose own
// writes do not fit stops the projection, visibly.
func TestBatchSplitsWhenTooBigForATransaction(t *testing.T) {
	l := newTestLog(t)
	for range 20 {
		l.append("s", ev{"Big", `{}`, false})
	}
	huge := l.append("s", ev{"Huge", `{}`, false})[0]
	e := openEngine(t, l, Options{})
	if err := e.Register(&bigRows{perEvent: 1}); err != nil {
		t.Fatal(err)
	}
	e.Start()
	s := waitState(t, e, "big", "failure", func(s runnerState) bool { return s.active.failure != nil })
	if s.active.position != huge-1 || s.active.failure.position != huge || !strings.Contains(s.active.failure.err, "exceed one transaction") {
		t.Errorf("position %d, failure %+v; want every event before %d applied and a failure at it", s.active.position, s.active.failure, huge)
	}
	if rows := dump(t, e, "big"); len(rows) != 20 {
		t.Errorf("%d rows, want 20", len(rows))
	}
}

func TestPanickingApplyStopsTheProjection(t *testing.T) {
	l := newTestLog(t)
	l.append("s", ev{"Fine", `{}`, false}, ev{"Panic", `{}`, false})
	e := openEngine(t, l, Options{})
	if err := e.Register(&bigRows{panicOn: "Panic"}); err != nil {
		t.Fatal(err)
	}
	e.Start()
	waitState(t, e, "big", "failure", func(s runnerState) bool { return s.active.failure != nil })
	if st := statusOf(e, "big"); st.Status != StatusFailed || st.FailedPosition != 2 || !strings.Contains(st.Error, "apply panicked: boom") {
		t.Errorf("status %+v", st)
	}
}

// TestDroppedGenerationsAreDeleted: after a rebuild swaps in, nothing of the
// old generation stays in the store.
func TestDroppedGenerationsAreDeleted(t *testing.T) {
	l := newTestLog(t)
	newWorkload(l, 5).run(200)
	e := openEngine(t, l, Options{})
	e.Start()
	waitAll(t, e, l)
	old := waitState(t, e, StreamsProjection, "running", func(s runnerState) bool { return true }).active.gen
	if err := e.Rebuild(StreamsProjection); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, StreamsProjection, "rebuilt", func(s runnerState) bool { return s.shadow == nil && s.active.gen != old })
	// The cleaner may be at it too; deleting twice is harmless.
	if err := e.dropMarkedGens(); err != nil {
		t.Fatal(err)
	}
	err := e.view(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{genKey(prefixRow, old, ""), genKey(prefixState, old, ""), checkpointKey(old), dropKey(old)} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			it.Seek(prefix)
			left := it.ValidForPrefix(prefix)
			it.Close()
			if left {
				t.Errorf("keys under %x remain", prefix)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
