package ledger

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// At-most-once state. Per client the results of the last ClientWindow executed
// seqs are kept under resultKey; when a new one would exceed the window the
// lowest is evicted. Client seqs are not dense (the CLI uses wall-clock
// nanoseconds) and arrive out of order, so "lowest" needs an ordered view: the
// client record caches the lowSeqsMax lowest retained seqs, and only when that
// cache runs dry is it refilled from an ordered scan of the result keys. The
// scan reads the state as committed before the batch (an ordered scan of the
// batch's own transaction would sort all its pending writes every time) and
// merges in what this batch changed, which window tracks.
//
// A seq above every retained one was never executed, so its result need not
// be looked up: with clock-like seqs that is almost every request. The
// highest retained seq is not in the record (which is replicated state, and
// hashed into the state digest); the log keeps it as a memo under the
// client's record key (eventlog.Tx.Memo), and when the memo is missing (after
// a restart, or once the log dropped it) it is the client's last result key.
// store keeps the memo true: it raises it to every seq it stores, and
// evicting never removes the highest seq.
const lowSeqsMax = 16

const (
	keyResult byte = 'r'
	keyClient byte = 'c'
)

func resultPrefix(client crypto.PublicKey) []byte {
	return append([]byte{keyResult}, client[:]...)
}

func resultKey(client crypto.PublicKey, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(resultPrefix(client), seq)
}

func clientKey(client crypto.PublicKey) []byte {
	return append([]byte{keyClient}, client[:]...)
}

// clientState is a client's record: how many results are kept, and a prefix
// of their seqs in ascending order (the lowest ones; never empty while count > 0).
type clientState struct {
	count uint64
	low   []uint64
	// high is the highest retained seq while count > 0; it is not encoded.
	high uint64
}

// encode is count(8) followed by each low seq(8), big endian.
func (c *clientState) encode() []byte {
	b := make([]byte, 0, 8+8*len(c.low))
	b = binary.BigEndian.AppendUint64(b, c.count)
	for _, s := range c.low {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return b
}

func decodeClientState(b []byte) (clientState, error) {
	var c clientState
	if len(b) < 8 || len(b)%8 != 0 || len(b) > 8+8*lowSeqsMax {
		return c, fmt.Errorf("client record of %d bytes", len(b))
	}
	c.count = binary.BigEndian.Uint64(b)
	for i := 8; i < len(b); i += 8 {
		c.low = append(c.low, binary.BigEndian.Uint64(b[i:]))
	}
	if (c.count == 0) != (len(c.low) == 0) || uint64(len(c.low)) > c.count || !slices.IsSorted(c.low) {
		return c, fmt.Errorf("client record count %d with %d low seqs", c.count, len(c.low))
	}
	return c, nil
}

// window is the at-most-once state as one batch sees and changes it.
type window struct {
	tx   *eventlog.Tx
	size uint64
	// changed holds, per client touched by this batch, the result keys the
	// batch added and removed. Only looked up, never iterated.
	changed map[crypto.PublicKey]*batchChanges
}

// batchChanges are one client's result seqs stored (still present) and
// evicted (present before the batch) by the current batch.
type batchChanges struct {
	added   []uint64 // ascending
	removed map[uint64]struct{}
}

func newWindow(tx *eventlog.Tx, size int) *window {
	return &window{tx: tx, size: uint64(size), changed: map[crypto.PublicKey]*batchChanges{}}
}

func (w *window) load(client crypto.PublicKey) (clientState, error) {
	key := clientKey(client)
	b, found, err := w.tx.Get(key)
	if err != nil || !found {
		return clientState{}, err
	}
	c, err := decodeClientState(b)
	if err != nil {
		return c, fmt.Errorf("client %v: corrupt state: %w", client, err)
	}
	if h, ok := w.tx.Memo(key); ok {
		c.high = h
		return c, nil
	}
	// No store of this batch was for this client (store sets the memo),
	// so its committed result keys are all it has.
	last, found, err := w.tx.LastCommittedKey(resultPrefix(client))
	if err != nil {
		return c, err
	}
	prefix := len(resultPrefix(client))
	if !found || len(last) != prefix+8 {
		return c, fmt.Errorf("client %v: %d results on record, last result key %x", client, c.count, last)
	}
	c.high = binary.BigEndian.Uint64(last[prefix:])
	return c, w.tx.SetMemo(key, c.high)
}

// mayBeRetained reports whether seq may be among the retained seqs: false
// means its result is certainly not stored.
func (c *clientState) mayBeRetained(seq uint64) bool {
	return c.count > 0 && seq <= c.high
}

// tooOld reports whether seq is below every retained seq of a full window.
func (w *window) tooOld(c *clientState, seq uint64) bool {
	return c.count >= w.size && seq < c.low[0]
}

// store keeps seq's result, evicts the lowest result when the window
// overflows, and saves the client record.
func (w *window) store(client crypto.PublicKey, c *clientState, seq uint64, result []byte) error {
	if err := w.tx.Set(resultKey(client, seq), result); err != nil {
		return err
	}
	// seq is new to both sides of refill's merge: it was not retained (or
	// executeOnce would have returned its result) and this batch did not evict
	// it (an evicted seq is below every retained one, so the full window
	// refuses it as too old).
	ch := w.changes(client)
	at, _ := slices.BinarySearch(ch.added, seq)
	ch.added = slices.Insert(ch.added, at, seq)

	// low is a prefix of the sorted retained seqs. seq joins it when it sorts
	// inside it, or when low already holds every retained seq; either way the
	// prefix property survives, also after trimming low to lowSeqsMax.
	i, _ := slices.BinarySearch(c.low, seq)
	if i < len(c.low) || uint64(len(c.low)) == c.count {
		c.low = slices.Insert(c.low, i, seq)
		if len(c.low) > lowSeqsMax {
			c.low = c.low[:lowSeqsMax]
		}
	}
	if c.count == 0 || seq > c.high {
		c.high = seq
	}
	c.count++
	if c.count > w.size {
		evict := c.low[0]
		if evict == c.high {
			panic(fmt.Sprintf("ledger: client %v: evicting seq %d, the highest retained", client, evict))
		}
		if err := w.tx.Delete(resultKey(client, evict)); err != nil {
			return err
		}
		if at, ok := slices.BinarySearch(ch.added, evict); ok {
			ch.added = slices.Delete(ch.added, at, at+1)
		} else {
			ch.removed[evict] = struct{}{}
		}
		c.count--
		c.low = c.low[1:]
		if len(c.low) == 0 {
			if err := w.refill(client, c, ch, evict); err != nil {
				return err
			}
		}
	}
	key := clientKey(client)
	if err := w.tx.Set(key, c.encode()); err != nil {
		return err
	}
	return w.tx.SetMemo(key, c.high)
}

func (w *window) changes(client crypto.PublicKey) *batchChanges {
	ch, ok := w.changed[client]
	if !ok {
		ch = &batchChanges{removed: map[uint64]struct{}{}}
		w.changed[client] = ch
	}
	return ch
}

// refill reloads the lowest retained seqs after evicted, which was the lowest:
// those committed before the batch and not evicted since (the first
// lowSeqsMax + evicted keys above it contain them all), merged with those the
// batch added. Everything at or below evicted is gone, so the scan starts
// above it rather than stepping through the deleted keys.
func (w *window) refill(client crypto.PublicKey, c *clientState, ch *batchChanges, evicted uint64) error {
	keys, err := w.tx.CommittedKeys(resultPrefix(client), resultKey(client, evicted+1), lowSeqsMax+len(ch.removed))
	if err != nil {
		return err
	}
	prefix := len(resultPrefix(client))
	low := make([]uint64, 0, len(keys)+len(ch.added))
	for _, k := range keys {
		if len(k) != prefix+8 {
			return fmt.Errorf("client %v: result key of %d bytes", client, len(k))
		}
		seq := binary.BigEndian.Uint64(k[prefix:])
		if _, gone := ch.removed[seq]; !gone {
			low = append(low, seq)
		}
	}
	low = append(low, ch.added[:min(len(ch.added), lowSeqsMax)]...)
	slices.Sort(low)
	c.low = low[:min(len(low), lowSeqsMax)]
	if uint64(len(c.low)) != min(c.count, lowSeqsMax) {
		return fmt.Errorf("client %v: %d results on record, %d found", client, c.count, len(c.low))
	}
	return nil
}
