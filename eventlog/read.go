package eventlog

import (
	"errors"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/crypto"
)

// Read bounds. A read returns at most ReadLimitMax items and stops after the
// item that takes it past its byte bound (so it always makes progress); a
// limit <= 0 or above the maximum means the maximum.
const (
	ReadLimitMax = 1000
	// ReadBytesMax bounds the stored bytes of one event read.
	ReadBytesMax = 4 << 20
	// EntriesLimitMax and EntriesBytesMax bound one catch-up read: entries
	// carry whole batches, and the answer must fit one p2p message.
	EntriesLimitMax = 256
	EntriesBytesMax = 4 << 20
)

func clampLimit(limit, max int) int {
	if limit <= 0 || limit > max {
		return max
	}
	return limit
}

// Entry returns the entry at seq, or ErrNotFound.
func (l *Log) Entry(seq uint64) (*Entry, error) {
	var e *Entry
	err := l.db.View(func(txn *badger.Txn) error {
		v, found, err := get(txn, entryKey(seq))
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		e, err = decodeStoredEntry(seq, v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", seq, err)
	}
	return e, nil
}

// Entries returns consecutive entries from seq from on, bounded by limit,
// EntriesLimitMax and EntriesBytesMax; empty when from is past the head.
func (l *Log) Entries(from uint64, limit int) ([]*Entry, error) {
	limit = clampLimit(limit, EntriesLimitMax)
	var out []*Entry
	err := l.db.View(func(txn *badger.Txn) error {
		prefix := []byte{prefixEntry}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		size := 0
		for it.Seek(entryKey(from)); it.ValidForPrefix(prefix) && len(out) < limit && size < EntriesBytesMax; it.Next() {
			e, n, err := readEntryItem(it.Item())
			if err != nil {
				return err
			}
			out = append(out, e)
			size += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("entries from %d: %w", from, err)
	}
	return out, nil
}

// readEntryItem decodes the entry an iterator stands on and returns the size
// of its stored value.
func readEntryItem(item *badger.Item) (*Entry, int, error) {
	seq, err := decodeU64("entry key", item.Key()[1:])
	if err != nil {
		return nil, 0, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, 0, fmt.Errorf("read entry %d: %w", seq, err)
	}
	e, err := decodeStoredEntry(seq, v)
	if err != nil {
		return nil, 0, err
	}
	return e, len(v), nil
}

// Walk calls fn for every entry in seq order, checking that each links to the
// one before (the first to the genesis). It stops at fn's first error.
func (l *Log) Walk(fn func(*Entry) error) error {
	return l.db.View(func(txn *badger.Txn) error {
		prefix := []byte{prefixEntry}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		prev, want := l.opts.Genesis, uint64(1)
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			e, _, err := readEntryItem(it.Item())
			if err != nil {
				return fmt.Errorf("walk: %w", err)
			}
			if e.Seq != want || e.PrevHash != prev {
				return fmt.Errorf("walk: entry %d does not follow entry %d: %w", e.Seq, want-1, ErrCorrupt)
			}
			if err := fn(e); err != nil {
				return err
			}
			prev, want = e.Hash, e.Seq+1
		}
		return nil
	})
}

// EventAt returns the event at a global position, or ErrNotFound.
func (l *Log) EventAt(pos uint64) (*Event, error) {
	var ev *Event
	err := l.db.View(func(txn *badger.Txn) error {
		var err error
		ev, _, err = eventAt(txn, pos)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", pos, err)
	}
	return ev, nil
}

// eventAt reads one event and the size of its stored value.
func eventAt(txn *badger.Txn, pos uint64) (*Event, int, error) {
	v, found, err := get(txn, eventKey(pos))
	if err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, 0, ErrNotFound
	}
	ev, err := decodeStoredEvent(pos, v)
	return ev, len(v), err
}

// ReadAll reads the $all log from position from (0 reads from the start). next
// is the position to read from next time: one past the last event returned, or
// from itself when nothing was returned.
//
// The latest events come from memory; their Data and Metadata are shared
// with the log's cache and must be treated as read-only.
func (l *Log) ReadAll(from uint64, limit int) (events []Event, next uint64, err error) {
	if from == 0 {
		from = 1
	}
	limit = clampLimit(limit, ReadLimitMax)
	if evs, ok := l.readRecent(from, limit); ok {
		return evs, from + uint64(len(evs)), nil
	}
	next = from
	err = l.db.View(func(txn *badger.Txn) error {
		prefix := []byte{prefixEvent}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		size := 0
		for it.Seek(eventKey(from)); it.ValidForPrefix(prefix) && len(events) < limit && size < ReadBytesMax; it.Next() {
			item := it.Item()
			pos, err := decodeU64("event key", item.Key()[1:])
			if err != nil {
				return err
			}
			if pos != next {
				return fmt.Errorf("position %d follows %d: %w", pos, next-1, ErrCorrupt)
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read event %d: %w", pos, err)
			}
			ev, err := decodeStoredEvent(pos, v)
			if err != nil {
				return err
			}
			events = append(events, *ev)
			size += len(v)
			next = pos + 1
		}
		return nil
	})
	if err != nil {
		return nil, from, fmt.Errorf("read $all from %d: %w", from, err)
	}
	return events, next, nil
}

// readRecent serves ReadAll from the cache of recent events when from lies
// within it, under the same bounds as a read from storage.
func (l *Log) readRecent(from uint64, limit int) ([]Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recent) == 0 || from < l.recent[0].ev.Position || from > l.recent[len(l.recent)-1].ev.Position {
		return nil, false
	}
	var evs []Event
	size := 0
	for _, se := range l.recent[from-l.recent[0].ev.Position:] {
		if len(evs) >= limit || size >= ReadBytesMax {
			break
		}
		evs = append(evs, se.ev)
		size += se.size
	}
	return evs, true
}

// ReadStream reads one stream starting at version from.
//
// Forwards it returns versions from, from+1, …; next is one past the last
// version returned (from when nothing was returned), ready for polling.
// Backwards it returns versions from, from-1, … down to 0 (a from past the
// stream's end starts at its last event, so math.MaxUint64 means "from the
// end"); next is the version below the last one returned, and the read is
// complete when no event is returned or the last one has version 0.
// A stream with no events is ErrNotFound.
func (l *Log) ReadStream(stream string, from uint64, limit int, backwards bool) ([]Event, uint64, error) {
	if err := checkStreamName(stream); err != nil {
		return nil, from, fmt.Errorf("read stream: %w", err)
	}
	limit = clampLimit(limit, ReadLimitMax)
	var events []Event
	next := from
	err := l.db.View(func(txn *badger.Txn) error {
		last, found, err := lastStreamVersion(txn, stream)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		start := from
		if backwards && start > last {
			start = last
		}
		prefix := streamPrefix(stream)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: backwards})
		defer it.Close()
		size := 0
		for it.Seek(streamKey(stream, start)); it.ValidForPrefix(prefix) && len(events) < limit && size < ReadBytesMax; it.Next() {
			item := it.Item()
			version, err := decodeU64("stream key", item.Key()[len(prefix):])
			if err != nil {
				return err
			}
			pv, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read version %d: %w", version, err)
			}
			pos, err := decodeU64("stream index value", pv)
			if err != nil {
				return err
			}
			ev, n, err := eventAt(txn, pos)
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("version %d points at missing position %d: %w", version, pos, ErrCorrupt)
			}
			if err != nil {
				return err
			}
			if ev.Stream != stream || ev.Version != version {
				return fmt.Errorf("version %d points at %s@%d: %w", version, ev.Stream, ev.Version, ErrCorrupt)
			}
			events = append(events, *ev)
			size += n
			if backwards {
				next = 0
				if version > 0 {
					next = version - 1
				}
			} else {
				next = version + 1
			}
		}
		return nil
	})
	if err != nil {
		return nil, from, fmt.Errorf("read stream %s from %d: %w", stream, from, err)
	}
	return events, next, nil
}

// lastStreamVersion is the version of the stream's last event, read from its
// greatest index key; found is false when the stream has no events.
func lastStreamVersion(txn *badger.Txn, stream string) (version uint64, found bool, err error) {
	prefix := streamPrefix(stream)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	defer it.Close()
	// Backwards, Seek stops at the greatest key at or below its argument.
	it.Seek(streamKey(stream, math.MaxUint64))
	if !it.ValidForPrefix(prefix) {
		return 0, false, nil
	}
	version, err = decodeU64("stream key of "+stream, it.Item().Key()[len(prefix):])
	if err != nil {
		return 0, false, err
	}
	return version, true, nil
}

// StreamEnd is the from that reads a stream backwards from its last event.
const StreamEnd = math.MaxUint64

// StateDigest is the digest of the replicated executor state as of the newest
// applied entry, with that entry's seq. It is a hash chain over the batches'
// state writes: every Tx.Set and Tx.Delete, in the order the executor made
// them, from the empty state at genesis. Replicas that applied the same
// entries with the same executor have the same digest, and any difference in
// what they wrote shows in it. It is kept with the head, so reading it costs
// nothing, however large the state.
func (l *Log) StateDigest() (seq uint64, digest crypto.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head.Seq, l.head.State
}
