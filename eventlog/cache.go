package eventlog

// The executor's cache: what the log remembers across batches of the
// committed state the executor reads, so that a steady workload does not
// search badger's memtables and levels for the same keys batch after batch.
//
// It is authoritative: an answer it gives is what badger holds for the
// committed state. That holds because Apply is the only writer of stream
// heads and executor state, and the cache changes only after a batch's
// transaction committed, from what that batch read and wrote (Tx keeps it
// exact as the batch goes, see Tx.values and Tx.heads). A batch that fails
// leaves the cache as it was. Dropping an entry only costs a read, so the
// bounds cannot change an answer either, and nothing the cache does reaches
// what is written, hashed or replicated.
//
// Only Apply's goroutine, holding applyMu, touches it; readers on other
// goroutines read badger.

// Bounds of the executor's cache. Entries are counted as their key, their
// value and cacheEntryOverheadBytes.
const (
	// cacheEntryOverheadBytes is what an entry costs beyond its key and
	// value: its map slot and its string and slice headers, roughly.
	cacheEntryOverheadBytes = 64
	// cachedHeadsMax and cachedHeadsBytesMax bound the stream heads kept.
	cachedHeadsMax      = 1 << 15
	cachedHeadsBytesMax = 4 << 20
	// cachedStateMax and cachedStateBytesMax bound the state values kept
	// (present or known absent); a value over cachedStateValueBytesMax is
	// not kept at all: large values are results, which are rarely read again.
	cachedStateMax           = 1 << 15
	cachedStateBytesMax      = 8 << 20
	cachedStateValueBytesMax = 4 << 10
	// memosMax and memosBytesMax bound the executor's memos (Tx.Memo).
	memosMax      = 1 << 15
	memosBytesMax = 4 << 20
)

// execCache is the executor's cache of one log.
type execCache struct {
	heads *boundedMap[uint64]     // stream → version of its last event
	state *boundedMap[stateValue] // state key (without the log's prefix) → value
	memos *boundedMap[uint64]     // the executor's memos
}

// stateValue is a state key's value, or its absence.
type stateValue struct {
	val   []byte
	found bool
}

// cacheBounds are the bounds of one execCache, in entries and bytes.
type cacheBounds struct {
	heads, headsBytes int
	state, stateBytes int
	memos, memosBytes int
}

// execCacheBounds are the production bounds; the zero cacheBounds keep
// nothing, so that every read goes to badger.
var execCacheBounds = cacheBounds{
	heads: cachedHeadsMax, headsBytes: cachedHeadsBytesMax,
	state: cachedStateMax, stateBytes: cachedStateBytesMax,
	memos: memosMax, memosBytes: memosBytesMax,
}

func newExecCache(b cacheBounds) *execCache {
	return &execCache{
		heads: newBoundedMap(b.heads, b.headsBytes, func(stream string, _ uint64) int { return len(stream) + 8 }),
		state: newBoundedMap(b.state, b.stateBytes, func(key string, v stateValue) int { return len(key) + len(v.val) }),
		memos: newBoundedMap(b.memos, b.memosBytes, func(key string, _ uint64) int { return len(key) + 8 }),
	}
}

// commit takes in what a batch that committed read and wrote. The maps are
// walked in Go's random order, which only decides which entries a full
// cache drops first.
func (c *execCache) commit(tx *Tx) {
	for stream, v := range tx.heads {
		// -1 (no events) is never kept: streams are created by appends,
		// which then set the head.
		if v >= 0 {
			c.heads.put(stream, uint64(v))
		}
	}
	for key, v := range tx.values {
		if len(v.val) > cachedStateValueBytesMax {
			c.state.remove(key)
			continue
		}
		c.state.put(key, v)
	}
	for key, v := range tx.memos {
		c.memos.put(key, v)
	}
}

// boundedMap is a cache of at most entriesMax entries and bytesMax bytes, in
// two generations. Entries go into the young one; when it has half of either
// bound, it becomes the old one and the old one is dropped. An entry put
// again moves to the young one, so what every batch uses stays. Dropping only
// ever removes entries, and put and remove replace or remove the key in both
// generations, so every entry is the last value put for its key.
type boundedMap[V any] struct {
	young, old           map[string]V
	youngBytes, oldBytes int
	entriesMax, bytesMax int
	size                 func(key string, v V) int // without cacheEntryOverheadBytes
}

func newBoundedMap[V any](entriesMax, bytesMax int, size func(string, V) int) *boundedMap[V] {
	return &boundedMap[V]{
		young: map[string]V{}, old: map[string]V{},
		entriesMax: entriesMax, bytesMax: bytesMax, size: size,
	}
}

func (m *boundedMap[V]) cost(key string, v V) int {
	return m.size(key, v) + cacheEntryOverheadBytes
}

func (m *boundedMap[V]) get(key string) (V, bool) {
	if v, ok := m.young[key]; ok {
		return v, true
	}
	v, ok := m.old[key]
	return v, ok
}

func (m *boundedMap[V]) put(key string, v V) {
	m.remove(key)
	n := m.cost(key, v)
	entries, bytes := m.entriesMax/2, m.bytesMax/2 // of one generation
	if entries == 0 || n > bytes {
		return
	}
	if len(m.young) >= entries || m.youngBytes+n > bytes {
		m.old, m.oldBytes = m.young, m.youngBytes
		m.young, m.youngBytes = map[string]V{}, 0
	}
	m.young[key] = v
	m.youngBytes += n
}

func (m *boundedMap[V]) remove(key string) {
	if v, ok := m.young[key]; ok {
		m.youngBytes -= m.cost(key, v)
		delete(m.young, key)
	}
	if v, ok := m.old[key]; ok {
		m.oldBytes -= m.cost(key, v)
		delete(m.old, key)
	}
}
