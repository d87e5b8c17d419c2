package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// len and bytes are what a boundedMap's bounds limit.
func (m *boundedMap[V]) len() int   { return len(m.young) + len(m.old) }
func (m *boundedMap[V]) bytes() int { return m.youngBytes + m.oldBytes }

// tb is what these tests need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// checkBounds fails unless m is within its bounds and its byte count is
// what its entries cost.
func checkBounds[V any](t tb, what string, m *boundedMap[V]) {
	t.Helper()
	if m.len() > m.entriesMax || m.bytes() > m.bytesMax {
		t.Fatalf("%s: %d entries of %d bytes, bounds %d and %d", what, m.len(), m.bytes(), m.entriesMax, m.bytesMax)
	}
	for _, gen := range []struct {
		entries map[string]V
		bytes   int
	}{{m.young, m.youngBytes}, {m.old, m.oldBytes}} {
		sum := 0
		for k, v := range gen.entries {
			sum += m.cost(k, v)
		}
		if sum != gen.bytes {
			t.Fatalf("%s: a generation counts %d bytes, its entries cost %d", what, gen.bytes, sum)
		}
	}
}

// snapshot copies what a cache holds, for comparing before and after.
func (c *execCache) snapshot() []any {
	var out []any
	for _, m := range []*boundedMap[uint64]{c.heads, c.memos} {
		out = append(out, maps.Clone(m.young), maps.Clone(m.old), m.youngBytes, m.oldBytes)
	}
	return append(out, maps.Clone(c.state.young), maps.Clone(c.state.old), c.state.youngBytes, c.state.oldBytes)
}

func TestBoundedMap(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		entries := rapid.IntRange(0, 12).Draw(rt, "entries max")
		bytesMax := rapid.IntRange(0, 12*(cacheEntryOverheadBytes+8)).Draw(rt, "bytes max")
		m := newBoundedMap(entries, bytesMax, func(k string, v []byte) int { return len(k) + len(v) })
		last := map[string][]byte{} // the last value put for each key; nil once removed
		for i := range rapid.IntRange(0, 200).Draw(rt, "ops") {
			k := fmt.Sprint(rapid.IntRange(0, 20).Draw(rt, "key"))
			if rapid.IntRange(0, 4).Draw(rt, "remove") == 0 {
				m.remove(k)
				last[k] = nil
			} else {
				v := bytes.Repeat([]byte{byte(i)}, rapid.IntRange(0, 16).Draw(rt, "value bytes"))
				m.put(k, v)
				last[k] = v
				// What was just put is kept unless it alone exceeds a generation.
				if _, ok := m.get(k); !ok && entries >= 2 && m.cost(k, v) <= bytesMax/2 {
					rt.Fatalf("key %s dropped as it was put", k)
				}
			}
			checkBounds(rt, "map", m)
			for k, want := range last {
				if got, ok := m.get(k); ok && (want == nil || !bytes.Equal(got, want)) {
					rt.Fatalf("key %s: cached %x, last put %x", k, got, want)
				}
			}
		}
	})
}

// cacheOp is one thing a test batch does.
type cacheOp struct {
	kind   int // see the switch in runCacheOps
	key    string
	stream string
	val    []byte
	memo   uint64
}

// TestExecutorCacheIsTransparent runs random batches of state reads and
// writes, appends, stream-head reads and memos on a log with a small cache
// (so that it evicts), a log with the production cache and a log without,
// some failing inside exec or after it. Every answer must be the same on
// all, and the model's; after every batch, everything the caches hold must
// be true of the committed state; a failed batch must leave them as they
// were; and the logs must end with the same head and state digest.
func TestExecutorCacheIsTransparent(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		small := cacheBounds{
			heads: rapid.IntRange(0, 6).Draw(rt, "heads"), headsBytes: 4 * (cacheEntryOverheadBytes + 12),
			state: rapid.IntRange(0, 6).Draw(rt, "states"), stateBytes: rapid.IntRange(0, 6*(cacheEntryOverheadBytes+20)).Draw(rt, "state bytes"),
			memos: rapid.IntRange(0, 6).Draw(rt, "memos"), memosBytes: 6 * (cacheEntryOverheadBytes + 12),
		}
		logs := []*Log{openMem(rt), openMem(rt), openMem(rt)}
		logs[0].cache = newExecCache(small)
		logs[2].cache = newExecCache(cacheBounds{})
		state := map[string][]byte{}
		heads := map[string]int64{}
		// Whether a memo is there differs between the logs, and so what the
		// ops below set.
		memos := make([]map[string]uint64, len(logs))
		for i := range memos {
			memos[i] = map[string]uint64{}
		}
		nextID := 0
		for seq := uint64(1); seq <= uint64(rapid.IntRange(1, 30).Draw(rt, "batches")); {
			ops := make([]cacheOp, rapid.IntRange(0, 12).Draw(rt, "ops"))
			for i := range ops {
				ops[i] = cacheOp{
					kind:   rapid.IntRange(0, 5).Draw(rt, "kind"),
					key:    fmt.Sprint("k", rapid.IntRange(0, 7).Draw(rt, "key")),
					stream: fmt.Sprint("s", rapid.IntRange(0, 7).Draw(rt, "stream")),
					memo:   rapid.Uint64().Draw(rt, "memo"),
				}
				// Values on both sides of what the cache keeps.
				n := rapid.SampledFrom([]int{0, 1, 8, cachedStateValueBytesMax, cachedStateValueBytesMax + 1}).Draw(rt, "value bytes")
				ops[i].val = bytes.Repeat([]byte{byte(i)}, n)
			}
			const (
				commits = iota
				failsInExec
				failsAfterExec
			)
			fate := []int{commits, commits, failsInExec, failsAfterExec}[rapid.IntRange(0, 3).Draw(rt, "fate")]
			nreq := 0
			if fate == failsAfterExec {
				nreq = 1 // exec returns no result for it
			}
			var st map[string][]byte
			var hd map[string]int64
			mms := make([]map[string]uint64, len(logs))
			firstID := nextID
			for li, l := range logs {
				before := l.cache.snapshot()
				st, hd, nextID = maps.Clone(state), maps.Clone(heads), firstID
				mm := maps.Clone(memos[li])
				mms[li] = mm
				boom := errors.New("boom")
				_, err := l.Apply(header(seq, nreq), func(tx *Tx) ([][]byte, error) {
					for _, op := range ops {
						runCacheOp(rt, tx, op, st, hd, mm, &nextID)
					}
					if fate == failsInExec {
						return nil, boom
					}
					return nil, nil
				})
				switch {
				case fate == commits && err != nil:
					rt.Fatalf("log %d batch %d: %v", li, seq, err)
				case fate != commits && err == nil:
					rt.Fatalf("log %d batch %d: a failing batch applied", li, seq)
				case fate != commits && !reflect.DeepEqual(before, l.cache.snapshot()):
					rt.Fatalf("log %d batch %d: a failed batch changed the cache", li, seq)
				}
			}
			if fate == commits {
				state, heads, memos = st, hd, mms
				seq++
			} else {
				nextID = firstID
			}
			for li, l := range logs {
				checkCache(rt, l, state, heads, memos[li])
				if _, d := l.StateDigest(); d != must(logs[0].StateDigest()) {
					rt.Fatalf("log %d: state digest differs", li)
				}
				if _, h := l.Applied(); h != must(logs[0].Applied()) {
					rt.Fatalf("log %d: head differs", li)
				}
			}
		}
	})
}

func must[T any](_ uint64, v T) T { return v }

// runCacheOp does op in tx and checks every answer against the model, which
// it updates: st, hd and mm are the state, stream heads and memos as the
// batch has left them.
func runCacheOp(t *rapid.T, tx *Tx, op cacheOp, st map[string][]byte, hd map[string]int64, mm map[string]uint64, nextID *int) {
	switch op.kind {
	case 0:
		v, found, err := tx.Get([]byte(op.key))
		want, ok := st[op.key]
		if err != nil || found != ok || !bytes.Equal(v, want) {
			t.Fatalf("Get(%s) = %d bytes, %v, %v; want %d bytes, %v", op.key, len(v), found, err, len(want), ok)
		}
		if len(v) > 0 {
			v[0]++ // the caller's own copy
		}
	case 1:
		if err := tx.Set([]byte(op.key), op.val); err != nil {
			t.Fatal(err)
		}
		st[op.key] = bytes.Clone(op.val)
	case 2:
		if err := tx.Delete([]byte(op.key)); err != nil {
			t.Fatal(err)
		}
		delete(st, op.key)
	case 3:
		v, err := tx.StreamVersion(op.stream)
		want, ok := hd[op.stream]
		if !ok {
			want = -1
		}
		if err != nil || v != want {
			t.Fatalf("StreamVersion(%s) = %d, %v; want %d", op.stream, v, err, want)
		}
	case 4:
		*nextID++
		_, last, err := tx.AppendEvents(op.stream, []NewEvent{{ID: id(*nextID), Type: "t"}})
		if err != nil {
			t.Fatal(err)
		}
		hd[op.stream] = int64(last)
	case 5:
		// A memo the log still has is the last one set.
		v, ok := tx.Memo([]byte(op.key))
		if ok && v != mm[op.key] {
			t.Fatalf("Memo(%s) = %d, last set %d", op.key, v, mm[op.key])
		}
		if !ok || op.memo%2 == 0 {
			if err := tx.SetMemo([]byte(op.key), op.memo); err != nil {
				t.Fatal(err)
			}
			mm[op.key] = op.memo
		}
	}
}

// checkCache fails unless everything l's cache holds is true of the
// committed state (and memos are the last set), and the cache is within its bounds.
func checkCache(t *rapid.T, l *Log, st map[string][]byte, hd map[string]int64, mm map[string]uint64) {
	c := l.cache
	for _, gen := range []map[string]stateValue{c.state.young, c.state.old} {
		for k, v := range gen {
			want, ok := st[k]
			if v.found != ok || !bytes.Equal(v.val, want) {
				t.Fatalf("cached %s: %d bytes, %v; committed %d bytes, %v", k, len(v.val), v.found, len(want), ok)
			}
		}
	}
	for _, gen := range []map[string]uint64{c.heads.young, c.heads.old} {
		for s, v := range gen {
			if want, ok := hd[s]; !ok || int64(v) != want {
				t.Fatalf("cached head of %s: %d; committed %d (%v)", s, v, want, ok)
			}
		}
	}
	for _, gen := range []map[string]uint64{c.memos.young, c.memos.old} {
		for k, v := range gen {
			if want, ok := mm[k]; !ok || v != want {
				t.Fatalf("memo %s: %d; last set %d (%v)", k, v, want, ok)
			}
		}
	}
	checkBounds(t, "heads", c.heads)
	checkBounds(t, "state", c.state)
	checkBounds(t, "memos", c.memos)
}

// A batch that reads what earlier batches read and wrote reads nothing of
// badger; reopened, the log reads it all again, with the same answers.
func TestExecutorCacheSavesReadsAndReopens(t *testing.T) {
	dir := t.TempDir()
	l := openDir(t, dir)
	if _, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) {
		for i := range 4 {
			if err := tx.Set([]byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i))); err != nil {
				return nil, err
			}
			if _, _, err := tx.AppendEvents(fmt.Sprint("s", i), []NewEvent{{ID: id(i), Type: "t"}}); err != nil {
				return nil, err
			}
		}
		return nil, tx.SetMemo([]byte("m"), 7)
	}); err != nil {
		t.Fatal(err)
	}
	read := func(l *Log, seq uint64) (gets, seeks int) {
		t.Helper()
		if _, err := l.Apply(header(seq, 0), func(tx *Tx) ([][]byte, error) {
			// k0..k3 exist, k4 does not; the second reads are of this batch's memo.
			for range 2 {
				for i := range 5 {
					v, found, err := tx.Get([]byte(fmt.Sprint("k", i)))
					if err != nil || found != (i < 4) || (found && string(v) != fmt.Sprint("v", i)) {
						t.Errorf("batch %d: Get(k%d) = %q %v %v", seq, i, v, found, err)
					}
					ver, err := tx.StreamVersion(fmt.Sprint("s", i))
					if err != nil || ver != map[bool]int64{true: 0, false: -1}[i < 4] {
						t.Errorf("batch %d: StreamVersion(s%d) = %d %v", seq, i, ver, err)
					}
				}
			}
			gets, seeks = tx.Reads()
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		return gets, seeks
	}
	// The first batch wrote keys the cache did not hold, so the second
	// reads them from badger (its appends set the streams' heads, which are
	// cached); then they are cached, k4 as absent, and s4 (no events) not
	// at all.
	// A stream's version is read with a scan of its index keys.
	if gets, seeks := read(l, 2); gets != 5 || seeks != 1 {
		t.Fatalf("second batch: %d reads and %d scans, want 5 and 1", gets, seeks)
	}
	if gets, seeks := read(l, 3); gets != 0 || seeks != 1 {
		t.Fatalf("third batch: %d reads and %d scans, want 0 and 1 (the stream with no events)", gets, seeks)
	}
	if _, err := l.Apply(header(4, 0), func(tx *Tx) ([][]byte, error) {
		if v, ok := tx.Memo([]byte("m")); !ok || v != 7 {
			t.Errorf("memo = %d %v, want 7", v, ok)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openDir(t, dir)
	defer l.Close()
	if gets, seeks := read(l, 5); gets != 5 || seeks != 5 {
		t.Fatalf("after reopening: %d reads and %d scans, want 5 and 5", gets, seeks)
	}
	if _, err := l.Apply(header(6, 0), func(tx *Tx) ([][]byte, error) {
		if v, ok := tx.Memo([]byte("m")); ok {
			t.Errorf("memo %d survived a reopen", v)
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Reads see the batch's own writes first, also of keys the cache holds.
func TestExecutorCacheReadsOwnWrites(t *testing.T) {
	l := openMem(t)
	for seq := uint64(1); seq <= 2; seq++ {
		// In batch 1 k is not cached; in batch 2 it is.
		if _, err := l.Apply(header(seq, 0), func(tx *Tx) ([][]byte, error) {
			if v, found, err := tx.Get([]byte("k")); err != nil || found != (seq == 2) || (found && string(v) != "v1") {
				t.Errorf("batch %d: Get = %q %v %v", seq, v, found, err)
			}
			for _, step := range []string{"set", "delete", "set"} {
				var err error
				if step == "set" {
					err = tx.Set([]byte("k"), []byte(fmt.Sprint("v", seq)))
				} else {
					err = tx.Delete([]byte("k"))
				}
				if err != nil {
					return nil, err
				}
				v, found, err := tx.Get([]byte("k"))
				if err != nil || found != (step == "set") || (found && string(v) != fmt.Sprint("v", seq)) {
					t.Errorf("batch %d after %s: Get = %q %v %v", seq, step, v, found, err)
				}
			}
			return nil, tx.Set([]byte("k"), []byte("v1"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := l.cache.state.get("k"); !v.found || string(v.val) != "v1" {
		t.Fatalf("cached k = %q %v, want v1", v.val, v.found)
	}
}

// Filling each cache past its bound keeps it within it.
func TestExecutorCacheBounds(t *testing.T) {
	l := openMem(t)
	const n = 40_000
	apply := func(seq uint64, exec func(tx *Tx) error) {
		t.Helper()
		if _, err := l.Apply(header(seq, 0), func(tx *Tx) ([][]byte, error) { return nil, exec(tx) }); err != nil {
			t.Fatal(err)
		}
	}
	// Absent keys, each read once, and memos.
	apply(1, func(tx *Tx) error {
		for i := range n {
			if _, _, err := tx.Get([]byte(fmt.Sprint("absent-", i))); err != nil {
				return err
			}
			if err := tx.SetMemo([]byte(fmt.Sprint("memo-", i)), uint64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	// Streams, 16,000 (64,000 writes) a batch.
	for b := range 3 {
		apply(uint64(2+b), func(tx *Tx) error {
			for i := range 16_000 {
				k := b*16_000 + i
				if _, _, err := tx.AppendEvents(fmt.Sprint("stream-", k), []NewEvent{{ID: id(k), Type: "t"}}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// Values over the byte bound before the entry bound, and a value too
	// large to keep.
	apply(5, func(tx *Tx) error {
		big := make([]byte, 1<<10)
		for i := range 4_000 {
			k := []byte(fmt.Sprint("big-", i))
			if err := tx.Set(k, big); err != nil {
				return err
			}
			if _, _, err := tx.Get(k); err != nil {
				return err
			}
		}
		huge := []byte("huge")
		if err := tx.Set(huge, make([]byte, cachedStateValueBytesMax+1)); err != nil {
			return err
		}
		_, _, err := tx.Get(huge)
		return err
	})
	c := l.cache
	for _, m := range []struct {
		what                 string
		len, bytes           int
		entriesMax, bytesMax int
	}{
		{"heads", c.heads.len(), c.heads.bytes(), cachedHeadsMax, cachedHeadsBytesMax},
		{"state", c.state.len(), c.state.bytes(), cachedStateMax, cachedStateBytesMax},
		{"memos", c.memos.len(), c.memos.bytes(), memosMax, memosBytesMax},
	} {
		if m.len == 0 || m.len > m.entriesMax || m.bytes > m.bytesMax {
			t.Errorf("%s: %d entries of %d bytes, bounds %d and %d", m.what, m.len, m.bytes, m.entriesMax, m.bytesMax)
		}
	}
	checkBounds(t, "heads", c.heads)
	checkBounds(t, "state", c.state)
	checkBounds(t, "memos", c.memos)
	if _, ok := c.state.get("huge"); ok {
		t.Error("a value over cachedStateValueBytesMax was cached")
	}
	if _, ok := c.heads.get(fmt.Sprint("stream-", 3*16_000-1)); !ok {
		t.Error("the newest stream head was dropped")
	}
	if _, ok := c.state.get(fmt.Sprint("big-", 4_000-1)); !ok {
		t.Error("the newest state value was dropped")
	}
}
