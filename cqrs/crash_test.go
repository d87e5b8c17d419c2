package cqrs

import (
	"sync"
	"testing"
)

// TestCrashBetweenApplyAndCheckpoint kills every projection's goroutine in
// the middle of its work — after its rows were written in a transaction but
// before the commit, and again after the commit but before the engine
// learned of it — then reopens the store. The result must be what one
// clean pass produces: no event lost, none applied twice.
func TestCrashBetweenApplyAndCheckpoint(t *testing.T) {
	l := newTestLog(t)
	newWorkload(l, 3).run(700)
	ref := openEngine(t, l, Options{Specs: []Spec{ordersSpec}})
	ref.Start()
	waitAll(t, ref, l)
	names := []string{StreamsProjection, EventTypesProjection, BalancesProjection, ordersSpec.Name}

	for _, point := range []hookPoint{beforeCommit, afterCommit} {
		dir := t.TempDir()
		e := openEngine(t, l, Options{Dir: dir, Specs: []Spec{ordersSpec}, BatchEventsMax: 13})
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

		again := openEngine(t, l, Options{Dir: dir, Specs: []Spec{ordersSpec}, BatchEventsMax: 13})
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
		for _, name := range names {
			sameRows(t, name+" after a crash", dump(t, again, name), dump(t, ref, name))
			if a, b := statusOf(again, name).SkippedEvents, statusOf(ref, name).SkippedEvents; a != b {
				t.Errorf("%s: skipped %d after a crash, %d in one pass", name, a, b)
			}
		}
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
