package pbft

import (
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// pendingCompactMin is the number of removed entries below which the pending
// queue is never compacted: compacting a short queue costs more than it frees.
const pendingCompactMin = 64

// recentDeliveredMax is how many delivered request IDs a replica remembers, to
// ignore copies of them that arrive late (a forward delayed past delivery, a
// client's retry). It is a bound, not a guarantee: older duplicates, and any
// after a restart, may be proposed again, and the state machine executes a
// client's request once.
const recentDeliveredMax = 1 << 14

// pendingReq is one client request waiting to be delivered.
type pendingReq struct {
	hash     crypto.Digest
	raw      []byte
	queuedAt time.Time
	// batched: the request is in a batch this replica accepted or proposed, so
	// the primary must not propose it again.
	batched bool
	removed bool
}

// pendingQueue keeps client requests in arrival order (FIFO), deduplicated by
// the hash of their bytes. Entries are removed in place (marked) and the slice
// is compacted once enough of it is dead, so removal from the middle is cheap.
type pendingQueue struct {
	byHash  map[crypto.Digest]*pendingReq
	queue   []*pendingReq
	head    int // every entry before head is batched or removed
	first   int // every entry before first is removed
	removed int // removed entries still in queue
	// ready: entries neither batched nor removed, which a primary may propose.
	readyCount int
	readyBytes int
	// recent is a ring of the latest recentDeliveredMax delivered request
	// IDs; recentSet indexes it.
	recent     []crypto.Digest
	recentNext int
	recentSet  map[crypto.Digest]struct{}
}

func newPendingQueue() pendingQueue {
	return pendingQueue{byHash: make(map[crypto.Digest]*pendingReq), recentSet: make(map[crypto.Digest]struct{})}
}

// recentlyDelivered reports whether h is among the latest delivered requests.
func (q *pendingQueue) recentlyDelivered(h crypto.Digest) bool {
	_, ok := q.recentSet[h]
	return ok
}

// remember adds a delivered request ID to the ring, evicting the oldest.
func (q *pendingQueue) remember(h crypto.Digest) {
	if _, ok := q.recentSet[h]; ok {
		return
	}
	if len(q.recent) < recentDeliveredMax {
		q.recent = append(q.recent, h)
	} else {
		delete(q.recentSet, q.recent[q.recentNext])
		q.recent[q.recentNext] = h
		q.recentNext = (q.recentNext + 1) % recentDeliveredMax
	}
	q.recentSet[h] = struct{}{}
}

func (q *pendingQueue) len() int { return len(q.byHash) }

func (q *pendingQueue) has(h crypto.Digest) bool {
	_, ok := q.byHash[h]
	return ok
}

func (q *pendingQueue) add(h crypto.Digest, raw []byte, at time.Time) {
	p := &pendingReq{hash: h, raw: raw, queuedAt: at}
	q.byHash[h] = p
	q.queue = append(q.queue, p)
	q.readyCount++
	q.readyBytes += len(raw)
}

// markBatched records that the requests are in an accepted batch.
func (q *pendingQueue) markBatched(hashes []crypto.Digest) {
	for _, h := range hashes {
		p, ok := q.byHash[h]
		if !ok || p.batched {
			continue
		}
		p.batched = true
		q.readyCount--
		q.readyBytes -= len(p.raw)
	}
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

// remove drops delivered requests and remembers them.
func (q *pendingQueue) remove(hashes []crypto.Digest) {
	for _, h := range hashes {
		q.remember(h)
		p, ok := q.byHash[h]
		if !ok {
			continue
		}
		delete(q.byHash, h)
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
// requests and bytesMax bytes, and marks them batched. It never skips a
// request that does not fit, so the queue stays FIFO.
func (q *pendingQueue) cut(countMax, bytesMax int) ([][]byte, []crypto.Digest) {
	q.advance()
	var (
		batch  [][]byte
		hashes []crypto.Digest
		bytes  int
	)
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
	}
	q.markBatched(hashes)
	return batch, hashes
}
