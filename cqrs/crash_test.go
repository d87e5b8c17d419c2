package cqrs

import (
	"fmt"
	"sync"
	"testing"
)

// TestCrashBetweenApplyAndCheckpoint kills every projection's goroutine in
// the middle of its work — after its rows were written in a transaction but
// before the commit, and again after the commit but before the engine
// learned of it — then reopens the store. The result must be what applying
// the log one event at a time produces: no event lost, none applied twice.
func TestCrashBetweenApplyAndCheckpoint(t *testing.T) {
	l := newTestLog(t)
	newWorkload(l, 3).run(700)
	crashAndReopen(t, l, 13)
}

// crashAndReopen crashes every projection once its transactions of at most
// batch events reach the middle of the log, before a commit and then after
// one, reopens the store and compares the rows with applying the log one
// event at a time.
func crashAndReopen(t *testing.T, l *testLog, batch int) {
	t.Helper()
	want := perEventRows(t, l)
	names := []string{StreamsProjection, EventTypesProjection, BalancesProjection, ordersSpec.Name}

	for _, point := range []hookPoint{beforeCommit, afterCommit} {
		dir := t.TempDir()
		e := openEngine(t, l, Options{Dir: dir, Specs: []Spec{ordersSpec}, BatchEventsMax: batch})
		var (
			mu      sync.Mutex
			crashed = make(map[string]uint64)
			all     sync.WaitGroup
		)
		all.Add(len(names))
		crashAt := l.last() / 2
		e.testHook = func(p hookPoint, name string, through uint64) bool {
			mu.Lock()
			defer mu.Unlock()
			if p != point || through < crashAt || crashed[name] != 0 {
				return false
			}
			crashed[name] = through
			all.Done()
			return true
		}
		e.Start()
		all.Wait()
		for _, name := range names {
			pos := e.Positions()[name]
			if pos >= crashed[name] || pos == 0 {
				t.Errorf("hook %d: %s crashed committing through %d but reports %d", point, name, crashed[name], pos)
			}
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}

		again := openEngine(t, l, Options{Dir: dir, Specs: []Spec{ordersSpec}, BatchEventsMax: batch})
		if point == afterCommit {
			// What was committed stays committed, and is not applied again.
			for _, name := range names {
				if got := again.Positions()[name]; got != crashed[name] {
					t.Errorf("after a crash past the commit %s reopens at %d, want %d", name, got, crashed[name])
				}
			}
		}
		again.Start()
		waitAll(t, again, l)
		sameProjections(t, fmt.Sprintf("after a crash at hook %d", point), again, want)
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
