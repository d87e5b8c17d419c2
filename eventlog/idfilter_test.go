package eventlog

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"
)

// No ID added is ever called absent; IDs never added nearly always are; an
// incomplete filter calls nothing absent.
func TestIDFilterNeverMissesAnAddedID(t *testing.T) {
	const n = 200_000
	f := newIDFilter(idFilterMemBitsLog)
	idOf := func(i int) (b [16]byte) {
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		return b
	}
	for i := range n {
		f.add(idOf(i))
	}
	if f.absent(idOf(n)) {
		t.Fatal("an incomplete filter called an id absent")
	}
	f.complete.Store(true)
	for i := range n {
		if f.absent(idOf(i)) {
			t.Fatalf("id %d was added and is called absent", i)
		}
	}
	maybe := 0
	for i := n; i < 2*n; i++ {
		if !f.absent(idOf(i)) {
			maybe++
		}
	}
	// At 200,000 ids the in-memory size gives about 0.01 % false positives.
	if maybe > n/1000 {
		t.Errorf("%d of %d ids never added may be present", maybe, n)
	}
}

// A reopened log fills its filter from the ID index in the background. Once
// it is filled no ID the log holds is called absent — neither those of the
// index nor one appended after the reopen — an appended ID is refused again,
// and a new ID is known new without a read.
func TestIDFilterFilledOnReopen(t *testing.T) {
	if !openMem(t).ids.complete.Load() {
		t.Fatal("a new log's filter is not complete")
	}
	dir := t.TempDir()
	// More ids than the fill reads between its checks for Close.
	const n = 6000
	head := logOfIDs(t, dir, n)
	l := openDir(t, dir)
	defer l.Close()
	late := n + 1
	applyAppends(t, l, head+1, appendSpec{stream: "late", ids: []int{late}})
	select {
	case <-l.fillDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the filter was not filled within 30 s")
	}
	if !l.ids.complete.Load() {
		t.Fatal("the fill ended without completing the filter")
	}
	for i := 1; i <= late; i++ {
		if l.ids.absent(id(i)) {
			t.Fatalf("id %d is in the log and the filter calls it absent", i)
		}
	}
	_, err := l.Apply(header(head+2, 0), func(tx *Tx) ([][]byte, error) {
		for _, i := range []int{1, n, late} {
			if _, _, err := tx.AppendEvents("again", []NewEvent{{ID: id(i), Type: "t"}}); err == nil {
				t.Errorf("id %d appended twice", i)
			}
		}
		before, _ := tx.Reads()
		if _, found, err := tx.EventByID(id(late + 1)); err != nil || found {
			t.Errorf("a new id: found %v (%v)", found, err)
		}
		if after, _ := tx.Reads(); after != before {
			t.Errorf("a new id took %d reads of badger", after-before)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pausedFill reopens dir with a fill that stops at its first check for Close
// until release is closed, and returns once it has stopped there.
func pausedFill(t *testing.T, dir string) (l *Log, release chan struct{}) {
	t.Helper()
	reached := make(chan struct{})
	release = make(chan struct{})
	var once sync.Once
	pause := func() {
		once.Do(func() {
			close(reached)
			<-release
		})
	}
	l, err := Open(Options{Dir: dir, SyncWrites: true, Genesis: testGenesis, Logger: quietLogger(), idFilterFillPause: pause})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the fill did not reach its first check within 30 s")
	}
	return l, release
}

// logOfIDs makes a closed log in dir holding ids 1..n, in batches of 1,000,
// and returns its last seq.
func logOfIDs(t *testing.T, dir string, n int) (head uint64) {
	t.Helper()
	l := openDir(t, dir)
	for seq := uint64(1); int(seq-1)*1000 < n; seq++ {
		head = seq
		var ids []int
		for i := int(seq-1)*1000 + 1; i <= min(n, int(seq)*1000); i++ {
			ids = append(ids, i)
		}
		applyAppends(t, l, seq, appendSpec{stream: fmt.Sprint("s", seq), ids: ids})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return head
}

// While the fill is part way, the filter is not consulted: every id the log
// holds is found, also those the fill has not reached, and ids appended
// meanwhile are in the filter once the fill ends.
func TestIDFilterDuringFill(t *testing.T) {
	dir := t.TempDir()
	const n = 3 * idFilterScanStopEvery
	head := logOfIDs(t, dir, n)
	l, release := pausedFill(t, dir)
	defer l.Close()
	late := []int{n + 1, n + 2}
	_, err := l.Apply(header(head+1, 0), func(tx *Tx) ([][]byte, error) {
		for _, i := range []int{1, idFilterScanStopEvery + 1, n} {
			if _, found, err := tx.EventByID(id(i)); err != nil || !found {
				t.Errorf("id %d, during the fill: found %v (%v)", i, found, err)
			}
		}
		for _, i := range late {
			if _, _, err := tx.AppendEvents("late", []NewEvent{{ID: id(i), Type: "t"}}); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case <-l.fillDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the fill did not end within 30 s")
	}
	for i := 1; i <= n+len(late); i++ {
		if l.ids.absent(id(i)) {
			t.Fatalf("id %d is in the log and the filter calls it absent", i)
		}
	}
}

// Closing a log while its filter fills stops the fill, which leaves the
// filter incomplete.
func TestIDFilterFillStopsOnClose(t *testing.T) {
	dir := t.TempDir()
	logOfIDs(t, dir, 3*idFilterScanStopEvery)
	l, release := pausedFill(t, dir)
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	// Close closes fillStop before it waits for the fill.
	<-l.fillStop
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30 s")
	}
	if l.ids.complete.Load() {
		t.Error("the fill went on to the end after Close")
	}
}

// A log reopened with more events than its filter serves has none, and still
// refuses an id it holds; one reopened at the bound has one.
func TestIDFilterOffPastItsBound(t *testing.T) {
	const bitsLog = idFilterBlockLog // one block: 128 ids at most
	most := int(idFilterIDsMax(bitsLog))
	for _, events := range []int{most, most + 1} {
		dir := t.TempDir()
		opts := Options{Dir: dir, Genesis: testGenesis, Logger: quietLogger(), idFilterBitsLog: bitsLog}
		l, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int, events)
		for i := range ids {
			ids[i] = i + 1
		}
		applyAppends(t, l, 1, appendSpec{stream: "s", ids: ids})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if l, err = Open(opts); err != nil {
			t.Fatal(err)
		}
		if (l.ids != nil) != (events <= most) {
			t.Errorf("%d events, at most %d: filter %v", events, most, l.ids != nil)
		}
		if _, err := l.Apply(header(2, 0), func(tx *Tx) ([][]byte, error) {
			if _, _, err := tx.AppendEvents("again", []NewEvent{{ID: id(events), Type: "t"}}); err == nil {
				t.Errorf("%d events: an id the log holds was appended again", events)
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
