package eventlog

import (
	"fmt"
	"hash/maphash"
	"sync/atomic"
)

// The ID filter: a Bloom filter of every event ID the log holds, so that
// AppendEvents learns that a new event's ID is new without searching badger's
// memtables and tables for a key that is not there, which is what nearly
// every append asks. It answers only "certainly absent" or "ask badger":
// a false positive costs the read it would have cost anyway, so neither its
// fill nor its seed can change an answer, and nothing it does reaches what
// is written, hashed or replicated. Its seed is random per process, so a
// client cannot choose IDs that collide in every node's filter.
//
// It is blocked: the idFilterHashes bits of one ID lie in one 512-bit block,
// so a lookup touches one cache line. At idFilterBitsLog the false-positive rate
// is about 0.02 % with 4 million IDs in the log, 0.2 % with 8 million, 2 %
// with 16 million and 14 % with 32 million; past that it keeps growing, and
// the executor reads badger more often, as it did before the filter.
//
// A log opened with more events than idFilterIDsMax has no filter (at that
// fill a filter answers "maybe" for about one new ID in six, and filling it
// would read every ID); one that grows past it keeps its filter, which keeps
// answering, less often.
//
// A new log's filter is complete at once. A reopened log's is filled from a
// scan of the ID index in the background, and is consulted only once the
// scan has finished; until then every lookup reads badger. AppendEvents adds
// every ID before it writes it, whether or not the scan is done, so an ID is
// either in the scan's snapshot or added before its commit: the filter never
// misses one.
const (
	// idFilterBitsLog sizes the filter of a log on disk: 2^27 bits, 16 MiB.
	idFilterBitsLog = 27
	// idFilterMemBitsLog sizes an in-memory log's (tests, replays): 1 MiB,
	// about 0.02 % false positives with 250,000 IDs, 0.2 % with 500,000 and
	// 2 % with a million.
	idFilterMemBitsLog = 23
	idFilterHashes     = 4
	idFilterBlockLog   = 9 // 512-bit blocks: one cache line
	// idFilterScanStopEvery is how many keys the filling scan reads between
	// checks that the log is closing.
	idFilterScanStopEvery = 4096
)

// idFilterIDsMax is the most events a log may hold when it opens for a filter
// of 2^bitsLog bits to be made: four bits per ID.
func idFilterIDsMax(bitsLog int) uint64 { return 1 << (bitsLog - 2) }

// idFilter is safe for one writer at a time besides the filling scan, and
// for readers on any goroutine: every word is read and set atomically.
type idFilter struct {
	seed      maphash.Seed
	blocksLog int // the filter has 2^blocksLog blocks
	words     []atomic.Uint64
	complete  atomic.Bool // every ID in the log is in words
}

// newIDFilter makes an empty filter of 2^bitsLog bits. The block index takes
// bitsLog-idFilterBlockLog of the hash's top bits, which must not reach the
// idFilterHashes×idFilterBlockLog low bits that pick the bits in a block.
func newIDFilter(bitsLog int) *idFilter {
	if bitsLog < idFilterBlockLog || bitsLog-idFilterBlockLog > 64-idFilterHashes*idFilterBlockLog {
		panic(fmt.Sprintf("eventlog: an id filter of 2^%d bits", bitsLog))
	}
	return &idFilter{seed: maphash.MakeSeed(), blocksLog: bitsLog - idFilterBlockLog, words: make([]atomic.Uint64, 1<<(bitsLog-6))}
}

// block returns the first word of id's block and the hash whose low bits
// pick id's bits in it (bit returns each).
func (f *idFilter) block(id [16]byte) (base int, h uint64) {
	h = maphash.Bytes(f.seed, id[:])
	// The block comes from the hash's top bits, the bits from its low ones
	// (idFilterHashes × idFilterBlockLog of them; newIDFilter keeps the two
	// apart).
	return int(h>>(64-f.blocksLog)) << (idFilterBlockLog - 6), h
}

// bit is the word (from base) and mask of id's i-th bit.
func bit(base int, h uint64, i int) (word int, mask uint64) {
	b := h >> (i * idFilterBlockLog) & (1<<idFilterBlockLog - 1)
	return base + int(b>>6), 1 << (b & 63)
}

// add records id.
func (f *idFilter) add(id [16]byte) {
	base, h := f.block(id)
	for i := range idFilterHashes {
		w, m := bit(base, h, i)
		f.words[w].Or(m)
	}
}

// absent reports whether id is certainly not in the log: false means the
// caller must look it up.
func (f *idFilter) absent(id [16]byte) bool {
	if !f.complete.Load() {
		return false
	}
	base, h := f.block(id)
	for i := range idFilterHashes {
		if w, m := bit(base, h, i); f.words[w].Load()&m == 0 {
			return true
		}
	}
	return false
}
