package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

var testGenesis = crypto.Hash([]byte("test genesis"))

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openMem opens an in-memory log that closes with the test (or rapid check).
func openMem(t tb) *Log {
	t.Helper()
	l, err := Open(Options{InMemory: true, Genesis: testGenesis, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func openDir(t testing.TB, dir string) *Log {
	t.Helper()
	l, err := Open(Options{Dir: dir, SyncWrites: true, Genesis: testGenesis, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// id makes a distinct event id from n.
func id(n int) [16]byte {
	var b [16]byte
	b[0] = 0xee
	b[15] = byte(n)
	b[14] = byte(n >> 8)
	b[13] = byte(n >> 16)
	return b
}

// appendSpec is one AppendEvents call of a test batch.
type appendSpec struct {
	stream string
	ids    []int
}

func header(seq uint64, nreq int) EntryHeader {
	reqs := make([][]byte, nreq)
	for i := range reqs {
		reqs[i] = []byte(fmt.Sprintf("request %d.%d", seq, i))
	}
	return EntryHeader{
		Seq: seq, View: 1, Timestamp: int64(seq) * 1000,
		Digest:      crypto.Hash([]byte(fmt.Sprintf("digest %d", seq))),
		Requests:    reqs,
		Certificate: []byte(fmt.Sprintf("cert %d", seq)),
	}
}

// applyAppends applies entry seq with one request per append in specs.
func applyAppends(t testing.TB, l *Log, seq uint64, specs ...appendSpec) *Entry {
	t.Helper()
	e, err := l.Apply(header(seq, len(specs)), func(tx *Tx) ([][]byte, error) {
		results := make([][]byte, len(specs))
		for i, s := range specs {
			evs := make([]NewEvent, len(s.ids))
			for j, n := range s.ids {
				evs[j] = NewEvent{ID: id(n), Type: "t", Data: []byte(fmt.Sprintf("data %d", n)), ContentHash: crypto.Hash([]byte{byte(n)})}
			}
			pos, last, err := tx.AppendEvents(s.stream, evs)
			if err != nil {
				return nil, err
			}
			results[i] = []byte(fmt.Sprintf("%s %v %d", s.stream, pos, last))
		}
		return results, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestApplyAndReadBack(t *testing.T) {
	l := openMem(t)
	if seq, h := l.Applied(); seq != 0 || h != testGenesis {
		t.Fatalf("empty log head = (%d, %v), want (0, genesis)", seq, h)
	}
	e1 := applyAppends(t, l, 1, appendSpec{"a", []int{1, 2}}, appendSpec{"b", []int{3}})
	if e1.FirstPosition != 1 || e1.EventCount != 3 || e1.PrevHash != testGenesis {
		t.Fatalf("entry 1 = first %d count %d prev %v", e1.FirstPosition, e1.EventCount, e1.PrevHash)
	}
	if string(e1.Results[0]) != "a [1 2] 1" || string(e1.Results[1]) != "b [3] 0" {
		t.Fatalf("results %q", e1.Results)
	}
	e2 := applyAppends(t, l, 2, appendSpec{"a", []int{4}})
	if e2.FirstPosition != 4 || e2.PrevHash != e1.Hash || string(e2.Results[0]) != "a [4] 2" {
		t.Fatalf("entry 2 = first %d prev %v results %q", e2.FirstPosition, e2.PrevHash, e2.Results)
	}
	if seq, h := l.Applied(); seq != 2 || h != e2.Hash {
		t.Fatalf("head (%d, %v), want (2, %v)", seq, h, e2.Hash)
	}
	if l.LastPosition() != 4 {
		t.Fatalf("last position %d, want 4", l.LastPosition())
	}

	got, err := l.Entry(1)
	if err != nil {
		t.Fatal(err)
	}
	want1 := codec.MustMarshal(e1)
	if !bytes.Equal(codec.MustMarshal(got), want1) {
		t.Fatalf("entry 1 read back differs:\n got %+v\nwant %+v", got, e1)
	}
	if _, err := l.Entry(3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry 3: %v, want ErrNotFound", err)
	}

	ev, err := l.EventAt(3)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Stream != "b" || ev.Version != 0 || ev.ID != id(3) || ev.EntrySeq != 1 || ev.Timestamp != 1000 || string(ev.Data) != "data 3" || ev.Type != "t" {
		t.Fatalf("event 3 = %+v", ev)
	}
	if _, err := l.EventAt(5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("event 5: %v, want ErrNotFound", err)
	}

	ents, err := l.Entries(1, 0)
	if err != nil || len(ents) != 2 || ents[1].Hash != e2.Hash {
		t.Fatalf("Entries(1) = %d entries, %v", len(ents), err)
	}
	ents, err = l.Entries(3, 10)
	if err != nil || len(ents) != 0 {
		t.Fatalf("Entries(3) = %d entries, %v", len(ents), err)
	}
}

func TestHashChain(t *testing.T) {
	l := openMem(t)
	prev := testGenesis
	for seq := uint64(1); seq <= 5; seq++ {
		e := applyAppends(t, l, seq, appendSpec{"s", []int{int(seq)}})
		want := EntryHash(prev, seq, e.Digest, crypto.MerkleRoot(e.Results))
		if e.Hash != want || e.PrevHash != prev || e.ResultsRoot != crypto.MerkleRoot(e.Results) {
			t.Fatalf("entry %d: hash %v prev %v, want %v after %v", seq, e.Hash, e.PrevHash, want, prev)
		}
		prev = e.Hash
	}
	var seen []uint64
	if err := l.Walk(func(e *Entry) error { seen = append(seen, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[1 2 3 4 5]" {
		t.Fatalf("walked %v", seen)
	}
	stop := errors.New("stop")
	if err := l.Walk(func(e *Entry) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("walk did not pass fn's error: %v", err)
	}
	// The hash covers the digest: the same entry with another digest has another hash.
	if EntryHash(testGenesis, 1, crypto.Hash([]byte("x")), crypto.Digest{}) == EntryHash(testGenesis, 1, crypto.Hash([]byte("y")), crypto.Digest{}) {
		t.Fatal("entry hash ignores the digest")
	}
}

func TestOutOfOrder(t *testing.T) {
	l := openMem(t)
	applyAppends(t, l, 1, appendSpec{"s", []int{1}})
	ran := false
	exec := func(tx *Tx) ([][]byte, error) { ran = true; return nil, nil }
	for _, seq := range []uint64{0, 1, 3} {
		if _, err := l.Apply(header(seq, 0), exec); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("seq %d at head 1: %v, want ErrOutOfOrder", seq, err)
		}
	}
	if ran {
		t.Fatal("exec ran for a refused entry")
	}
	if seq, _ := l.Applied(); seq != 1 {
		t.Fatalf("head moved to %d", seq)
	}
}

func TestFailedExecLeavesNothing(t *testing.T) {
	l := openMem(t)
	applyAppends(t, l, 1, appendSpec{"s", []int{1}})
	seq0, hash0 := l.Applied()
	boom := errors.New("boom")
	_, err := l.Apply(header(2, 1), func(tx *Tx) ([][]byte, error) {
		if _, _, err := tx.AppendEvents("s", []NewEvent{{ID: id(2), Type: "t"}}); err != nil {
			return nil, err
		}
		if err := tx.Set([]byte("k"), []byte("v")); err != nil {
			return nil, err
		}
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Apply = %v, want boom", err)
	}
	// A wrong number of results is refused the same way.
	_, err = l.Apply(header(2, 2), func(tx *Tx) ([][]byte, error) {
		_, _, err := tx.AppendEvents("s", []NewEvent{{ID: id(2), Type: "t"}})
		return [][]byte{{1}}, err
	})
	if err == nil {
		t.Fatal("Apply accepted 1 result for 2 requests")
	}
	if seq, h := l.Applied(); seq != seq0 || h != hash0 || l.LastPosition() != 1 {
		t.Fatalf("head moved to (%d, %v, pos %d)", seq, h, l.LastPosition())
	}
	if _, err := l.EventAt(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("event 2 of a failed batch: %v", err)
	}
	if _, err := l.Entry(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry 2 of a failed batch: %v", err)
	}
	if _, _, err := l.ReadStream("s", 1, 10, false); err != nil {
		t.Fatal(err)
	}
	// The same seq applies cleanly afterwards, and nothing of the failed try shows.
	_, err = l.Apply(header(2, 0), func(tx *Tx) ([][]byte, error) {
		if _, found, err := tx.Get([]byte("k")); err != nil || found {
			t.Errorf("state of a failed batch visible: found %v err %v", found, err)
		}
		if v, err := tx.StreamVersion("s"); err != nil || v != 0 {
			t.Errorf("stream version %d (%v), want 0", v, err)
		}
		if _, found, err := tx.EventByID(id(2)); err != nil || found {
			t.Errorf("id of a failed batch visible: found %v err %v", found, err)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTxUseAfterExec(t *testing.T) {
	l := openMem(t)
	var kept *Tx
	if _, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) { kept = tx; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.Set([]byte("k"), []byte("v")); err == nil {
		t.Fatal("Tx.Set after exec returned succeeded")
	}
	if _, _, err := kept.AppendEvents("s", []NewEvent{{ID: id(1), Type: "t"}}); err == nil {
		t.Fatal("Tx.AppendEvents after exec returned succeeded")
	}
}

func TestTxStateAndIndexes(t *testing.T) {
	l := openMem(t)
	_, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) {
		if tx.Seq() != 1 || tx.Timestamp() != 1000 {
			t.Errorf("tx seq %d ts %d", tx.Seq(), tx.Timestamp())
		}
		if v, err := tx.StreamVersion("s"); err != nil || v != -1 {
			t.Errorf("new stream version %d (%v), want -1", v, err)
		}
		if _, err := tx.StreamVersion(""); err == nil {
			t.Error("empty stream name accepted")
		}
		if _, _, err := tx.AppendEvents("a\x00b", []NewEvent{{ID: id(9), Type: "t"}}); err == nil {
			t.Error("stream name with 0x00 accepted")
		}
		if _, _, err := tx.AppendEvents("s", nil); err == nil {
			t.Error("append of no events accepted")
		}
		pos, last, err := tx.AppendEvents("s", []NewEvent{{ID: id(1), Type: "t", ContentHash: crypto.Hash([]byte("c1"))}, {ID: id(2), Type: "t"}})
		if err != nil || fmt.Sprint(pos) != "[1 2]" || last != 1 {
			t.Errorf("append = %v %d %v", pos, last, err)
		}
		// Reads inside the transaction see its own writes.
		if v, err := tx.StreamVersion("s"); err != nil || v != 1 {
			t.Errorf("stream version %d (%v), want 1", v, err)
		}
		ref, found, err := tx.EventByID(id(1))
		if err != nil || !found || ref != (EventRef{Stream: "s", Position: 1, Version: 0, ContentHash: crypto.Hash([]byte("c1"))}) {
			t.Errorf("EventByID = %+v %v %v", ref, found, err)
		}
		if _, _, err := tx.AppendEvents("other", []NewEvent{{ID: id(1), Type: "t"}}); err == nil {
			t.Error("an existing id was appended again")
		}
		for _, k := range []string{"p/3", "p/1", "q/0", "p/2"} {
			if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
				t.Error(err)
			}
		}
		if err := tx.Delete([]byte("p/2")); err != nil {
			t.Error(err)
		}
		// This batch's own writes are not among the committed keys.
		if keys, err := tx.CommittedKeys([]byte("p/"), []byte("p/"), 10); err != nil || len(keys) != 0 {
			t.Errorf("CommittedKeys in the first batch = %s %v", keys, err)
		}
		if v, found, err := tx.Get([]byte("p/3")); err != nil || !found || string(v) != "vp/3" {
			t.Errorf("Get = %q %v %v", v, found, err)
		}
		if err := tx.Set(nil, []byte("v")); err == nil {
			t.Error("empty state key accepted")
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Apply(header(2, 0), func(tx *Tx) ([][]byte, error) {
		if err := tx.Set([]byte("p/0"), []byte("new")); err != nil {
			t.Error(err)
		}
		if err := tx.Delete([]byte("p/1")); err != nil {
			t.Error(err)
		}
		keys, err := tx.CommittedKeys([]byte("p/"), []byte("p/"), 10)
		if err != nil || fmt.Sprintf("%s", keys) != "[p/1 p/3]" {
			t.Errorf("CommittedKeys = %s %v", keys, err)
		}
		keys, err = tx.CommittedKeys([]byte("p/"), []byte("p/"), 1)
		if err != nil || fmt.Sprintf("%s", keys) != "[p/1]" {
			t.Errorf("CommittedKeys limit 1 = %s %v", keys, err)
		}
		keys, err = tx.CommittedKeys([]byte("p/"), []byte("p/2"), 10)
		if err != nil || fmt.Sprintf("%s", keys) != "[p/3]" {
			t.Errorf("CommittedKeys from p/2 = %s %v", keys, err)
		}
		if _, err := tx.CommittedKeys([]byte("p/"), []byte("p/"), 0); err == nil {
			t.Error("CommittedKeys with limit 0 accepted")
		}
		if _, err := tx.CommittedKeys([]byte("p/"), []byte("q"), 1); err == nil {
			t.Error("CommittedKeys from outside the prefix accepted")
		}
		if _, found, err := tx.Get([]byte("p/2")); err != nil || found {
			t.Errorf("deleted key found %v (%v)", found, err)
		}
		if v, found, err := tx.Get([]byte("q/0")); err != nil || !found || string(v) != "vq/0" {
			t.Errorf("committed key = %q %v %v", v, found, err)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The transaction remembers stream heads and absent IDs for AppendEvents;
// what it remembers must follow its own appends.
func TestTxIndexMemoFollowsAppends(t *testing.T) {
	l := openMem(t)
	applyAppends(t, l, 1, appendSpec{stream: "s", ids: []int{1}})
	_, err := l.Apply(header(2, 0), func(tx *Tx) ([][]byte, error) {
		if _, found, err := tx.EventByID(id(5)); err != nil || found {
			t.Errorf("id 5 before its append: found %v (%v)", found, err)
		}
		if v, err := tx.StreamVersion("s"); err != nil || v != 0 {
			t.Errorf("stream version %d (%v), want 0", v, err)
		}
		if _, last, err := tx.AppendEvents("s", []NewEvent{{ID: id(5), Type: "t"}}); err != nil || last != 1 {
			t.Errorf("append: last %d (%v), want 1", last, err)
		}
		if ref, found, err := tx.EventByID(id(5)); err != nil || !found || ref.Version != 1 {
			t.Errorf("id 5 after its append: %+v found %v (%v)", ref, found, err)
		}
		if v, err := tx.StreamVersion("s"); err != nil || v != 1 {
			t.Errorf("stream version %d (%v), want 1", v, err)
		}
		if _, _, err := tx.AppendEvents("other", []NewEvent{{ID: id(5), Type: "t"}}); err == nil {
			t.Error("an id appended in this transaction was appended again")
		}
		if _, _, err := tx.AppendEvents("other", []NewEvent{{ID: id(1), Type: "t"}}); err == nil {
			t.Error("an id from an earlier entry was appended again")
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	errDiscard := errors.New("discard")
	_, err = l.Apply(header(3, 0), func(tx *Tx) ([][]byte, error) {
		if _, found, err := tx.EventByID(id(7)); err != nil || found {
			t.Errorf("id 7: found %v (%v)", found, err)
		}
		if _, _, err := tx.AppendEvents("s", []NewEvent{{ID: id(7), Type: "t"}, {ID: id(7), Type: "t"}}); err == nil {
			t.Error("one id twice in one append accepted after it was looked up absent")
		}
		return nil, errDiscard
	})
	if !errors.Is(err, errDiscard) {
		t.Fatalf("apply 3: %v", err)
	}
}

// Reads of the latest events come from memory; they must equal reads from
// storage (a reopened log has an empty cache), bounds included.
func TestReadAllFromRecentEqualsStorage(t *testing.T) {
	dir := t.TempDir()
	l := openDir(t, dir)
	const batches, perBatch = 90, 100 // past 2 × recentEventsMax: the cache trims
	n := 0
	for seq := uint64(1); seq <= batches; seq++ {
		ids := make([]int, perBatch)
		for i := range ids {
			n++
			ids[i] = n
		}
		applyAppends(t, l, seq, appendSpec{stream: fmt.Sprintf("s%d", seq%7), ids: ids})
	}
	big := bytes.Repeat([]byte("x"), 100<<10)
	_, err := l.Apply(header(batches+1, 0), func(tx *Tx) ([][]byte, error) {
		evs := make([]NewEvent, 60)
		for i := range evs {
			n++
			evs[i] = NewEvent{ID: id(n), Type: "big", Data: big}
		}
		_, _, err := tx.AppendEvents("big", evs)
		return nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	type read struct {
		from  uint64
		limit int
	}
	reads := []read{{1, 1000}, {4000, 1000}, {4905, 7}, {5000, 1000}, {8999, 1000}, {9000, 1}, {9001, 1000}, {9030, 1000}, {9060, 5}, {9061, 1000}}
	cached := make([][]Event, len(reads))
	nexts := make([]uint64, len(reads))
	for i, r := range reads {
		if cached[i], nexts[i], err = l.ReadAll(r.from, r.limit); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := l.readRecent(1, 10); ok {
		t.Error("position 1 still cached after 9,060 events")
	}
	if _, ok := l.readRecent(9001, 10); !ok {
		t.Error("the latest events are not cached")
	}
	if len(cached[6]) == 0 || len(cached[6]) >= 60 {
		t.Fatalf("read of the 60 big events gave %d; ReadBytesMax should cut it short", len(cached[6]))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openDir(t, dir)
	defer l.Close()
	for i, r := range reads {
		stored, next, err := l.ReadAll(r.from, r.limit)
		if err != nil {
			t.Fatal(err)
		}
		if next != nexts[i] || !reflect.DeepEqual(stored, cached[i]) {
			t.Errorf("ReadAll(%d, %d): cache gave %d events next %d, storage %d next %d", r.from, r.limit, len(cached[i]), nexts[i], len(stored), next)
		}
	}
}

func TestRecentEventsAreBounded(t *testing.T) {
	l := openMem(t)
	pos := uint64(1)
	for round := 0; round < 200; round++ {
		batch := make([]storedEvent, 100)
		for i := range batch {
			size := 1 << 10
			if round%3 == 0 {
				size = 1 << 20 // some rounds of big events
			}
			batch[i] = storedEvent{ev: Event{Position: pos}, size: size}
			pos++
		}
		l.advance(l.head, batch)
		if len(l.recent) > 2*recentEventsMax+100 || l.recentBytes > 2*recentBytesMax+100<<20 {
			t.Fatalf("round %d: %d events, %d bytes cached", round, len(l.recent), l.recentBytes)
		}
		if got := l.recent[len(l.recent)-1].ev.Position; got != pos-1 {
			t.Fatalf("round %d: cache ends at %d, want %d", round, got, pos-1)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	l := openDir(t, dir)
	applyAppends(t, l, 1, appendSpec{"a", []int{1, 2}})
	e2 := applyAppends(t, l, 2, appendSpec{"b", []int{3}}, appendSpec{"a", []int{4}})
	if err := l.PutMeta(map[string][]byte{"view": {7}}, nil, true); err != nil {
		t.Fatal(err)
	}
	_, wantState := l.StateDigest()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openDir(t, dir)
	defer l.Close()
	if seq, h := l.Applied(); seq != 2 || h != e2.Hash || l.LastPosition() != 4 {
		t.Fatalf("reopened head (%d, %v, %d), want (2, %v, 4)", seq, h, l.LastPosition(), e2.Hash)
	}
	evs, _, err := l.ReadStream("a", 0, 10, false)
	if err != nil || len(evs) != 3 || evs[2].Position != 4 || evs[2].Version != 2 {
		t.Fatalf("stream a after reopen: %+v %v", evs, err)
	}
	if v, found, err := l.GetMeta("view"); err != nil || !found || !bytes.Equal(v, []byte{7}) {
		t.Fatalf("meta after reopen: %v %v %v", v, found, err)
	}
	if seq, gotState := l.StateDigest(); seq != 2 || gotState != wantState {
		t.Fatalf("state digest after reopen (%d, %v), want (2, %v)", seq, gotState, wantState)
	}
	applyAppends(t, l, 3, appendSpec{"a", []int{5}})
	if l.LastPosition() != 5 {
		t.Fatalf("position after reopen and apply: %d", l.LastPosition())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// The same directory refuses another genesis.
	if _, err := Open(Options{Dir: dir, Genesis: crypto.Hash([]byte("other")), Logger: quietLogger()}); err == nil {
		t.Fatal("log opened for another genesis")
	}
}

func TestReadStream(t *testing.T) {
	l := openMem(t)
	// Stream "s" gets versions 0..9 at positions interleaved with stream "t".
	for i := 0; i < 10; i++ {
		applyAppends(t, l, uint64(i+1), appendSpec{"s", []int{2 * i}}, appendSpec{"t", []int{2*i + 1}})
	}
	versions := func(evs []Event) string {
		var vs []uint64
		for _, e := range evs {
			if e.Stream != "s" {
				t.Fatalf("event of stream %s in stream s", e.Stream)
			}
			vs = append(vs, e.Version)
		}
		return fmt.Sprint(vs)
	}
	evs, next, err := l.ReadStream("s", 0, 4, false)
	if err != nil || versions(evs) != "[0 1 2 3]" || next != 4 || evs[1].Position != 3 {
		t.Fatalf("forward from 0: %s next %d %v", versions(evs), next, err)
	}
	evs, next, err = l.ReadStream("s", next, 100, false)
	if err != nil || versions(evs) != "[4 5 6 7 8 9]" || next != 10 {
		t.Fatalf("forward from 4: %s next %d %v", versions(evs), next, err)
	}
	evs, next, err = l.ReadStream("s", 10, 100, false)
	if err != nil || len(evs) != 0 || next != 10 {
		t.Fatalf("forward past the end: %s next %d %v", versions(evs), next, err)
	}
	evs, next, err = l.ReadStream("s", StreamEnd, 3, true)
	if err != nil || versions(evs) != "[9 8 7]" || next != 6 {
		t.Fatalf("backwards from the end: %s next %d %v", versions(evs), next, err)
	}
	evs, next, err = l.ReadStream("s", 2, 10, true)
	if err != nil || versions(evs) != "[2 1 0]" || next != 0 {
		t.Fatalf("backwards from 2: %s next %d %v", versions(evs), next, err)
	}
	if _, _, err := l.ReadStream("nope", 0, 10, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing stream: %v, want ErrNotFound", err)
	}
	if _, _, err := l.ReadStream("", 0, 10, false); err == nil {
		t.Fatal("empty stream name accepted")
	}
	// A stream whose name is a prefix of another keeps to its own events.
	applyAppends(t, l, 11, appendSpec{"s.x", []int{100}})
	evs, _, err = l.ReadStream("s", 0, 100, false)
	if err != nil || versions(evs) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("stream s after s.x: %s %v", versions(evs), err)
	}
}

func TestReadAllPaging(t *testing.T) {
	l := openMem(t)
	n := 0
	for seq := uint64(1); seq <= 7; seq++ {
		applyAppends(t, l, seq, appendSpec{fmt.Sprintf("s%d", seq%3), []int{n, n + 1, n + 2}})
		n += 3
	}
	var all []uint64
	from := uint64(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		evs, next, err := l.ReadAll(from, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			if next != from && !(from == 0 && next == 1) {
				t.Fatalf("empty page moved next from %d to %d", from, next)
			}
			break
		}
		if len(evs) > 4 {
			t.Fatalf("page of %d events over limit 4", len(evs))
		}
		for _, e := range evs {
			all = append(all, e.Position)
		}
		if next != evs[len(evs)-1].Position+1 {
			t.Fatalf("next %d after position %d", next, evs[len(evs)-1].Position)
		}
		from = next
	}
	if len(all) != 21 {
		t.Fatalf("read %d events, want 21", len(all))
	}
	for i, p := range all {
		if p != uint64(i+1) {
			t.Fatalf("position %d at index %d: not gap-free", p, i)
		}
	}
	evs, _, err := l.ReadAll(0, math.MaxInt)
	if err != nil || len(evs) != 21 {
		t.Fatalf("limit above max: %d events, %v", len(evs), err)
	}
}

func TestWaitWakesOnApply(t *testing.T) {
	l := openMem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	posDone := make(chan error, 1)
	seqDone := make(chan error, 1)
	go func() { posDone <- l.Wait(ctx, 3) }()
	go func() { seqDone <- l.WaitSeq(ctx, 2) }()
	applyAppends(t, l, 1, appendSpec{"s", []int{1, 2}})
	select {
	case err := <-posDone:
		t.Fatalf("Wait(3) returned at position 2: %v", err)
	case err := <-seqDone:
		t.Fatalf("WaitSeq(2) returned at seq 1: %v", err)
	default:
	}
	applyAppends(t, l, 2, appendSpec{"s", []int{3}})
	for _, ch := range []chan error{posDone, seqDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("waiter not woken by apply")
		}
	}
	// Already satisfied: returns at once.
	if err := l.Wait(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// A context that ends first.
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := l.Wait(short, 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v", err)
	}
	// Close wakes waiters.
	closedDone := make(chan error, 1)
	go func() { closedDone <- l.WaitSeq(ctx, 100) }()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closedDone:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter after Close: %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("waiter not woken by Close")
	}
	if _, err := l.Apply(header(3, 0), func(*Tx) ([][]byte, error) { return nil, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
}

func TestMeta(t *testing.T) {
	l := openMem(t)
	set := map[string][]byte{"pbft/view": {1}, "pbft/sent/2": {2}, "pbft/sent/1": {3}, "other": {4}}
	if err := l.PutMeta(set, nil, true); err != nil {
		t.Fatal(err)
	}
	var keys []string
	err := l.ScanMeta("pbft/sent/", func(k string, v []byte) error { keys = append(keys, fmt.Sprintf("%s=%d", k, v[0])); return nil })
	if err != nil || fmt.Sprint(keys) != "[pbft/sent/1=3 pbft/sent/2=2]" {
		t.Fatalf("ScanMeta = %v %v", keys, err)
	}
	if err := l.PutMeta(map[string][]byte{"pbft/view": {9}}, []string{"pbft/sent/1"}, false); err != nil {
		t.Fatal(err)
	}
	if v, found, err := l.GetMeta("pbft/view"); err != nil || !found || v[0] != 9 {
		t.Fatalf("GetMeta = %v %v %v", v, found, err)
	}
	if _, found, err := l.GetMeta("pbft/sent/1"); err != nil || found {
		t.Fatalf("deleted meta key found %v (%v)", found, err)
	}
	if err := l.PutMeta(map[string][]byte{"x": {1}}, []string{"x"}, false); err == nil {
		t.Fatal("a key both set and deleted was accepted")
	}
	if err := l.PutMeta(map[string][]byte{"": {1}}, nil, false); err == nil {
		t.Fatal("empty meta key accepted")
	}
	// Meta keys are not replicated state.
	_, before := l.StateDigest()
	if err := l.PutMeta(map[string][]byte{"more": {1}}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, after := l.StateDigest(); after != before {
		t.Fatal("a meta write changed the state digest")
	}
	// Entries are not in the meta key space.
	applyAppends(t, l, 1, appendSpec{"s", []int{1}})
	n := 0
	if err := l.ScanMeta("", func(string, []byte) error { n++; return nil }); err != nil || n != 4 {
		t.Fatalf("ScanMeta of everything saw %d keys (%v), want 4", n, err)
	}
}

func TestStateDigestFollowsState(t *testing.T) {
	type write struct{ k, v string } // v "" deletes k
	// apply applies each batch to a new log and returns the digest after each.
	apply := func(batches ...[]write) []crypto.Digest {
		t.Helper()
		l := openMem(t)
		var out []crypto.Digest
		for i, b := range batches {
			_, err := l.Apply(header(uint64(i+1), 0), func(tx *Tx) ([][]byte, error) {
				for _, w := range b {
					var err error
					if w.v == "" {
						err = tx.Delete([]byte(w.k))
					} else {
						err = tx.Set([]byte(w.k), []byte(w.v))
					}
					if err != nil {
						return nil, err
					}
				}
				return nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			seq, d := l.StateDigest()
			if seq != uint64(i+1) {
				t.Fatalf("state digest at seq %d after applying %d", seq, i+1)
			}
			out = append(out, d)
		}
		return out
	}
	ab := apply([]write{{"ab", "c"}}, []write{{"ab", "d"}}, nil, []write{{"ab", ""}})
	if ab[0] == (crypto.Digest{}) || ab[1] == ab[0] || ab[3] == ab[1] {
		t.Fatalf("state digest did not change with the state: %x", ab)
	}
	if ab[2] != ab[1] {
		t.Fatal("a batch that wrote no state changed the state digest")
	}
	// The same writes give the same digest on another log.
	if again := apply([]write{{"ab", "c"}}, []write{{"ab", "d"}}, nil, []write{{"ab", ""}}); again[3] != ab[3] {
		t.Fatal("two logs applying the same writes disagree")
	}
	// Length prefixes and tags: ("a","bc") differs from ("ab","c"), and a
	// delete from a set of an empty value.
	if d := apply([]write{{"a", "bc"}}); d[0] == ab[0] {
		t.Fatal("state digest ambiguous between key and value bytes")
	}
	if d := apply([]write{{"ab", ""}}); d[0] == (crypto.Digest{}) {
		t.Fatal("a delete left the state digest unchanged")
	}
	// Order counts: it is the executor's, which every replica repeats.
	if x, y := apply([]write{{"a", "1"}, {"b", "2"}}), apply([]write{{"b", "2"}, {"a", "1"}}); x[0] == y[0] {
		t.Fatal("state digest ignores the order of writes")
	}
	// The same writes in other batches make another chain.
	if d := apply([]write{{"ab", "c"}, {"ab", "d"}}); d[0] == ab[1] {
		t.Fatal("state digest ignores where batches begin")
	}
}

// A log whose head has no state digest but whose state is not empty was
// written before the digest chained the writes: it is refused, as its
// checkpoints would never match the other replicas'. Without state it opens.
func TestOpenRefusesStateWithoutDigest(t *testing.T) {
	for _, withState := range []bool{true, false} {
		dir := t.TempDir()
		l := openDir(t, dir)
		if _, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) {
			if withState {
				return nil, tx.Set([]byte("k"), []byte("v"))
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		old := l.head
		old.State = crypto.Digest{}
		if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(keyHead, marshalHead(old)) }); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir, Genesis: testGenesis, Logger: quietLogger()})
		if withState {
			if !errors.Is(err, ErrOlderFormat) {
				t.Fatalf("a log with state and no state digest opened: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("a log without state and without a state digest: %v", err)
		}
		if seq, d := l.StateDigest(); seq != 1 || d != (crypto.Digest{}) {
			t.Fatalf("state digest (%d, %x), want (1, zero)", seq, d)
		}
		l.Close()
	}
}

// A batch whose executor fails leaves the state digest as it was.
func TestStateDigestIgnoresFailedBatches(t *testing.T) {
	l := openMem(t)
	if _, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) { return nil, tx.Set([]byte("a"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	_, before := l.StateDigest()
	_, err := l.Apply(header(2, 0), func(tx *Tx) ([][]byte, error) {
		if err := tx.Set([]byte("a"), []byte("2")); err != nil {
			return nil, err
		}
		return nil, errors.New("executor failed")
	})
	if err == nil {
		t.Fatal("a failing executor's batch was applied")
	}
	if seq, after := l.StateDigest(); seq != 1 || after != before {
		t.Fatalf("state digest (%d, %x) after a failed batch, want (1, %x)", seq, after, before)
	}
	if _, err := l.Apply(header(2, 0), func(tx *Tx) ([][]byte, error) { return nil, tx.Set([]byte("a"), []byte("2")) }); err != nil {
		t.Fatal(err)
	}
	other := openMem(t)
	for seq, v := range []string{"1", "2"} {
		if _, err := other.Apply(header(uint64(seq+1), 0), func(tx *Tx) ([][]byte, error) { return nil, tx.Set([]byte("a"), []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	_, got := l.StateDigest()
	if _, want := other.StateDigest(); got != want {
		t.Fatal("the failed batch left a trace in the state digest")
	}
}

func TestBatchTooBig(t *testing.T) {
	l, err := Open(Options{InMemory: true, Genesis: testGenesis, Logger: quietLogger(), MemTableBytes: memTableBytesMin})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	big := make([]byte, 64<<10)
	_, err = l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) {
		for i := 0; i < 200; i++ {
			if err := tx.Set([]byte(fmt.Sprintf("k%d", i)), big); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if !errors.Is(err, ErrBatchTooBig) {
		t.Fatalf("oversized batch: %v, want ErrBatchTooBig", err)
	}
	if seq, _ := l.Applied(); seq != 0 {
		t.Fatalf("head moved to %d", seq)
	}
	// An entry that would not decode again under the codec's limits.
	h := header(1, 0)
	h.Certificate = make([]byte, codec.MaxMessageBytes)
	if _, err := openMem(t).Apply(h, func(*Tx) ([][]byte, error) { return nil, nil }); !errors.Is(err, ErrBatchTooBig) {
		t.Fatalf("entry over the codec limit: %v, want ErrBatchTooBig", err)
	}
}

func TestCorruptValueDetected(t *testing.T) {
	l := openMem(t)
	applyAppends(t, l, 1, appendSpec{"s", []int{1}})
	e, err := l.Entry(1)
	if err != nil {
		t.Fatal(err)
	}
	e.Results[0] = []byte("forged")
	if err := e.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("forged results pass Check: %v", err)
	}
	e.ResultsRoot = crypto.MerkleRoot(e.Results)
	if _, err := DecodeEntry(codec.MustMarshal(e)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("entry with a stale hash decoded: %v", err)
	}
	// Overwrite the stored entry behind the log's back.
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(entryKey(1), codec.MustMarshal(e)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Entry(1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt stored entry served: %v", err)
	}
	if err := l.Walk(func(*Entry) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("walk over a corrupt entry: %v", err)
	}
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(eventKey(1), []byte{0xff}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EventAt(1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt stored event served: %v", err)
	}
}

// A stream's version comes from its greatest index key, which no other
// stream's keys can sort among, even one whose name extends it; the head key
// that logs before 2026-12-03 wrote (0x13 stream) is never read.
func TestStreamVersionFromIndex(t *testing.T) {
	l := openMem(t)
	// What an older log holds for "s": a head that now disagrees with it.
	if err := l.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{0x13}, "s"...), u64(99))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) {
		if _, _, err := tx.AppendEvents("s", numberedEvents(1, 3, 10)); err != nil {
			return nil, err
		}
		_, _, err := tx.AppendEvents("s\xff", numberedEvents(4, 5, 10))
		return nil, err
	}); err != nil {
		t.Fatal(err)
	}
	for _, cached := range []bool{true, false} {
		if !cached {
			l.cache = newExecCache(cacheBounds{})
		}
		if _, err := l.Apply(header(uint64(map[bool]int{true: 2, false: 3}[cached]), 0), func(tx *Tx) ([][]byte, error) {
			for stream, want := range map[string]int64{"s": 2, "s\xff": 4, "t": -1, "s\xff\xff": -1} {
				if v, err := tx.StreamVersion(stream); err != nil || v != want {
					t.Errorf("cached %v: StreamVersion(%q) = %d (%v), want %d", cached, stream, v, err, want)
				}
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	evs, next, err := l.ReadStream("s", StreamEnd, 10, true)
	if err != nil || len(evs) != 3 || evs[0].Version != 2 || evs[2].Version != 0 || next != 0 {
		t.Fatalf("ReadStream(s) backwards = %d events from version %v, next %d (%v)", len(evs), evs, next, err)
	}
	if _, _, err := l.ReadStream("t", 0, 10, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadStream of a stream with no events: %v, want ErrNotFound", err)
	}
}
