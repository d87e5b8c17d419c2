package cqrs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/eventlog"
)

// genState is one generation of a projection's rows as the runner knows it.
type genState struct {
	gen      uint64
	version  int64
	position uint64 // last applied log position
	skipped  uint64
	failure  *failure
	// rows caches the generation's committed built-in rows; only the
	// runner's goroutine uses it.
	rows *rowCache
}

// failure is an event a projection's Apply refused: it stays at position-1.
type failure struct {
	position uint64
	err      string
}

// runner drives one projection. Only its goroutine (and, before Start,
// Register) changes the state; other goroutines read it under mu.
type runner struct {
	e       *Engine
	p       Projection
	name    string
	version int64

	mu               sync.Mutex
	active           genState
	shadow           *genState
	storageErr       string
	rebuildRequested bool
	waitCancel       context.CancelFunc
	changed          chan struct{} // closed and replaced when positions or status change

	eventsApplied atomic.Uint64

	// txnRows and txnRowKeys are applyTxn's tx.changed and
	// tx.changedKeys, kept (emptied) for the next transaction.
	txnRows    map[string]builtinRow
	txnRowKeys []string
}

func newRunner(e *Engine, p Projection) *runner {
	return &runner{e: e, p: p, name: p.Name(), version: int64(p.Version()), changed: make(chan struct{})}
}

// runnerState is a consistent copy of a runner's state.
type runnerState struct {
	active     genState
	shadow     *genState
	storageErr string
}

func (r *runner) snapshot() runnerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := runnerState{active: r.active, storageErr: r.storageErr}
	if r.shadow != nil {
		sh := *r.shadow
		s.shadow = &sh
	}
	return s
}

// notify wakes everyone waiting on a change; r.mu must be held.
func (r *runner) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// load reads (or creates) the projection's meta and checkpoints.
func (r *runner) load() error {
	var (
		meta   metaRecord
		found  bool
		active checkpoint
		shadow checkpoint
	)
	err := r.e.db.View(func(txn *badger.Txn) error {
		var err error
		meta, found, err = loadMeta(txn, r.name)
		if err != nil || !found {
			return err
		}
		if active, err = loadCheckpoint(txn, meta.Gen); err != nil {
			return err
		}
		if meta.ShadowGen != 0 && meta.ShadowVersion == r.version {
			shadow, err = loadCheckpoint(txn, meta.ShadowGen)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if !found {
		// A new projection has no rows to keep serving: build in place.
		gen, err := r.e.allocGen()
		if err != nil {
			return err
		}
		meta = metaRecord{Gen: gen, Version: r.version}
		err = r.e.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(metaKey(r.name), marshalMeta(meta)); err != nil {
				return err
			}
			return txn.Set(checkpointKey(gen), marshalCheckpoint(checkpoint{}))
		})
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
	}
	r.active = genState{gen: meta.Gen, version: meta.Version, position: active.Position, skipped: active.Skipped, rows: &rowCache{}}
	switch {
	case meta.ShadowGen != 0 && meta.ShadowVersion == r.version:
		r.shadow = &genState{gen: meta.ShadowGen, version: meta.ShadowVersion, position: shadow.Position, skipped: shadow.Skipped, rows: &rowCache{}}
	case meta.ShadowGen != 0 || meta.Version != r.version:
		// A rebuild for another version, or none yet for this one:
		// startShadow replaces whatever shadow the meta names.
		r.rebuildRequested = true
	}
	return nil
}

// live: the active generation was built by this code and has not failed, so
// it keeps following the log.
func (r *runner) live() bool {
	return r.active.version == r.version && r.active.failure == nil
}

func (r *runner) requestRebuild() {
	r.mu.Lock()
	r.rebuildRequested = true
	cancel := r.waitCancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (r *runner) takeRebuildRequest() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	req := r.rebuildRequested
	r.rebuildRequested = false
	return req
}

func (r *runner) setStorageErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if r.storageErr != msg {
		r.storageErr = msg
		r.notify()
	}
}

// errCrash is the test hook's simulated crash.
var errCrash = errors.New("cqrs: simulated crash")

func (r *runner) run(ctx context.Context) {
	logger := r.e.logger.With("projection", r.name)
	backoff := retryBackoffMin
	for ctx.Err() == nil {
		err := r.rebuildIfRequested()
		worked := false
		if err == nil {
			worked, err = r.step()
		}
		if errors.Is(err, errCrash) {
			return
		}
		if err != nil {
			r.setStorageErr(err)
			logger.Error("projection storage failed; retrying", "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, retryBackoffMax)
			continue
		}
		backoff = retryBackoffMin
		r.setStorageErr(nil)
		if !worked && !r.idle(ctx) {
			return
		}
	}
}

func (r *runner) rebuildIfRequested() error {
	if !r.takeRebuildRequest() {
		return nil
	}
	if err := r.startShadow(); err != nil {
		r.mu.Lock()
		r.rebuildRequested = true
		r.mu.Unlock()
		return err
	}
	return nil
}

// step applies at most one batch to the active generation and one to the
// shadow, and swaps the shadow in once it has caught up. It reports whether
// it did anything. "Caught up" is measured against the head as it was when
// the step began: under sustained appends the live head is always a little
// ahead, and a rebuild must still finish; the new generation then follows
// the log like any other.
func (r *runner) step() (bool, error) {
	head := r.e.log.LastPosition()
	worked := false
	if r.live() && r.active.position < head {
		if err := r.applyBatch(&r.active); err != nil {
			return false, err
		}
		worked = true
	}
	s := r.shadow
	if s == nil || s.failure != nil {
		return worked, nil
	}
	if s.position < head {
		if err := r.applyBatch(s); err != nil {
			return false, err
		}
		worked = true
	}
	if s.failure == nil && s.position >= head && (!r.live() || s.position >= r.active.position) {
		if err := r.swap(); err != nil {
			return false, err
		}
		worked = true
	}
	return worked, nil
}

// idle waits for the log to grow past what this projection has applied, or
// for a rebuild request. false means stop.
func (r *runner) idle(ctx context.Context) bool {
	want := uint64(math.MaxUint64)
	if r.live() {
		want = r.active.position + 1
	}
	if s := r.shadow; s != nil && s.failure == nil {
		want = min(want, s.position+1)
	}
	r.mu.Lock()
	if r.rebuildRequested {
		r.mu.Unlock()
		return true
	}
	wctx, cancel := context.WithCancel(ctx)
	r.waitCancel = cancel
	r.mu.Unlock()
	err := r.e.log.Wait(wctx, want)
	cancel()
	r.mu.Lock()
	r.waitCancel = nil
	r.mu.Unlock()
	return !errors.Is(err, eventlog.ErrClosed)
}

// startShadow starts rebuilding into a fresh generation, replacing any shadow
// already there (another version's, or a failed one).
func (r *runner) startShadow() error {
	if s := r.shadow; s != nil && s.version == r.version && s.failure == nil {
		return nil
	}
	gen, err := r.e.allocGen()
	if err != nil {
		return err
	}
	err = r.e.db.Update(func(txn *badger.Txn) error {
		meta, found, err := loadMeta(txn, r.name)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("projection %s has no meta", r.name)
		}
		if meta.ShadowGen != 0 {
			if err := txn.Set(dropKey(meta.ShadowGen), nil); err != nil {
				return err
			}
		}
		meta.ShadowGen, meta.ShadowVersion = gen, r.version
		if err := txn.Set(metaKey(r.name), marshalMeta(meta)); err != nil {
			return err
		}
		return txn.Set(checkpointKey(gen), marshalCheckpoint(checkpoint{}))
	})
	if err != nil {
		return fmt.Errorf("projection %s: start rebuild: %w", r.name, err)
	}
	r.mu.Lock()
	r.shadow = &genState{gen: gen, version: r.version, rows: &rowCache{}}
	r.notify()
	r.mu.Unlock()
	r.e.kickCleaner()
	r.e.logger.Info("projection rebuild started", "projection", r.name, "version", r.version, "gen", gen)
	return nil
}

// swap makes the caught-up shadow the active generation in one transaction
// and marks the old one for deletion.
func (r *runner) swap() error {
	s := r.shadow
	old := r.active.gen
	meta := metaRecord{Gen: s.gen, Version: s.version}
	err := r.e.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(metaKey(r.name), marshalMeta(meta)); err != nil {
			return err
		}
		return txn.Set(dropKey(old), nil)
	})
	if err != nil {
		return fmt.Errorf("projection %s: swap in generation %d: %w", r.name, s.gen, err)
	}
	r.mu.Lock()
	r.active = *s
	r.shadow = nil
	r.notify()
	r.mu.Unlock()
	r.e.kickCleaner()
	r.e.logger.Info("projection rebuilt and swapped in", "projection", r.name, "version", s.version, "position", s.position)
	return nil
}

// applyBatch applies the next batch of events to g. If Apply fails on an
// event, the events before it are committed and g stops at it. If the
// effects outgrow one badger transaction, a shorter prefix is committed and
// the rest waits for the next batch.
func (r *runner) applyBatch(g *genState) error {
	started := time.Now()
	evs, _, err := r.e.log.ReadAll(g.position+1, r.e.batchMax)
	if err != nil {
		return fmt.Errorf("projection %s: %w", r.name, err)
	}
	n := len(evs)
	cp := checkpoint{Position: g.position, Skipped: g.skipped}
	var stop *failure
	for n > 0 {
		res, err := r.applyTxn(g, evs[:n])
		if err != nil {
			return err
		}
		if res.problemAt < 0 {
			cp = res.committed
			break
		}
		i := res.problemAt
		if res.tooBig {
			// The failure further on, if any, was not reached.
			stop = nil
			if i == 0 {
				stop = &failure{position: evs[0].Position, err: fmt.Sprintf("the effects of event %d exceed one transaction", evs[0].Position)}
			}
		} else {
			stop = &failure{position: evs[i].Position, err: res.applyErr.Error()}
		}
		n = i
	}
	r.mu.Lock()
	g.position, g.skipped, g.failure = cp.Position, cp.Skipped, stop
	r.notify()
	r.mu.Unlock()
	r.eventsApplied.Add(uint64(n))
	r.e.metrics.batchSeconds.WithLabelValues(r.name).Observe(time.Since(started).Seconds())
	if stop != nil {
		r.e.logger.Error("projection stopped at an event it cannot apply", "projection", r.name, "gen", g.gen, "position", stop.position, "err", stop.err)
	}
	return nil
}

// txnResult says how far applyTxn got. problemAt < 0: everything committed,
// and committed is the checkpoint written.
type txnResult struct {
	problemAt int
	tooBig    bool
	applyErr  error
	committed checkpoint
}

// applyTxn applies evs to g in one transaction with the checkpoint. On a
// problem it commits nothing and says where the problem was. Built-in rows
// kept decoded are written before the checkpoint; if they make the
// transaction too big, the first half of the events it applied is tried
// next.
func (r *runner) applyTxn(g *genState, evs []eventlog.Event) (txnResult, error) {
	txn := r.e.db.NewTransaction(true)
	defer txn.Discard()
	t := &tx{txn: txn, gen: g.gen, rows: g.rows, changed: r.txnRows, changedKeys: r.txnRowKeys}
	defer func() {
		clear(t.changed)
		clear(t.changedKeys)
		r.txnRows, r.txnRowKeys = t.changed, t.changedKeys[:0]
	}()
	cp := checkpoint{Position: g.position, Skipped: g.skipped}
	for i := range evs {
		ev := &evs[i]
		if len(t.changedKeys) >= txnRowsChangedMax {
			if err := t.spillRows(); err != nil {
				return r.rowsProblem(t, i, cp, err)
			}
		}
		if r.p.Wants(ev) {
			err := r.safeApply(t, ev)
			switch {
			case t.storageErr != nil:
				return txnResult{}, fmt.Errorf("projection %s at %d: %w", r.name, ev.Position, t.storageErr)
			case t.tooBig:
				return txnResult{problemAt: i, tooBig: true}, nil
			case errors.Is(err, ErrSkip):
				cp.Skipped++
			case err != nil:
				return txnResult{problemAt: i, applyErr: err}, nil
			}
		}
		cp.Position = ev.Position
	}
	if err := t.writeRows(); err != nil {
		return r.rowsProblem(t, len(evs), cp, err)
	}
	last := len(evs) - 1
	if err := txn.Set(checkpointKey(g.gen), marshalCheckpoint(cp)); err != nil {
		if errors.Is(err, badger.ErrTxnTooBig) {
			return txnResult{problemAt: last, tooBig: true}, nil
		}
		return txnResult{}, fmt.Errorf("projection %s: checkpoint %d: %w", r.name, cp.Position, err)
	}
	if h := r.e.testHook; h != nil && h(beforeCommit, r.name, cp.Position) {
		return txnResult{}, errCrash
	}
	if err := txn.Commit(); err != nil {
		if errors.Is(err, badger.ErrTxnTooBig) {
			return txnResult{problemAt: last, tooBig: true}, nil
		}
		// Whether any of it reached the store is unknown: the cache
		// starts again from what the store says.
		g.rows.clear()
		return txnResult{}, fmt.Errorf("projection %s: commit through %d: %w", r.name, cp.Position, err)
	}
	t.commitRows()
	if h := r.e.testHook; h != nil && h(afterCommit, r.name, cp.Position) {
		return txnResult{}, errCrash
	}
	return txnResult{problemAt: -1, committed: cp}, nil
}

// rowsProblem reports a failure to write the built-in rows of the first
// applied events: a storage error, or a transaction too big for them, in
// which case the first half of them is tried next (none: the first event's
// effects alone exceed a transaction).
func (r *runner) rowsProblem(t *tx, applied int, cp checkpoint, err error) (txnResult, error) {
	if t.tooBig {
		return txnResult{problemAt: applied / 2, tooBig: true}, nil
	}
	return txnResult{}, fmt.Errorf("projection %s: rows through %d: %w", r.name, cp.Position, err)
}

// safeApply turns a panicking Apply into an error that stops the projection
// visibly instead of taking the node down.
func (r *runner) safeApply(t *tx, ev *eventlog.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("apply panicked: %v", p)
		}
	}()
	return r.p.Apply(t, ev)
}
