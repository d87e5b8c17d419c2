package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4/skl"

	"github.com/ordoledger/ordo/crypto"
)

// The smallest store Open accepts must take a full budget, an entry of
// entryBytesRoom and the head in one badger transaction, as badger sizes it.
func TestBudgetFitsTheSmallestStore(t *testing.T) {
	maxBytes := int64(15*memTableBytesMin) / 100
	maxCount := maxBytes / int64(skl.MaxNodeSize)
	if BatchWritesMax+2 >= maxCount {
		t.Fatalf("budget of %d writes, badger takes fewer than %d", BatchWritesMax, maxCount)
	}
	if need := int64(BatchWriteBytesMax + entryBytesRoom + 2*1024); need >= maxBytes {
		t.Fatalf("budget and entry need %d bytes, badger takes fewer than %d", need, maxBytes)
	}
}

// numberedEvents makes n events with IDs from..from+n-1 and payload bytes of data.
func numberedEvents(from, n, payload int) []NewEvent {
	evs := make([]NewEvent, n)
	for i := range evs {
		var id [16]byte
		id[0] = 0x7e
		binary.BigEndian.PutUint64(id[8:], uint64(from+i))
		evs[i] = NewEvent{ID: id, Type: "t", Data: make([]byte, payload), ContentHash: crypto.Hash(id[:])}
	}
	return evs
}

// A batch filled to the budget with events, in the smallest in-memory store,
// with an entry of entryBytesRoom, commits; badger does not get to refuse it.
func TestFullBudgetCommits(t *testing.T) {
	l, err := Open(Options{InMemory: true, Genesis: testGenesis, Logger: quietLogger(), MemTableBytes: memTableBytesMin})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, payload := range []int{1, 2000} {
		seq, _ := l.Applied()
		h := header(seq+1, 1)
		h.Requests[0] = make([]byte, entryBytesRoom-4096)
		var appended, refused int
		e, err := l.Apply(h, func(tx *Tx) ([][]byte, error) {
			for next := 0; ; next += 100 {
				_, _, err := tx.AppendEvents(fmt.Sprintf("s%d", next%7), numberedEvents(int(seq)<<32+next, 100, payload))
				if errors.Is(err, ErrNoRoom) {
					refused++
					if refused == 3 {
						break
					}
					continue
				}
				if err != nil {
					return nil, err
				}
				appended += 100
			}
			writes, bytes := tx.Room()
			if writes >= 300 && bytes > 100*(int64(payload)+300) {
				return nil, fmt.Errorf("appends refused with %d writes and %d bytes of room", writes, bytes)
			}
			return [][]byte{nil}, nil
		})
		if err != nil {
			t.Fatalf("payload %d: batch of %d events at the budget: %v", payload, appended, err)
		}
		if appended == 0 || e.EventCount != uint64(appended) {
			t.Fatalf("payload %d: entry holds %d events, %d appended", payload, e.EventCount, appended)
		}
		got, err := l.Entry(e.Seq)
		if err != nil || got.EventCount != e.EventCount {
			t.Fatalf("payload %d: stored entry %+v (%v)", payload, got, err)
		}
	}
}

// ErrNoRoom leaves the transaction as it was: no events, no index entries,
// positions and versions free for the next append; Reserve keeps room back
// from AppendEvents but not from Set; the budget itself is a hard limit.
func TestAppendWithoutRoomWritesNothing(t *testing.T) {
	l := openMem(t)
	_, err := l.Apply(header(1, 0), func(tx *Tx) ([][]byte, error) {
		w0, b0 := tx.Room()
		if w0 != BatchWritesMax || b0 != BatchWriteBytesMax {
			return nil, fmt.Errorf("fresh room %d writes %d bytes", w0, b0)
		}
		tx.Reserve(w0-2, 0) // one event takes three writes
		if _, _, err := tx.AppendEvents("s", numberedEvents(1, 1, 10)); !errors.Is(err, ErrNoRoom) {
			return nil, fmt.Errorf("append into reserved room: %v, want ErrNoRoom", err)
		}
		if w, b := tx.Room(); w != w0 || b != b0 {
			return nil, fmt.Errorf("refused append used %d writes %d bytes", w0-w, b0-b)
		}
		if v, err := tx.StreamVersion("s"); err != nil || v != -1 {
			return nil, fmt.Errorf("stream after a refused append at version %d (%v)", v, err)
		}
		if _, ok, err := tx.EventByID(numberedEvents(1, 1, 10)[0].ID); ok || err != nil {
			return nil, fmt.Errorf("refused event's id indexed (%v)", err)
		}
		if err := tx.Set([]byte("k"), []byte("v")); err != nil {
			return nil, fmt.Errorf("set into reserved room: %w", err)
		}
		tx.Reserve(0, 0)
		pos, last, err := tx.AppendEvents("s", numberedEvents(1, 1, 10))
		if err != nil || pos[0] != 1 || last != 0 {
			return nil, fmt.Errorf("append after the refusal at %v version %d: %v", pos, last, err)
		}
		if err := tx.Set([]byte("big"), make([]byte, BatchWriteBytesMax)); !errors.Is(err, ErrBatchTooBig) {
			return nil, fmt.Errorf("set past the budget: %v, want ErrBatchTooBig", err)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := l.ReadAll(0, 10)
	if err != nil || len(evs) != 1 || evs[0].Position != 1 || evs[0].Version != 0 {
		t.Fatalf("log after the batch: %+v (%v), want one event at position 1", evs, err)
	}
}
