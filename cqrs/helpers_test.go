package cqrs

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordoledger/ordo/eventlog"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 20 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testLog writes events to an in-memory event log, one entry per call.
type testLog struct {
	t   testing.TB
	log *eventlog.Log
	mu  sync.Mutex
}

var eventIDs atomic.Uint64

// logBaseTime is the agreed log time of entry 0 in tests.
var logBaseTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()

func newTestLog(t testing.TB) *testLog {
	t.Helper()
	l, err := eventlog.Open(eventlog.Options{InMemory: true, Logger: quiet})
	if err != nil {
		t.Fatalf("open event log: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return &testLog{t: t, log: l}
}

type ev struct {
	typ  string
	data string // JSON unless raw
	raw  bool
}

func newEvent(e ev) eventlog.NewEvent {
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], eventIDs.Add(1))
	ne := eventlog.NewEvent{ID: id, Type: e.typ, Data: []byte(e.data)}
	if !e.raw {
		ne.ContentType = contentJSON
	}
	return ne
}

// append writes evs to stream in one entry and returns their positions.
func (l *testLog) append(stream string, evs ...ev) []uint64 {
	l.t.Helper()
	return l.appendAt(0, stream, evs...)
}

// appendAt is append with the entry's agreed time (0: derived from its seq).
func (l *testLog) appendAt(ts int64, stream string, evs ...ev) []uint64 {
	l.t.Helper()
	batch := make([]eventlog.NewEvent, len(evs))
	for i := range evs {
		batch[i] = newEvent(evs[i])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seq, _ := l.log.Applied()
	if ts == 0 {
		ts = logBaseTime + int64(seq+1)*int64(time.Millisecond)
	}
	var positions []uint64
	_, err := l.log.Apply(eventlog.EntryHeader{Seq: seq + 1, Timestamp: ts}, func(tx *eventlog.Tx) ([][]byte, error) {
		var err error
		positions, _, err = tx.AppendEvents(stream, batch)
		return nil, err
	})
	if err != nil {
		l.t.Errorf("append to %s: %v", stream, err)
	}
	return positions
}

// last is the log's last position.
func (l *testLog) last() uint64 { return l.log.LastPosition() }

func openEngine(t testing.TB, l *testLog, opts Options) *Engine {
	t.Helper()
	opts.Log = l.log
	if opts.Dir == "" {
		opts.InMemory = true
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	e, err := Open(opts)
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// waitAt waits until projection name has applied pos.
func waitAt(t testing.TB, e *Engine, name string, pos uint64) {
	t.Helper()
	if cur, err := e.WaitPosition(context.Background(), name, pos, waitTimeout); err != nil {
		t.Fatalf("projection %s at %d, want %d: %v (status %+v)", name, cur, pos, err, statusOf(e, name))
	}
}

// waitAll waits until every projection has applied the log's last position.
func waitAll(t testing.TB, e *Engine, l *testLog) {
	t.Helper()
	for _, r := range e.allRunners() {
		waitAt(t, e, r.name, l.last())
	}
}

// waitState waits until pred holds for the projection's state.
func waitState(t testing.TB, e *Engine, name string, what string, pred func(runnerState) bool) runnerState {
	t.Helper()
	r, err := e.runner(name)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		s := r.snapshot()
		if pred(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("projection %s: timed out waiting for %s (status %+v)", name, what, statusOf(e, name))
		}
	}
}

func statusOf(e *Engine, name string) ProjectionStatus {
	for _, s := range e.Status() {
		if s.Name == name {
			return s
		}
	}
	return ProjectionStatus{}
}

// dump reads every row of a projection through List, page by page.
func dump(t testing.TB, e *Engine, name string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	cursor := ""
	for {
		rows, next, _, err := e.List(name, "", 97, cursor)
		if err != nil {
			t.Fatalf("list %s: %v", name, err)
		}
		for _, r := range rows {
			if _, dup := out[r.Key]; dup {
				t.Fatalf("list %s: key %q twice", name, r.Key)
			}
			out[r.Key] = string(r.Data)
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// sameRows fails unless two dumps hold the same rows, byte for byte.
func sameRows(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", what, len(got), len(want))
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		if got[k] != want[k] && bad < 5 {
			t.Errorf("%s: row %q\n got %s\nwant %s", what, k, got[k], want[k])
			bad++
		}
	}
}

// memTx is a Tx over maps, for testing projections without an engine.
type memTx struct {
	rows, state map[string][]byte
}

func newMemTx() *memTx { return &memTx{rows: map[string][]byte{}, state: map[string][]byte{}} }

func (m *memTx) Get(key string) ([]byte, bool, error) {
	v, ok := m.rows[key]
	return v, ok, nil
}

func (m *memTx) Set(key string, row []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := checkRow(row); err != nil {
		return err
	}
	m.rows[key] = bytes.Clone(row)
	return nil
}

func (m *memTx) Delete(key string) error { delete(m.rows, key); return nil }

func (m *memTx) GetState(key string) ([]byte, bool, error) {
	v, ok := m.state[key]
	return v, ok, nil
}

func (m *memTx) SetState(key string, v []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	m.state[key] = bytes.Clone(v)
	return nil
}

func (m *memTx) DeleteState(key string) error { delete(m.state, key); return nil }

// row decodes a JSON row into a map for assertions.
func row(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("row %s: %v", b, err)
	}
	return m
}

// num renders a decoded JSON number (or anything) as text.
func num(v any) string { return fmt.Sprint(v) }
