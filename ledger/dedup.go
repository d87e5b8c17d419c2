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
// cache runs dry is it refilled from an ordered key scan. Eviction therefore
// costs a key scan once every lowSeqsMax evictions instead of every time.
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

func loadClient(tx *eventlog.Tx, client crypto.PublicKey) (clientState, error) {
	b, found, err := tx.Get(clientKey(client))
	if err != nil || !found {
		return clientState{}, err
	}
	c, err := decodeClientState(b)
	if err != nil {
		return c, fmt.Errorf("client %v: corrupt state: %w", client, err)
	}
	return c, nil
}

// record notes that seq's result was stored, evicts the lowest result when the
// window overflows, and saves the record.
func (c *clientState) record(tx *eventlog.Tx, client crypto.PublicKey, seq, window uint64) error {
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
	c.count++
	if c.count > window {
		if err := tx.Delete(resultKey(client, c.low[0])); err != nil {
			return err
		}
		c.count--
		c.low = c.low[1:]
		if len(c.low) == 0 {
			if err := c.refill(tx, client); err != nil {
				return err
			}
		}
	}
	return tx.Set(clientKey(client), c.encode())
}

// refill reloads the lowest retained seqs from the ordered result keys.
func (c *clientState) refill(tx *eventlog.Tx, client crypto.PublicKey) error {
	keys, err := tx.Keys(resultPrefix(client), lowSeqsMax)
	if err != nil {
		return err
	}
	prefix := len(resultPrefix(client))
	c.low = make([]uint64, 0, len(keys))
	for _, k := range keys {
		if len(k) != prefix+8 {
			return fmt.Errorf("client %v: result key of %d bytes", client, len(k))
		}
		c.low = append(c.low, binary.BigEndian.Uint64(k[prefix:]))
	}
	if uint64(len(c.low)) != min(c.count, lowSeqsMax) {
		return fmt.Errorf("client %v: %d results on record, %d found", client, c.count, len(c.low))
	}
	return nil
}
