package cqrs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/ordoledger/ordo/eventlog"
)

// Engine bounds and defaults.
const (
	// BatchEventsMax bounds the events applied in one transaction (and is the
	// default). eventlog bounds one read's bytes as well.
	BatchEventsMax = eventlog.ReadLimitMax
	// HeartbeatIntervalDefault is how often an idle subscription gets a comment.
	HeartbeatIntervalDefault = 15 * time.Second
	// ProjectionNameBytesMax bounds a projection name.
	ProjectionNameBytesMax = 64
	// ProjectionsMax bounds the projections one engine runs.
	ProjectionsMax = 128

	// retryBackoffMin and retryBackoffMax pace a projection whose storage fails.
	retryBackoffMin = 50 * time.Millisecond
	retryBackoffMax = 5 * time.Second
	// dropBatchKeys bounds the keys one transaction deletes when a generation
	// is dropped: well inside badger's transaction limit.
	dropBatchKeys = 10000

	// Badger sizing: rows are small and four validators may share a machine,
	// so memory stays modest. badger refuses a transaction above 15% of the
	// memtable (about 2.4 MiB here); applyBatch then commits a shorter batch.
	// Tables are not compressed, so reads go to badger's memory-mapped files
	// and a block cache would only cost: badger charges each uncompressed
	// block the mapping's whole remaining length (megabytes), so a 16 MiB
	// cache held two blocks and hit 2% of reads.
	memTableBytes = 16 << 20
	numMemtables  = 2
	numCompactors = 2
	// firstGen is the first generation number handed out; 0 means none.
	firstGen = 1
)

// Errors callers branch on.
var (
	// ErrUnknownProjection: no projection of that name is registered.
	ErrUnknownProjection = errors.New("cqrs: unknown projection")
	// ErrNotFound: the projection has no row under that key.
	ErrNotFound = errors.New("cqrs: row not found")
	// ErrInvalid: an argument is outside its bounds or malformed.
	ErrInvalid = errors.New("cqrs: invalid argument")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("cqrs: engine closed")
	// ErrSkip, returned (possibly wrapped) by Apply, says the event does not
	// apply to this projection after all (for example it lacks the key
	// field). The engine counts it and moves on. Apply must return it before
	// writing anything.
	ErrSkip = errors.New("cqrs: event skipped")
)

var projectionName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

func checkProjectionName(name string) error {
	if len(name) == 0 || len(name) > ProjectionNameBytesMax || !projectionName.MatchString(name) {
		return fmt.Errorf("projection name %q: want 1..%d bytes of [a-z0-9._-], starting with a letter or digit", name, ProjectionNameBytesMax)
	}
	return nil
}

// Projection is a read model built from the log. Apply must be a pure
// function of the projection's rows and the event: the engine may apply the
// same events again (after a crash, or to rebuild), in batches of any size,
// and the rows must come out the same.
type Projection interface {
	// Name is unique per engine: 1..64 bytes of [a-z0-9._-].
	Name() string
	// Version changes whenever Apply's meaning changes; the engine then
	// rebuilds the projection from the start of the log. Versions are >= 0.
	Version() int
	// Wants filters events cheaply; Apply sees only events it wants.
	Wants(ev *eventlog.Event) bool
	// Apply folds one event into the rows. An error stops the projection at
	// this event (ErrSkip excepted), visibly, until a new Version is deployed
	// or a rebuild is asked for.
	Apply(tx Tx, ev *eventlog.Event) error
}

// Tx is what a projection's Apply may do: read and write its own rows, and
// its own private state, in the transaction that will also record the
// checkpoint. It is valid only during the Apply call it was passed to.
type Tx interface {
	// Get returns the row stored under key.
	Get(key string) (row []byte, found bool, err error)
	// Set stores row (a JSON object of at most RowBytesMax bytes) under key
	// (1..RowKeyBytesMax bytes of UTF-8). The engine keeps its own copy.
	Set(key string, row []byte) error
	// Delete removes the row under key.
	Delete(key string) error
	// GetState, SetState and DeleteState work on the projection's private
	// key space: bookkeeping that queries never see (any bytes, same bounds).
	GetState(key string) (value []byte, found bool, err error)
	SetState(key string, value []byte) error
	DeleteState(key string) error
}

// Options configures Open.
type Options struct {
	// Dir is the engine's own badger directory (the node's DATA/projections).
	Dir string
	// InMemory keeps everything in memory (tests).
	InMemory bool
	// Log is the source of events.
	Log    *eventlog.Log
	Logger *slog.Logger
	// Specs are declarative projections, registered at Open.
	Specs []Spec
	// BatchEventsMax bounds the events per apply transaction: 0 means
	// BatchEventsMax, more than BatchEventsMax is refused.
	BatchEventsMax int
	// HeartbeatInterval paces subscription heartbeats: 0 means
	// HeartbeatIntervalDefault.
	HeartbeatInterval time.Duration
}

// Engine runs projections over the log and answers queries about them.
type Engine struct {
	db        *badger.DB
	log       *eventlog.Log
	logger    *slog.Logger
	batchMax  int
	heartbeat time.Duration
	metrics   *metrics
	// minPositionWait is MinPositionWaitMax; tests shorten it.
	minPositionWait time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// closeMu is held for reading by every badger access from outside the
	// runners, and for writing by Close, so badger is never used closed.
	closeMu sync.RWMutex
	closed  bool

	mu       sync.RWMutex // guards runners, names, started
	runners  map[string]*runner
	names    []string
	started  bool
	genMu    sync.Mutex    // one generation allocation at a time
	dropKick chan struct{} // wakes the generation cleaner

	subscribers subscriberCount

	// testHook, when set, is called around each commit; returning true makes
	// the projection's goroutine stop dead, as if the process crashed there.
	testHook func(point hookPoint, name string, through uint64) bool
}

type hookPoint int

const (
	beforeCommit hookPoint = iota
	afterCommit
)

// Open opens the engine's store and registers the built-in projections and
// opts.Specs. Register more, then Start.
func Open(opts Options) (*Engine, error) {
	return open(opts, []Projection{streamsProjection{}, eventTypesProjection{}, balancesProjection{}})
}

// open is Open with the built-ins to register (benchmarks run them alone).
func open(opts Options, builtins []Projection) (*Engine, error) {
	if opts.Log == nil {
		return nil, errors.New("open projections: Log is required")
	}
	if !opts.InMemory && opts.Dir == "" {
		return nil, errors.New("open projections: Dir is required unless InMemory")
	}
	batchMax := opts.BatchEventsMax
	if batchMax == 0 {
		batchMax = BatchEventsMax
	}
	if batchMax < 0 || batchMax > BatchEventsMax {
		return nil, fmt.Errorf("open projections: BatchEventsMax %d outside 1..%d", batchMax, BatchEventsMax)
	}
	heartbeat := opts.HeartbeatInterval
	if heartbeat == 0 {
		heartbeat = HeartbeatIntervalDefault
	}
	if heartbeat < 0 {
		return nil, fmt.Errorf("open projections: HeartbeatInterval %v is negative", heartbeat)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "cqrs")
	db, err := badger.Open(badgerOptions(opts, logger))
	if err != nil {
		return nil, fmt.Errorf("open projections %q: %w", opts.Dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		db: db, log: opts.Log, logger: logger, batchMax: batchMax, heartbeat: heartbeat,
		minPositionWait: MinPositionWaitMax,
		ctx:             ctx, cancel: cancel,
		runners:  make(map[string]*runner),
		dropKick: make(chan struct{}, 1),
	}
	e.metrics = newMetrics(e)
	projections := builtins
	for i := range opts.Specs {
		p, err := compileSpec(opts.Specs[i])
		if err != nil {
			e.abort()
			return nil, fmt.Errorf("open projections: %w", err)
		}
		projections = append(projections, p)
	}
	for _, p := range projections {
		if err := e.Register(p); err != nil {
			e.abort()
			return nil, fmt.Errorf("open projections: %w", err)
		}
	}
	return e, nil
}

func (e *Engine) abort() {
	e.cancel()
	if err := e.db.Close(); err != nil {
		e.logger.Warn("closing the projection store after a failed open", "err", err)
	}
}

func badgerOptions(opts Options, logger *slog.Logger) badger.Options {
	var b badger.Options
	if opts.InMemory {
		b = badger.DefaultOptions("").WithInMemory(true)
	} else {
		// Projections can be rebuilt from the log, and badger keeps each
		// transaction all-or-nothing across a crash without fsync, so rows
		// and checkpoint always agree: no SyncWrites.
		b = badger.DefaultOptions(opts.Dir)
	}
	return b.
		WithBlockCacheSize(0).
		WithMemTableSize(memTableBytes).
		WithNumMemtables(numMemtables).
		WithNumCompactors(numCompactors).
		WithCompression(options.None).
		// Each projection's keys have one writer (its goroutine) and
		// generation numbers are handed out under a mutex: nothing conflicts.
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithLogger(eventlog.BadgerLogger(logger))
}

// Register adds a projection. It must be called before Start.
func (e *Engine) Register(p Projection) error {
	name := p.Name()
	if err := checkProjectionName(name); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	version := p.Version()
	if version < 0 {
		return fmt.Errorf("register %s: version %d is negative", name, version)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.started:
		return fmt.Errorf("register %s: the engine has started", name)
	case e.runners[name] != nil:
		return fmt.Errorf("register %s: a projection of that name exists", name)
	case len(e.runners) >= ProjectionsMax:
		return fmt.Errorf("register %s: at most %d projections", name, ProjectionsMax)
	}
	r := newRunner(e, p)
	if err := r.load(); err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	e.runners[name] = r
	e.names = append(e.names, name)
	sort.Strings(e.names)
	return nil
}

// Start starts one goroutine per projection, following the log live, and the
// cleaner that deletes dropped generations. It returns at once.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return
	}
	e.started = true
	for _, r := range e.runners {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			r.run(e.ctx)
		}()
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.runCleaner()
	}()
}

// Close stops the projections and subscriptions and closes the store. A
// projection in the middle of a batch finishes or abandons that transaction;
// either way its rows and checkpoint agree.
func (e *Engine) Close() error {
	e.cancel()
	e.wg.Wait()
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("close projections: %w", err)
	}
	return nil
}

// view runs fn in a read transaction unless the engine is closed.
func (e *Engine) view(fn func(txn *badger.Txn) error) error {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	return e.db.View(fn)
}

func (e *Engine) runner(name string) (*runner, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	r := e.runners[name]
	if r == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return r, nil
}

func (e *Engine) allRunners() []*runner {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*runner, len(e.names))
	for i, n := range e.names {
		out[i] = e.runners[n]
	}
	return out
}

// Positions maps each projection to the last position it applied (for
// /v1/status).
func (e *Engine) Positions() map[string]uint64 {
	out := make(map[string]uint64)
	for _, r := range e.allRunners() {
		out[r.name] = r.snapshot().active.position
	}
	return out
}

// Rebuild asks for a projection to be rebuilt from the start of the log in
// the background; its current rows keep serving until the rebuilt ones
// replace them. Asking again while a rebuild runs does nothing.
func (e *Engine) Rebuild(name string) error {
	if e.ctx.Err() != nil {
		return ErrClosed
	}
	r, err := e.runner(name)
	if err != nil {
		return err
	}
	r.requestRebuild()
	return nil
}

// allocGen hands out a generation number never used before in this store.
func (e *Engine) allocGen() (uint64, error) {
	e.genMu.Lock()
	defer e.genMu.Unlock()
	var gen uint64
	err := e.db.Update(func(txn *badger.Txn) error {
		b, found, err := get(txn, keyGenCounter)
		if err != nil {
			return err
		}
		gen = firstGen
		if found {
			if len(b) != 8 {
				return fmt.Errorf("generation counter of %d bytes", len(b))
			}
			gen = binary.BigEndian.Uint64(b) + 1
		}
		return txn.Set(keyGenCounter, binary.BigEndian.AppendUint64(nil, gen))
	})
	if err != nil {
		return 0, fmt.Errorf("allocate generation: %w", err)
	}
	return gen, nil
}

func (e *Engine) kickCleaner() {
	select {
	case e.dropKick <- struct{}{}:
	default:
	}
}

// runCleaner deletes generations marked as dropped: at start (a crash may
// have left some) and whenever a swap or a new rebuild marks one.
func (e *Engine) runCleaner() {
	backoff := retryBackoffMin
	for {
		err := e.dropMarkedGens()
		if err != nil {
			e.logger.Warn("deleting dropped projection generations", "err", err)
			if !sleepCtx(e.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, retryBackoffMax)
			continue
		}
		backoff = retryBackoffMin
		select {
		case <-e.ctx.Done():
			return
		case <-e.dropKick:
		}
	}
}

func (e *Engine) dropMarkedGens() error {
	var gens []uint64
	err := e.db.View(func(txn *badger.Txn) error {
		prefix := []byte{prefixDrop}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("drop marker key of %d bytes", len(k))
			}
			gens = append(gens, binary.BigEndian.Uint64(k[1:]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list dropped generations: %w", err)
	}
	for _, gen := range gens {
		for _, p := range []byte{prefixRow, prefixState, prefixCheckpoint} {
			if err := e.deletePrefix(genKey(p, gen, "")); err != nil {
				return fmt.Errorf("drop generation %d: %w", gen, err)
			}
		}
		if err := e.db.Update(func(txn *badger.Txn) error { return txn.Delete(dropKey(gen)) }); err != nil {
			return fmt.Errorf("drop generation %d: %w", gen, err)
		}
		e.logger.Debug("dropped projection generation", "gen", gen)
	}
	return nil
}

// deletePrefix deletes every key under prefix, dropBatchKeys per transaction.
func (e *Engine) deletePrefix(prefix []byte) error {
	for e.ctx.Err() == nil {
		var keys [][]byte
		err := e.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(prefix); it.ValidForPrefix(prefix) && len(keys) < dropBatchKeys; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = e.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return e.ctx.Err()
}

// sleepCtx waits d or until ctx ends; false means ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
