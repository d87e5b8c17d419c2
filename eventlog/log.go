package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Badger sizing. Four validators share one machine and tests open many logs,
// so memory is kept modest. The largest transaction badger accepts is 15% of
// the memtable, in bytes, and that divided by a skiplist node's size (96
// bytes), in keys. A 64 MiB memtable takes about 9.6 MiB and 104,000 keys:
// the executor's budget (BatchWritesMax, BatchWriteBytesMax) plus an entry of
// entryBytesRoom. On disk, values of valueThresholdBytes and more live in the
// value log and count as a pointer, so the entry barely counts; in memory
// every value counts in full.
const (
	diskMemTableBytesDefault   = 64 << 20
	diskBlockCacheBytesDefault = 32 << 20
	diskNumMemtables           = 3
	memMemTableBytesDefault    = 64 << 20
	memNumMemtables            = 2
	// memTableBytesMin keeps the budget and an entry within one transaction.
	memTableBytesMin = 64 << 20
	// entryBytesRoom is the largest entry (requests, results, certificate)
	// an in-memory store takes beside a full budget: badger's largest
	// in-memory value. On disk the entry is a value-log pointer.
	entryBytesRoom = 1 << 20
	// valueThresholdBytes: values at least this long live in the value log.
	valueThresholdBytes = 4 << 10
	// valueLogFileBytes is small enough that value-log GC can reclaim space
	// from rewritten protocol state without copying a gigabyte.
	valueLogFileBytes = 256 << 20
	// numCompactors is badger's minimum; the machine has two cores.
	numCompactors = 2
	// gcInterval and gcDiscardRatio drive value-log GC: a file is rewritten
	// when at least half of it is garbage.
	gcInterval     = 5 * time.Minute
	gcDiscardRatio = 0.5
)

// Options configures Open.
type Options struct {
	Dir      string
	InMemory bool // tests
	// SyncWrites makes every commit durable before it returns (production).
	SyncWrites bool
	// Genesis is the PrevHash of entry 1. A log created for one genesis
	// refuses to open for another.
	Genesis crypto.Digest
	Logger  *slog.Logger
	// MemTableBytes sizes badger's memtable and so the largest batch one
	// transaction can hold (see ErrBatchTooBig); 0 picks a default for the mode.
	MemTableBytes int64
	// BlockCacheBytes sizes badger's block cache on disk; 0 picks a default.
	BlockCacheBytes int64
	// NoExecutorCache turns the executor's cache and the event id filter
	// off: every read of an Apply goes to badger, and memos are never kept
	// across batches. For tests, and for opens that never Apply (which then
	// skip the filter's memory and its fill).
	NoExecutorCache bool
	// idFilterBitsLog sizes the event id filter (tests); 0 picks the
	// size for the mode.
	idFilterBitsLog int
	// idFilterFillPause, if set, is called by the filter's fill each time
	// it checks for Close (tests).
	idFilterFillPause func()
}

// Log is the event log. Apply is for one writer at a time (it serialises
// callers); reads are safe from any goroutine.
type Log struct {
	db     *badger.DB
	opts   Options
	logger *slog.Logger

	applyMu sync.Mutex // one Apply at a time
	// cache is the executor's cache of committed state; applyMu guards it.
	cache *execCache
	// ids is the filter of the log's event IDs (idfilter.go); nil with
	// NoExecutorCache, or when the log opened with more than idFilterIDsMax
	// events. fillStop and fillDone stop and await its filling.
	ids      *idFilter
	fillStop chan struct{}
	fillDone chan struct{}

	mu      sync.Mutex // guards the fields below
	head    head
	changed chan struct{} // closed and replaced whenever head moves
	closed  bool
	// recent holds the latest events, positions contiguous and ending at the
	// head, so that readers following the log (projections, subscribers)
	// need not read back and decode what was just written. Once it holds
	// twice recentEventsMax events or recentBytesMax bytes it is trimmed to
	// within both bounds.
	recent      []storedEvent
	recentBytes int

	stopGC chan struct{}
	gcDone chan struct{}
}

// Open opens (or creates) the log.
func Open(opts Options) (*Log, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "eventlog")
	if !opts.InMemory && opts.Dir == "" {
		return nil, errors.New("open event log: Dir is required unless InMemory")
	}
	if opts.MemTableBytes != 0 && opts.MemTableBytes < memTableBytesMin {
		return nil, fmt.Errorf("open event log: MemTableBytes %d below %d", opts.MemTableBytes, memTableBytesMin)
	}
	if opts.BlockCacheBytes < 0 {
		return nil, errors.New("open event log: BlockCacheBytes must not be negative")
	}
	db, err := badger.Open(badgerOptions(opts, logger))
	if err != nil {
		return nil, fmt.Errorf("open event log %q: %w", opts.Dir, err)
	}
	bounds := execCacheBounds
	if opts.NoExecutorCache {
		bounds = cacheBounds{}
	}
	l := &Log{db: db, opts: opts, logger: logger, cache: newExecCache(bounds), changed: make(chan struct{})}
	if err := l.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open event log %q: %w", opts.Dir, err)
	}
	if !opts.NoExecutorCache {
		bitsLog := idFilterBitsLog
		switch {
		case opts.idFilterBitsLog != 0:
			bitsLog = opts.idFilterBitsLog
		case opts.InMemory:
			bitsLog = idFilterMemBitsLog
		}
		switch events := l.head.LastPosition; {
		case events > idFilterIDsMax(bitsLog):
			logger.Info("event id filter off: the log holds more events than it would serve", "events", events, "max", idFilterIDsMax(bitsLog))
		case events == 0:
			l.ids = newIDFilter(bitsLog)
			l.ids.complete.Store(true)
		default:
			l.ids = newIDFilter(bitsLog)
			l.fillStop = make(chan struct{})
			l.fillDone = make(chan struct{})
			go l.fillIDFilter()
		}
	}
	if !opts.InMemory {
		l.stopGC = make(chan struct{})
		l.gcDone = make(chan struct{})
		go l.runGC()
	}
	return l, nil
}

func badgerOptions(opts Options, logger *slog.Logger) badger.Options {
	var b badger.Options
	memTable := opts.MemTableBytes
	if opts.InMemory {
		if memTable == 0 {
			memTable = memMemTableBytesDefault
		}
		// Tables live in memory: compressing them only costs CPU, and without
		// compression badger needs no block cache.
		b = badger.DefaultOptions("").
			WithInMemory(true).
			WithNumMemtables(memNumMemtables).
			WithCompression(options.None).
			WithBlockCacheSize(0)
	} else {
		if memTable == 0 {
			memTable = diskMemTableBytesDefault
		}
		cache := opts.BlockCacheBytes
		if cache == 0 {
			cache = diskBlockCacheBytesDefault
		}
		b = badger.DefaultOptions(opts.Dir).
			WithSyncWrites(opts.SyncWrites).
			WithNumMemtables(diskNumMemtables).
			WithBlockCacheSize(cache).
			WithValueThreshold(valueThresholdBytes).
			WithValueLogFileSize(valueLogFileBytes).
			WithVerifyValueChecksum(true)
	}
	return b.
		WithMemTableSize(memTable).
		WithNumCompactors(numCompactors).
		// One writer (Apply) and disjoint meta keys: nothing to conflict.
		WithDetectConflicts(false).
		// badger's expvar metrics are process-global; ordo exports its own.
		WithMetricsEnabled(false).
		WithLogger(BadgerLogger(logger))
}

// BadgerLogger adapts slog for badger: warnings and errors pass, the rest is
// dropped. Every badger instance in ordo logs through it.
func BadgerLogger(l *slog.Logger) badger.Logger { return badgerLogger{l} }

// badgerLogger passes badger's warnings and errors to slog and drops the rest.
type badgerLogger struct{ log *slog.Logger }

func (b badgerLogger) Errorf(f string, args ...any) {
	b.log.Error(strings.TrimSpace(fmt.Sprintf(f, args...)), "source", "badger")
}

func (b badgerLogger) Warningf(f string, args ...any) {
	b.log.Warn(strings.TrimSpace(fmt.Sprintf(f, args...)), "source", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// load reads the head and the genesis marker, creating the marker for a new log.
func (l *Log) load() error {
	return l.db.Update(func(txn *badger.Txn) error {
		g, found, err := get(txn, keyGenesis)
		if err != nil {
			return err
		}
		if !found {
			g = append([]byte(nil), l.opts.Genesis[:]...)
			if err := txn.Set(keyGenesis, g); err != nil {
				return fmt.Errorf("write genesis marker: %w", err)
			}
		}
		if string(g) != string(l.opts.Genesis[:]) {
			return fmt.Errorf("log was created for genesis %x, not %v", g, l.opts.Genesis)
		}
		hb, found, err := get(txn, keyHead)
		if err != nil {
			return err
		}
		if !found {
			l.head = head{Hash: l.opts.Genesis}
			return nil
		}
		h, err := decodeHead(hb)
		if err != nil {
			return err
		}
		eb, found, err := get(txn, entryKey(h.Seq))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("head names entry %d, which is missing: %w", h.Seq, ErrCorrupt)
		}
		e, err := decodeStoredEntry(h.Seq, eb)
		if err != nil {
			return err
		}
		if e.Hash != h.Hash || e.FirstPosition+e.EventCount-1 != h.LastPosition {
			return fmt.Errorf("head %d disagrees with its entry: %w", h.Seq, ErrCorrupt)
		}
		if h.State == (crypto.Digest{}) {
			if err := noStateBeforeChain(txn); err != nil {
				return err
			}
		}
		l.head = h
		return nil
	})
}

// noStateBeforeChain refuses a log that holds executor state but no state
// digest: one written before the digest chained the state writes. Its chain
// would start over here while every other replica's starts at genesis, and
// its checkpoints would never match theirs.
func noStateBeforeChain(txn *badger.Txn) error {
	prefix := []byte{prefixState}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	if it.Seek(prefix); it.ValidForPrefix(prefix) {
		return ErrOlderFormat
	}
	return nil
}

// get reads a key in txn and copies its value out.
func get(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %x: %w", key, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false, fmt.Errorf("read %x: %w", key, err)
	}
	return v, true, nil
}

func (l *Log) runGC() {
	defer close(l.gcDone)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stopGC:
			return
		case <-t.C:
			l.collectGarbage()
		}
	}
}

// fillIDFilter adds every ID of the ID index, as a snapshot taken now holds
// it, to the log's filter, and then marks the filter complete. IDs appended
// meanwhile are added by AppendEvents, whether the snapshot has them or not.
func (l *Log) fillIDFilter() {
	defer close(l.fillDone)
	start := time.Now()
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	prefix := []byte{prefixID}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	n := 0
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()
		if len(k) != len(idKey([16]byte{})) {
			l.logger.Error("event id index holds a malformed key; new ids are looked up in the store", "key", fmt.Sprintf("%x", k))
			return
		}
		l.ids.add([16]byte(k[1:]))
		if n++; n%idFilterScanStopEvery == 0 {
			if l.opts.idFilterFillPause != nil {
				l.opts.idFilterFillPause()
			}
			select {
			case <-l.fillStop:
				return
			default:
			}
		}
	}
	l.ids.complete.Store(true)
	l.logger.Info("event id filter filled", "ids", n, "took", time.Since(start).Round(time.Millisecond))
}

// collectGarbage rewrites value-log files until none is worth rewriting.
func (l *Log) collectGarbage() {
	for {
		select {
		case <-l.stopGC:
			return
		default:
		}
		err := l.db.RunValueLogGC(gcDiscardRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return
		}
		if err != nil {
			l.logger.Warn("value log GC failed", "err", err)
			return
		}
	}
}

// Close stops background work, wakes waiters with ErrClosed and closes badger.
func (l *Log) Close() error {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.changed)
	l.mu.Unlock()
	if l.stopGC != nil {
		close(l.stopGC)
		<-l.gcDone
	}
	if l.fillStop != nil {
		close(l.fillStop)
		<-l.fillDone
	}
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("close event log: %w", err)
	}
	return nil
}

// Applied is the head: the newest applied seq and its hash; (0, genesis) when empty.
func (l *Log) Applied() (seq uint64, hash crypto.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head.Seq, l.head.Hash
}

// LastPosition is the position of the newest event; 0 when there is none.
func (l *Log) LastPosition() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head.LastPosition
}

// Wait returns once LastPosition() >= pos, the context ends, or the log closes.
func (l *Log) Wait(ctx context.Context, pos uint64) error {
	return l.wait(ctx, func(h head) bool { return h.LastPosition >= pos })
}

// WaitSeq returns once the applied seq is >= seq, the context ends, or the log closes.
func (l *Log) WaitSeq(ctx context.Context, seq uint64) error {
	return l.wait(ctx, func(h head) bool { return h.Seq >= seq })
}

func (l *Log) wait(ctx context.Context, done func(head) bool) error {
	for {
		l.mu.Lock()
		h, ch, closed := l.head, l.changed, l.closed
		l.mu.Unlock()
		if done(h) {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Bounds of the log's cache of the latest events (decoded, in memory).
const (
	recentEventsMax = 4096
	recentBytesMax  = 16 << 20
)

// storedEvent is an event with the size of its stored encoding, which read
// bounds count.
type storedEvent struct {
	ev   Event
	size int
}

// advance publishes a new head after a commit, keeps the batch's events and
// wakes every waiter.
func (l *Log) advance(h head, appended []storedEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.recent); n > 0 && len(appended) > 0 && l.recent[n-1].ev.Position+1 != appended[0].ev.Position {
		panic(fmt.Sprintf("eventlog: cached events end at %d, the batch starts at %d", l.recent[n-1].ev.Position, appended[0].ev.Position))
	}
	l.recent = append(l.recent, appended...)
	for _, se := range appended {
		l.recentBytes += se.size
	}
	if len(l.recent) > 2*recentEventsMax || l.recentBytes > 2*recentBytesMax {
		drop := 0
		for len(l.recent)-drop > recentEventsMax || l.recentBytes > recentBytesMax {
			l.recentBytes -= l.recent[drop].size
			drop++
		}
		l.recent = append([]storedEvent(nil), l.recent[drop:]...)
	}
	l.head = h
	close(l.changed)
	l.changed = make(chan struct{})
}

// marshalHead encodes the head record; its fields are fixed-size, so failure
// is a broken invariant.
func marshalHead(h head) []byte { return codec.MustMarshal(&h) }
