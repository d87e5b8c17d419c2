package pbft

import (
	"bytes"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// pendingCompactMin is the number of removed entries below which the pending
// queue is never compacted: compacting a short queue costs more than it frees.
const pendingCompactMin = 64

// RecentDeliveredMax is how many delivered request IDs a replica remembers, to
// ignore copies of them that arrive late (a forward delayed past delivery, a
// client's retry). It is a bound, not a guarantee: older duplicates, and any
// after a restart, may be proposed again, and the state machine executes a
// client's request once.
const RecentDeliveredMax = 1 << 14

// pendingReq is one client request waiting to be delivered.
type pendingReq struct {
	hash     crypto.Digest
	raw      []byte
	queuedAt time.Time
	// identified is the last identify call that found the entry in its
	// batch: a second find in the same call is a duplicate.
	identified uint64
	// pos is the entry's index in the queue while it is not removed (the
	// queue is shorter than 2·PendingRequestsMaxLimit+pendingCompactMin).
	pos int32
	// batched: the request is in a batch this replica accepted or proposed, so
	// the primary must not propose it again.
	batched bool
	// removed: the request was delivered. The index keeps the entry while
	// the request is among the recently delivered.
	removed bool
}

// deliveredMark is what the index holds for a recently delivered request that
// was not pending here. It is removed from the start and never modified.
var deliveredMark = &pendingReq{removed: true}

// pendingQueue keeps client requests in arrival order (FIFO), deduplicated by
// the hash of their bytes. Entries are removed in place (marked) and the slice
// is compacted once enough of it is dead, so removal from the middle is cheap.
type pendingQueue struct {
	// byHash indexes the pending requests and the recently delivered ones
	// (removed entries, or deliveredMark): Submit's checks are one lookup,
	// and a delivery needs none when the slot holds the entries.
	byHash  map[crypto.Digest]*pendingReq
	queue   []*pendingReq
	count   int // pending requests: entries of byHash not removed
	head    int // every entry before head is batched or removed
	first   int // every entry before first is removed
	removed int // removed entries still in queue
	// ready: entries neither batched nor removed, which a primary may propose.
	readyCount int
	readyBytes int
	// recent is a ring of the latest RecentDeliveredMax delivered request
	// IDs: exactly the keys whose byHash entry is removed.
	recent     []crypto.Digest
	recentNext int
	// identifyCalls numbers identify's calls, for pendingReq.identified.
	identifyCalls uint64
}

func newPendingQueue() pendingQueue {
	return pendingQueue{byHash: make(map[crypto.Digest]*pendingReq)}
}

// lookup returns the entry of h, nil if h is not pending, and whether h is
// among the latest delivered requests.
func (q *pendingQueue) lookup(h crypto.Digest) (p *pendingReq, delivered bool) {
	p = q.byHash[h]
	if p != nil && p.removed {
		return nil, true
	}
	return p, false
}

// remember adds a delivered request ID to the ring, evicting the oldest from
// the ring and the index. The caller has marked h delivered in the index.
func (q *pendingQueue) remember(h crypto.Digest) {
	if len(q.recent) < RecentDeliveredMax {
		q.recent = append(q.recent, h)
		return
	}
	delete(q.byHash, q.recent[q.recentNext])
	q.recent[q.recentNext] = h
	q.recentNext = (q.recentNext + 1) % RecentDeliveredMax
}

func (q *pendingQueue) len() int { return q.count }

func (q *pendingQueue) add(h crypto.Digest, raw []byte, at time.Time) {
	p := &pendingReq{hash: h, raw: raw, queuedAt: at, pos: int32(len(q.queue))}
	q.byHash[h] = p
	q.count++
	q.queue = append(q.queue, p)
	q.readyCount++
	q.readyBytes += len(raw)
}

// identify returns the ID of every request of a batch and its entry (nil for
// a request not pending here), or ok false when two requests of the batch are
// the same. seen is an empty scratch set, left empty. A request with the
// bytes of the entry after the last one found is that entry, whose ID is
// known: an honest primary proposes in arrival order, so a backup that
// received the requests in that order hashes none of them again. Any other
// request is hashed and looked up, which finds exactly the pending entry with
// those bytes, since the index holds one live entry per ID.
func (q *pendingQueue) identify(batch [][]byte, seen map[crypto.Digest]struct{}) (ids []crypto.Digest, entries []*pendingReq, ok bool) {
	defer clear(seen)
	q.identifyCalls++
	ids = make([]crypto.Digest, len(batch))
	entries = make([]*pendingReq, len(batch))
	q.advance()
	next := q.head
	for i, raw := range batch {
		var p *pendingReq
		if next < len(q.queue) && !q.queue[next].removed && bytes.Equal(q.queue[next].raw, raw) {
			p = q.queue[next]
		} else {
			ids[i] = requestID(raw)
			if p, _ = q.lookup(ids[i]); p == nil {
				// Not pending: only a set tells a second copy.
				if _, dup := seen[ids[i]]; dup {
					return nil, nil, false
				}
				seen[ids[i]] = struct{}{}
				continue
			}
		}
		if p.identified == q.identifyCalls {
			return nil, nil, false
		}
		p.identified = q.identifyCalls
		ids[i], entries[i] = p.hash, p
		next = int(p.pos) + 1
	}
	return ids, entries, true
}

// markBatched records that the requests are in an accepted batch. It returns
// their entries (nil for a request not pending here), which remove takes.
func (q *pendingQueue) markBatched(hashes []crypto.Digest) []*pendingReq {
	entries := make([]*pendingReq, len(hashes))
	for i, h := range hashes {
		entries[i], _ = q.lookup(h)
	}
	q.batchEntries(entries)
	return entries
}

// batchEntries is markBatched for entries identify returned.
func (q *pendingQueue) batchEntries(entries []*pendingReq) {
	for _, p := range entries {
		if p != nil && !p.batched {
			q.batch(p)
		}
	}
}

func (q *pendingQueue) batch(p *pendingReq) {
	p.batched = true
	q.readyCount--
	q.readyBytes -= len(p.raw)
}

// unbatchAll makes every pending request proposable again: a new view
// starts, and only the batches it re-issues hold requests.
func (q *pendingQueue) unbatchAll() {
	for _, p := range q.queue {
		if p.batched && !p.removed {
			p.batched = false
			q.readyCount++
			q.readyBytes += len(p.raw)
		}
	}
	q.head = 0
}

// oldestAt is when the oldest pending request was queued, batched or not; ok
// is false when none is pending.
func (q *pendingQueue) oldestAt() (time.Time, bool) {
	for q.first < len(q.queue) && q.queue[q.first].removed {
		q.first++
	}
	if q.first == len(q.queue) {
		return time.Time{}, false
	}
	return q.queue[q.first].queuedAt, true
}

// remove drops delivered requests and remembers them. entries is nil or what
// markBatched or cut returned for hashes: a live entry there is removed
// without a lookup (a live entry is the one the index holds for its hash).
func (q *pendingQueue) remove(hashes []crypto.Digest, entries []*pendingReq) {
	for i, h := range hashes {
		var p *pendingReq
		if entries != nil && entries[i] != nil && !entries[i].removed {
			p = entries[i]
		} else {
			var delivered bool
			if p, delivered = q.lookup(h); delivered {
				continue
			}
			if p == nil {
				q.byHash[h] = deliveredMark
			}
		}
		q.remember(h)
		if p == nil {
			continue
		}
		q.count--
		if !p.batched {
			q.readyCount--
			q.readyBytes -= len(p.raw)
		}
		p.removed = true
		p.raw = nil
		q.removed++
	}
	if q.removed >= pendingCompactMin && q.removed*2 > len(q.queue) {
		q.compact()
	}
}

func (q *pendingQueue) compact() {
	live := make([]*pendingReq, 0, len(q.queue)-q.removed)
	for _, p := range q.queue {
		if !p.removed {
			p.pos = int32(len(live))
			live = append(live, p)
		}
	}
	q.queue = live
	q.removed = 0
	q.head = 0
	q.first = 0
}

// advance moves head past entries that cannot be proposed.
func (q *pendingQueue) advance() {
	for q.head < len(q.queue) && (q.queue[q.head].batched || q.queue[q.head].removed) {
		q.head++
	}
}

// oldestReadyAt is when the oldest proposable request was queued; ok is false
// when there is none.
func (q *pendingQueue) oldestReadyAt() (time.Time, bool) {
	q.advance()
	if q.head == len(q.queue) {
		return time.Time{}, false
	}
	return q.queue[q.head].queuedAt, true
}

// cut takes the oldest proposable requests, in FIFO order, up to countMax
// requests and bytesMax bytes, and marks them batched; it returns their bytes,
// hashes and entries. It never skips a request that does not fit, so the
// queue stays FIFO.
func (q *pendingQueue) cut(countMax, bytesMax int) ([][]byte, []crypto.Digest, []*pendingReq) {
	q.advance()
	n := min(countMax, q.readyCount)
	batch := make([][]byte, 0, n)
	hashes := make([]crypto.Digest, 0, n)
	entries := make([]*pendingReq, 0, n)
	bytes := 0
	for i := q.head; i < len(q.queue) && len(batch) < countMax; i++ {
		p := q.queue[i]
		if p.batched || p.removed {
			continue
		}
		if bytes+len(p.raw) > bytesMax {
			break
		}
		bytes += len(p.raw)
		batch = append(batch, p.raw)
		hashes = append(hashes, p.hash)
		entries = append(entries, p)
		q.batch(p)
	}
	return batch, hashes, entries
}
