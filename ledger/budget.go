package ledger

import (
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// The ledger keeps every batch within the event log's write budget
// (eventlog.BatchWritesMax keys, eventlog.BatchWriteBytesMax bytes). Before a
// request writes anything it checks that the room left covers what the
// request may write, plus what the batch must still be able to write after
// it: a result for every later request, and the ledger records the batch
// has changed, which flush writes at the end. A request that does not fit
// gets CodeBatchFull and changes nothing. The budget is counted from the
// writes themselves, which every replica makes alike, so every replica
// refuses the same requests.

// RequestsPerBatchMax bounds the requests of one batch: the budget must hold
// a result for each of them however full the batch is. A genesis's
// batch_requests_max may not exceed it.
const RequestsPerBatchMax = 4096

// ResultsBytesMax bounds the encoded results of one batch, which its entry
// holds beside its requests (at most 8 MiB, the largest batch_bytes_max):
// the entry must still decode under codec.MaxMessageBytes. Results that
// write nothing count too: an idempotent retry, or a client seq executed
// before, lists every position of the original.
const ResultsBytesMax = 5 << 20

// cost is a part of the write budget: keys, and bytes counted as the event
// log counts them (key, value and eventlog.WriteOverheadBytes per write);
// and of the results budget (ResultsBytesMax).
type cost struct {
	writes  int
	bytes   int64
	results int64
}

func (c cost) plus(d cost) cost {
	return cost{c.writes + d.writes, c.bytes + d.bytes, c.results + d.results}
}

func (c cost) times(n int) cost {
	return cost{c.writes * n, c.bytes * int64(n), c.results * int64(n)}
}

// write is the cost of one write of a key and a value of these lengths.
func write(keyBytes, valueBytes int) cost {
	return cost{writes: 1, bytes: int64(keyBytes + valueBytes + eventlog.WriteOverheadBytes)}
}

// Bounds on what the ledger writes, checked against what it does write by
// TestWriteBounds (the largest operations, results and ledger events).
const (
	// resultBytesBase bounds an encoded Result with no positions and no
	// operation results: its hash, code, message (at most a few names of
	// NameBytesMax), stream version and entry seq.
	resultBytesBase = 640
	// resultBytesPerItem bounds what each position or operation result adds.
	resultBytesPerItem = 640
	// stateKeyPrefixBytes is the event log's prefix on every state key.
	stateKeyPrefixBytes = 1
	// accountRecordBytesMax and transferRecordBytesMax bound the encoded
	// records (three names of NameBytesMax at most, and numbers).
	accountRecordBytesMax  = 128
	transferRecordBytesMax = 128 + 3*(NameBytesMax+2)
	// ledgerEventBytesMax bounds a ledger event as the event log stores it:
	// its JSON data and metadata, type, stream name and numbers.
	ledgerEventBytesMax = 2048
	// ledgerEventRefBytesMax bounds its ID index entry (stream name, numbers,
	// content hash).
	ledgerEventRefBytesMax = 256
)

// resultBytesBound bounds an encoded Result with items positions or
// operation results.
func resultBytesBound(items int) int {
	return resultBytesBase + items*resultBytesPerItem
}

// windowCost bounds what storing one request's result writes: the result,
// the client's record (its count and up to lowSeqsMax seqs), and the
// eviction of its oldest result. itemsWindowCost is that for a result of at
// most resultBytesBound(items).
func windowCost(resultBytes int) cost {
	key := stateKeyPrefixBytes + len(resultKey(crypto.PublicKey{}, 0))
	return cost{results: int64(resultBytes)}.
		plus(write(key, resultBytes)).
		plus(write(stateKeyPrefixBytes+len(clientKey(crypto.PublicKey{})), 8+8*lowSeqsMax)).
		plus(write(key, 0))
}

func itemsWindowCost(items int) cost { return windowCost(resultBytesBound(items)) }

// accountFlushCost and transferFlushCost bound flush's write of one record.
var (
	accountFlushCost  = write(stateKeyPrefixBytes+2+NameBytesMax, accountRecordBytesMax)
	transferFlushCost = write(stateKeyPrefixBytes+2+NameBytesMax, transferRecordBytesMax)
	// eventCountCost is flush's write of the ledger's event count.
	eventCountCost = write(stateKeyPrefixBytes+len(ledgerEventsKey), 8)
)

// opCost bounds what one ledger operation writes when its chain commits:
// its event (the event, its stream index entry, its ID index entry and the
// stream head) and one expiry index change.
var opCost = write(9, ledgerEventBytesMax).
	plus(write(eventlog.StreamNameBytesMax+10, 8)).
	plus(write(17, ledgerEventRefBytesMax)).
	plus(write(eventlog.StreamNameBytesMax+1, 8)).
	plus(write(stateKeyPrefixBytes+len(expiryPrefix)+8+NameBytesMax, 0))

// opFlushCost bounds the records one operation can make dirty: two
// accounts, and a transfer and the pending transfer it settles.
var opFlushCost = accountFlushCost.times(2).plus(transferFlushCost.times(2))

// smallWindowCost is itemsWindowCost(0): the result of a request that adds
// no positions, such as CodeBatchFull.
var smallWindowCost = itemsWindowCost(0)

// hold is what the batch must keep free beyond a request's own writes: a
// small result for every request after it, the records flush will write,
// and the event count.
func (b *ledgerBatch) hold() cost {
	return smallWindowCost.times(b.requestsLeft).plus(b.flushCost).plus(eventCountCost)
}

// fits reports whether need, with hold() on top, fits the room left.
func (b *ledgerBatch) fits(need cost) bool {
	need = need.plus(b.hold())
	writes, bytes := b.tx.Room()
	return need.writes <= writes && need.bytes <= bytes && b.resultBytes+need.results <= ResultsBytesMax
}

// reserve makes AppendEvents leave hold() and extra free.
func (b *ledgerBatch) reserve(extra cost) {
	r := b.hold().plus(extra)
	b.tx.Reserve(r.writes, r.bytes)
}
