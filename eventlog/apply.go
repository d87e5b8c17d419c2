package eventlog

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Apply runs exec inside one badger transaction, then writes the entry (results,
// results root, hash link, first position, event count), every event and index
// exec produced, and the head marker in that same transaction, and commits. With
// SyncWrites the batch is on disk when Apply returns. Anything but
// h.Seq == Applied()+1 is refused with ErrOutOfOrder. If exec fails, nothing is
// written and the head does not move. exec must return one result per request.
func (l *Log) Apply(h EntryHeader, exec func(tx *Tx) (results [][]byte, err error)) (*Entry, error) {
	if exec == nil {
		return nil, fmt.Errorf("apply entry %d: no executor", h.Seq)
	}
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	l.mu.Lock()
	cur, closed := l.head, l.closed
	l.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("apply entry %d: %w", h.Seq, ErrClosed)
	}
	if h.Seq != cur.Seq+1 {
		return nil, fmt.Errorf("apply entry %d at head %d: %w", h.Seq, cur.Seq, ErrOutOfOrder)
	}

	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	tx := &Tx{db: l.db, txn: txn, cache: l.cache, ids: l.ids, seq: h.Seq, timestamp: h.Timestamp, nextPosition: cur.LastPosition + 1}
	results, err := exec(tx)
	tx.done = true
	if tx.snapshot != nil {
		tx.snapshot.Discard()
	}
	if err != nil {
		return nil, fmt.Errorf("apply entry %d: %w", h.Seq, err)
	}
	if len(results) != len(h.Requests) {
		return nil, fmt.Errorf("apply entry %d: executor returned %d results for %d requests", h.Seq, len(results), len(h.Requests))
	}

	e := &Entry{
		Seq:           h.Seq,
		View:          h.View,
		Timestamp:     h.Timestamp,
		Digest:        h.Digest,
		Requests:      h.Requests,
		Certificate:   h.Certificate,
		Results:       results,
		ResultsRoot:   crypto.MerkleRoot(results),
		PrevHash:      cur.Hash,
		FirstPosition: cur.LastPosition + 1,
		EventCount:    tx.nextPosition - (cur.LastPosition + 1),
	}
	e.Hash = EntryHash(e.PrevHash, e.Seq, e.Digest, e.ResultsRoot)
	val, err := codec.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("apply entry %d: %w", h.Seq, err)
	}
	// What is stored must decode again under the codec's limits.
	if len(val) > codec.MaxMessageBytes || len(h.Requests) > codec.MaxArrayElements {
		return nil, fmt.Errorf("apply entry %d: %d requests in %d bytes exceed the codec's limits: %w", h.Seq, len(h.Requests), len(val), ErrBatchTooBig)
	}
	next := head{Seq: e.Seq, Hash: e.Hash, LastPosition: tx.nextPosition - 1, State: tx.state.next(cur.State, e.Seq)}
	if err := tx.write(entryKey(e.Seq), val); err != nil {
		return nil, fmt.Errorf("apply entry %d: %w", h.Seq, err)
	}
	if err := tx.write(keyHead, marshalHead(next)); err != nil {
		return nil, fmt.Errorf("apply entry %d: %w", h.Seq, err)
	}
	if err := txn.Commit(); err != nil {
		return nil, fmt.Errorf("apply entry %d: commit: %w", h.Seq, tooBig(err))
	}
	// Only now is what the batch read and wrote the committed state.
	l.cache.commit(tx)
	l.advance(next, tx.appended)
	return e, nil
}

// tooBig marks badger's transaction-size error with ErrBatchTooBig.
func tooBig(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("%w: %w", ErrBatchTooBig, err)
	}
	return err
}

// The executor's write budget: what one batch's executor may set and delete.
// It is part of the protocol, not of a node's configuration: every replica
// must refuse the same requests (see ErrNoRoom), so the budget cannot come
// from badger's own limits, which depend on each store's memtable. Open
// sizes every store so that a batch within the budget, plus its entry and
// head, always fits in one badger transaction.
const (
	// BatchWritesMax bounds the keys one batch's executor sets or deletes.
	BatchWritesMax = 1 << 16
	// BatchWriteBytesMax bounds the bytes of those writes, each counted as
	// badger counts it: key, value and WriteOverheadBytes.
	BatchWriteBytesMax = 6 << 20
	// WriteOverheadBytes is what badger adds to each write's key and value
	// when it sizes a transaction (version and meta bytes).
	WriteOverheadBytes = 12
)

// Tx is what an executor may do inside Apply. It is valid only while the exec
// function runs and only from the goroutine that called Apply.
type Tx struct {
	db       *badger.DB
	txn      *badger.Txn
	snapshot *badger.Txn // read-only, the state before this batch; made on first use
	// cache is the log's, as the batches before this one left it; it is
	// not changed until this one commits (see execCache).
	cache *execCache
	// ids is the log's ID filter (nil: none); AppendEvents adds to it before
	// the batch commits, so that it knows this batch's IDs too. An ID of a
	// batch that fails stays in it, which only costs a read.
	ids          *idFilter
	seq          uint64
	timestamp    int64
	nextPosition uint64
	done         bool
	// What this transaction learnt of the indexes, so that AppendEvents does
	// not repeat the executor's own lookups. Only AppendEvents writes stream
	// heads and ID keys, and it keeps both maps exact; they grow with the batch.
	heads  map[string]int64      // stream → version of its last event (-1: none)
	absent map[[16]byte]struct{} // IDs looked up and not found, nor appended since
	// values holds the state keys this batch read, and those it wrote that
	// the cache holds, each with its value as the batch has left it so far:
	// once the batch commits, that is the committed value. Every Set and
	// Delete of a key in it or in the cache updates it.
	values map[string]stateValue
	// memos are the executor's memos this batch set (Tx.SetMemo).
	memos map[string]uint64
	// gets and seeks count this transaction's reads of badger (Reads).
	gets, seeks int
	// appended are this batch's events in position order, for the log's
	// cache of recent events once the batch commits.
	appended []storedEvent
	// state hashes the batch's Set and Delete calls for the state digest.
	state stateWrites
	// writes and writeBytes are what the executor has used of its budget;
	// reserved* is the part of the rest AppendEvents must leave free.
	writes, reservedWrites         int
	writeBytes, reservedWriteBytes int64
}

// Room is what is left of the batch's write budget: keys, and bytes counted
// as in BatchWriteBytesMax.
func (tx *Tx) Room() (writes int, bytes int64) {
	return BatchWritesMax - tx.writes, BatchWriteBytesMax - tx.writeBytes
}

// Reserve sets how much of the room AppendEvents must leave free, for writes
// the executor will make after it (0, 0 reserves nothing). Set and Delete
// ignore it: they are what the executor reserved the room for.
func (tx *Tx) Reserve(writes int, bytes int64) {
	tx.reservedWrites, tx.reservedWriteBytes = writes, bytes
}

// writeCost is what one write counts against BatchWriteBytesMax.
func writeCost(keyLen, valLen int) int64 { return int64(keyLen + valLen + WriteOverheadBytes) }

// use counts one write of keyLen+valLen bytes against the budget.
func (tx *Tx) use(keyLen, valLen int) error {
	b := writeCost(keyLen, valLen)
	if tx.writes+1 > BatchWritesMax || tx.writeBytes+b > BatchWriteBytesMax {
		return fmt.Errorf("entry %d: write %d of %d bytes after %d bytes: %w", tx.seq, tx.writes+1, b, tx.writeBytes, ErrBatchTooBig)
	}
	tx.writes++
	tx.writeBytes += b
	return nil
}

// Seq is the seq of the entry being applied.
func (tx *Tx) Seq() uint64 { return tx.seq }

// Timestamp is the entry's agreed log time, Unix nanoseconds.
func (tx *Tx) Timestamp() int64 { return tx.timestamp }

func (tx *Tx) check() error {
	if tx.done {
		return errors.New("eventlog: Tx used after its Apply's exec returned")
	}
	return nil
}

func (tx *Tx) get(key []byte) ([]byte, bool, error) {
	if err := tx.check(); err != nil {
		return nil, false, err
	}
	tx.gets++
	return get(tx.txn, key)
}

// Reads is how often this transaction has read badger so far: point reads
// (gets), and ordered scans started (seeks). What the log's cache answered
// is not counted.
func (tx *Tx) Reads() (gets, seeks int) { return tx.gets, tx.seeks }

func (tx *Tx) set(key, val []byte) error {
	if err := tx.check(); err != nil {
		return err
	}
	if err := tx.use(len(key), len(val)); err != nil {
		return err
	}
	return tx.write(key, val)
}

// write sets a key without the liveness check: Apply itself writes the entry
// after exec has returned.
func (tx *Tx) write(key, val []byte) error {
	if err := tx.txn.Set(key, val); err != nil {
		return fmt.Errorf("entry %d: set %x: %w", tx.seq, key[:1], tooBig(err))
	}
	return nil
}

// StreamVersion is the version of the stream's last event, -1 when the stream
// has no events.
func (tx *Tx) StreamVersion(stream string) (int64, error) {
	if err := checkStreamName(stream); err != nil {
		return 0, err
	}
	if v, ok := tx.heads[stream]; ok {
		return v, nil
	}
	ver := int64(-1)
	if u, ok := tx.cache.heads.get(stream); ok {
		ver = int64(u)
	} else {
		u, found, err := lastStreamVersion(tx.committed(), stream)
		if err != nil {
			return 0, err
		}
		if found {
			ver = int64(u)
		}
	}
	if tx.heads == nil {
		tx.heads = make(map[string]int64)
	}
	tx.heads[stream] = ver
	return ver, nil
}

// EventByID says where an event ID lives, if anywhere.
func (tx *Tx) EventByID(id [16]byte) (EventRef, bool, error) {
	if _, ok := tx.absent[id]; ok {
		return EventRef{}, false, nil
	}
	if tx.ids != nil && tx.ids.absent(id) {
		return EventRef{}, false, nil
	}
	v, found, err := tx.get(idKey(id))
	if err != nil {
		return EventRef{}, false, err
	}
	if !found {
		if tx.absent == nil {
			tx.absent = make(map[[16]byte]struct{})
		}
		tx.absent[id] = struct{}{}
		return EventRef{}, false, nil
	}
	r, err := decodeEventRef(id, v)
	if err != nil {
		return EventRef{}, false, err
	}
	return r, true, nil
}

// AppendEvents appends evs to stream as the next versions and global positions.
// The executor has already validated the stream name, the IDs and the expected
// version; a stream name the key layout cannot hold or an ID that already
// exists is refused here too, so the indexes can never be made inconsistent.
// Events that would not fit in the batch's write budget, less what the
// executor reserved, are refused whole with ErrNoRoom.
func (tx *Tx) AppendEvents(stream string, evs []NewEvent) (positions []uint64, lastVersion uint64, err error) {
	if len(evs) == 0 {
		return nil, 0, fmt.Errorf("append to %s: no events", stream)
	}
	cur, err := tx.StreamVersion(stream)
	if err != nil {
		return nil, 0, fmt.Errorf("append to %s: %w", stream, err)
	}
	// Encode everything first: the append is written whole or not at all.
	stored := make([]storedEvent, len(evs))
	kvs := make([]keyValue, 0, 3*len(evs))
	version := uint64(cur + 1)
	lastVersion = version + uint64(len(evs)) - 1
	var seen map[[16]byte]struct{} // only membership is asked of it
	if len(evs) > 1 {
		seen = make(map[[16]byte]struct{}, len(evs))
	}
	for i := range evs {
		ne := &evs[i]
		if _, exists, err := tx.EventByID(ne.ID); err != nil {
			return nil, 0, fmt.Errorf("append to %s: %w", stream, err)
		} else if exists {
			return nil, 0, fmt.Errorf("append to %s: event id %x already exists", stream, ne.ID)
		}
		if seen != nil {
			if _, dup := seen[ne.ID]; dup {
				return nil, 0, fmt.Errorf("append to %s: event id %x twice", stream, ne.ID)
			}
			seen[ne.ID] = struct{}{}
		}
		ev := Event{
			Position:    tx.nextPosition + uint64(i),
			Stream:      stream,
			Version:     version + uint64(i),
			ID:          ne.ID,
			Type:        ne.Type,
			ContentType: ne.ContentType,
			Data:        bytes.Clone(ne.Data),
			Metadata:    bytes.Clone(ne.Metadata),
			EntrySeq:    tx.seq,
			Timestamp:   tx.timestamp,
		}
		val, err := codec.Marshal(&ev)
		if err != nil {
			return nil, 0, fmt.Errorf("append to %s: %w", stream, err)
		}
		ref, err := codec.Marshal(&EventRef{Stream: stream, Position: ev.Position, Version: ev.Version, ContentHash: ne.ContentHash})
		if err != nil {
			return nil, 0, fmt.Errorf("append to %s: %w", stream, err)
		}
		stored[i] = storedEvent{ev: ev, size: len(val)}
		kvs = append(kvs,
			keyValue{eventKey(ev.Position), val},
			keyValue{streamKey(stream, ev.Version), u64(ev.Position)},
			keyValue{idKey(ev.ID), ref})
	}
	var cost int64
	for _, kv := range kvs {
		cost += writeCost(len(kv.key), len(kv.val))
	}
	roomWrites, roomBytes := tx.Room()
	if len(kvs) > roomWrites-tx.reservedWrites || cost > roomBytes-tx.reservedWriteBytes {
		return nil, 0, fmt.Errorf("append of %d events (%d writes, %d bytes) to %s: %w", len(evs), len(kvs), cost, stream, ErrNoRoom)
	}
	// Into the filter before the writes: an ID written is never one the
	// filter calls absent, even if a later write fails.
	if tx.ids != nil {
		for i := range stored {
			tx.ids.add(stored[i].ev.ID)
		}
	}
	for _, kv := range kvs {
		if err := tx.set(kv.key, kv.val); err != nil {
			return nil, 0, fmt.Errorf("append to %s: %w", stream, err)
		}
	}
	positions = make([]uint64, len(evs))
	for i := range stored {
		delete(tx.absent, stored[i].ev.ID)
		positions[i] = stored[i].ev.Position
	}
	tx.appended = append(tx.appended, stored...)
	tx.nextPosition += uint64(len(evs))
	tx.heads[stream] = int64(lastVersion)
	return positions, lastVersion, nil
}

type keyValue struct{ key, val []byte }

// Get reads a key of the replicated executor state: as this batch has left
// it, else from the log's cache of committed state, else from badger. The
// value returned is the caller's own copy.
func (tx *Tx) Get(key []byte) ([]byte, bool, error) {
	k, err := stateKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := tx.check(); err != nil {
		return nil, false, err
	}
	v, ok := tx.values[string(key)]
	if !ok {
		if v, ok = tx.cache.state.get(string(key)); !ok {
			// Not in values, so not written by this batch either: badger
			// returns the committed value.
			v.val, v.found, err = tx.get(k)
			if err != nil {
				return nil, false, err
			}
		}
		tx.keep(key, v)
	}
	return bytes.Clone(v.val), v.found, nil
}

// keep records key's value as this batch leaves it.
func (tx *Tx) keep(key []byte, v stateValue) {
	if tx.values == nil {
		tx.values = make(map[string]stateValue)
	}
	tx.values[string(key)] = v
}

// wrote records a write of key, if values or the cache hold the key: either
// would otherwise keep a stale value. A key neither holds is read from
// badger, which has this batch's writes, if the batch reads it later.
func (tx *Tx) wrote(key []byte, v stateValue) {
	if _, ok := tx.values[string(key)]; !ok {
		if _, ok := tx.cache.state.get(string(key)); !ok {
			return
		}
	}
	tx.keep(key, v)
}

// Set writes a key of the replicated executor state. The log keeps its own
// copies of key and value.
func (tx *Tx) Set(key, value []byte) error {
	k, err := stateKey(key)
	if err != nil {
		return err
	}
	v := bytes.Clone(value)
	if err := tx.set(k, v); err != nil {
		return err
	}
	// The log's copies are hashed: handing the caller's slices to the hash
	// would make them escape, and every caller allocate them.
	tx.state.add(stateWriteSet, k[1:], v)
	tx.wrote(k[1:], stateValue{val: v, found: true})
	return nil
}

// Delete removes a key of the replicated executor state.
func (tx *Tx) Delete(key []byte) error {
	k, err := stateKey(key)
	if err != nil {
		return err
	}
	if err := tx.check(); err != nil {
		return err
	}
	if err := tx.use(len(k), 0); err != nil {
		return err
	}
	if err := tx.txn.Delete(k); err != nil {
		return fmt.Errorf("entry %d: delete state key: %w", tx.seq, tooBig(err))
	}
	tx.state.add(stateWriteDelete, k[1:], nil)
	tx.wrote(k[1:], stateValue{})
	return nil
}

// Memo returns the number the executor memoised under key, if the log has
// it: from SetMemo earlier in this batch, or in a batch that committed. The
// log keeps memos in memory only, within memosMax entries and memosBytesMax
// bytes, drops those of a batch that failed, and may drop any of them
// between batches. So an executor may memo only what it can work out again
// from the state, and it must keep its memos true of the state as its own
// writes change it; then whether a memo is there changes no answer. A log
// serves one executor, whose memos these are.
func (tx *Tx) Memo(key []byte) (uint64, bool) {
	if tx.done {
		return 0, false
	}
	if v, ok := tx.memos[string(key)]; ok {
		return v, true
	}
	return tx.cache.memos.get(string(key))
}

// SetMemo memoises v under key (see Memo); the log keeps it once the batch
// commits. Keys are 1..StateKeyBytesMax bytes.
func (tx *Tx) SetMemo(key []byte, v uint64) error {
	if err := tx.check(); err != nil {
		return err
	}
	if len(key) == 0 || len(key) > StateKeyBytesMax {
		return fmt.Errorf("memo key of %d bytes, want 1..%d", len(key), StateKeyBytesMax)
	}
	if tx.memos == nil {
		tx.memos = make(map[string]uint64)
	}
	tx.memos[string(key)] = v
	return nil
}

// CommittedKeys returns up to limit keys of the replicated executor state that
// start with prefix and sort at or after from (which must itself start with
// prefix), in key order, as they were before this batch: this transaction's
// own writes are not seen. An iterator over the badger write transaction would
// sort all of its pending writes each time it is created, which made ordered
// scans during a large batch quadratic; an executor that needs its own writes
// merged keeps track of them itself. from lets a caller seek past ranges it
// knows are deleted, which a scan would otherwise step through tombstone by
// tombstone.
func (tx *Tx) CommittedKeys(prefix, from []byte, limit int) ([][]byte, error) {
	if err := tx.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("state keys: limit %d must be positive", limit)
	}
	if !bytes.HasPrefix(from, prefix) {
		return nil, fmt.Errorf("state keys: start %x outside prefix %x", from, prefix)
	}
	p := append([]byte{prefixState}, prefix...)
	it := tx.committed().NewIterator(badger.IteratorOptions{Prefix: p})
	defer it.Close()
	var keys [][]byte
	for it.Seek(append([]byte{prefixState}, from...)); it.ValidForPrefix(p) && len(keys) < limit; it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil)[1:])
	}
	return keys, nil
}

// LastCommittedKey returns the greatest key of the replicated executor state
// that starts with prefix, as it was before this batch (this transaction's
// own writes are not seen, as in CommittedKeys); found is false when there
// is none.
func (tx *Tx) LastCommittedKey(prefix []byte) (key []byte, found bool, err error) {
	if err := tx.check(); err != nil {
		return nil, false, err
	}
	if len(prefix) == 0 || len(prefix) > StateKeyBytesMax {
		return nil, false, fmt.Errorf("last state key: prefix of %d bytes, want 1..%d", len(prefix), StateKeyBytesMax)
	}
	p := append([]byte{prefixState}, prefix...)
	it := tx.committed().NewIterator(badger.IteratorOptions{Prefix: p, Reverse: true})
	defer it.Close()
	// Backwards, Seek stops at the greatest key at or below its argument:
	// this one sorts above every state key under the prefix, as none is
	// longer than StateKeyBytesMax.
	it.Seek(append(p, bytes.Repeat([]byte{0xff}, StateKeyBytesMax+1-len(prefix))...))
	if !it.ValidForPrefix(p) {
		return nil, false, nil
	}
	return it.Item().KeyCopy(nil)[1:], true, nil
}

// committed is the read-only view of the state before this batch, made on
// first use; each call starts a scan, which Reads counts.
func (tx *Tx) committed() *badger.Txn {
	if tx.snapshot == nil {
		tx.snapshot = tx.db.NewTransaction(false)
	}
	tx.seeks++
	return tx.snapshot
}
