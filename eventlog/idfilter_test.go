package eventlog

import (
	"encoding/binary"
	"fmt"
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
	// At 200,000 ids the in-memory size gives under 0.01 % false positives.
	if maybe > n/1000 {
		t.Errorf("%d of %d ids never added may be present", maybe, n)
	}
}

// A reopened log fills its filter from the ID index in the background. Once
// it is filled no ID the log holds is called absent — neither those of the
// index nor one appended after the reopen — an appended ID is refused again,
// and a new ID is known new without a read.
func TestIDFilterFilledOnReopen(t *testing.T) {
	dir := t.TempDir()
	l := openDir(t, dir)
	if !l.ids.complete.Load() {
		t.Fatal("a new log's filter is not complete")
	}
	// More ids than the fill reads between its checks for Close.
	const batches, perBatch = 6, 1000
	n := 0
	for seq := uint64(1); seq <= batches; seq++ {
		ids := make([]int, perBatch)
		for i := range ids {
			n++
			ids[i] = n
		}
		applyAppends(t, l, seq, appendSpec{stream: fmt.Sprint("s", seq), ids: ids})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openDir(t, dir)
	defer l.Close()
	late := n + 1
	applyAppends(t, l, batches+1, appendSpec{stream: "late", ids: []int{late}})
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
	_, err := l.Apply(header(batches+2, 0), func(tx *Tx) ([][]byte, error) {
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

// Closing a log while its filter fills stops the fill.
func TestIDFilterFillStopsOnClose(t *testing.T) {
	dir := t.TempDir()
	l := openDir(t, dir)
	ids := make([]int, 3*idFilterScanStopEvery)
	for i := range ids {
		ids[i] = i + 1
	}
	applyAppends(t, l, 1, appendSpec{stream: "s", ids: ids})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openDir(t, dir)
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30 s of a reopen")
	}
	select {
	case <-l.fillDone:
	default:
		t.Fatal("Close returned before the fill ended")
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
