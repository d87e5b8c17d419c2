package cqrs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Query bounds.
const (
	// ListLimitDefault and ListLimitMax bound the rows of one page.
	ListLimitDefault = 100
	ListLimitMax     = 1000
	// ListBytesMax bounds one page's row bytes; a page stops after the row
	// that crosses it, so every page makes progress.
	ListBytesMax = 4 << 20
	// cursorVersion leads every cursor so the encoding can change later.
	cursorVersion byte = 1
	// cursorCharsMax bounds an encoded cursor before it is decoded.
	cursorCharsMax = (1 + RowKeyBytesMax + 2) / 3 * 4
	// listPrefetchRows is how many rows badger reads ahead while listing.
	listPrefetchRows = 100
)

// Row is one row of a projection.
type Row struct {
	Key  string          `json:"key"`
	Data json.RawMessage `json:"data"`
}

// Get returns the row under key and the position of the projection it was
// read at. An unknown projection is ErrUnknownProjection, a missing row
// ErrNotFound (position is set then too).
func (e *Engine) Get(name, key string) (json.RawMessage, uint64, error) {
	if _, err := e.runner(name); err != nil {
		return nil, 0, err
	}
	if err := checkKey(key); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var (
		row      []byte
		found    bool
		position uint64
	)
	err := e.view(func(txn *badger.Txn) error {
		meta, ok, err := loadMeta(txn, name)
		if err != nil || !ok {
			return err
		}
		cp, err := loadCheckpoint(txn, meta.Gen)
		if err != nil {
			return err
		}
		position = cp.Position
		row, found, err = get(txn, rowKey(meta.Gen, key))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("get %s/%s: %w", name, key, err)
	}
	if !found {
		return nil, position, fmt.Errorf("%w: %s/%s", ErrNotFound, name, key)
	}
	return row, position, nil
}

// List returns up to limit rows whose keys start with prefix, in key order,
// after the row the cursor names (the first page has cursor ""). next is the
// cursor of the following page, "" after the last. Rows are read from one
// snapshot together with position.
func (e *Engine) List(name, prefix string, limit int, cursor string) ([]Row, string, uint64, error) {
	if _, err := e.runner(name); err != nil {
		return nil, "", 0, err
	}
	if limit <= 0 || limit > ListLimitMax {
		return nil, "", 0, fmt.Errorf("%w: limit %d outside 1..%d", ErrInvalid, limit, ListLimitMax)
	}
	if len(prefix) > RowKeyBytesMax {
		return nil, "", 0, fmt.Errorf("%w: prefix of %d bytes exceeds %d", ErrInvalid, len(prefix), RowKeyBytesMax)
	}
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", 0, err
	}
	var (
		rows     []Row
		next     string
		position uint64
	)
	err = e.view(func(txn *badger.Txn) error {
		meta, ok, err := loadMeta(txn, name)
		if err != nil || !ok {
			return err
		}
		cp, err := loadCheckpoint(txn, meta.Gen)
		if err != nil {
			return err
		}
		position = cp.Position
		base := len(rowKey(meta.Gen, ""))
		scan := rowKey(meta.Gen, prefix)
		seek := scan
		if after != "" && after >= prefix {
			// The smallest key after the cursor's is the cursor's key with a 0x00.
			seek = append(rowKey(meta.Gen, after), 0)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: scan, PrefetchValues: true, PrefetchSize: min(limit, listPrefetchRows)})
		defer it.Close()
		size := 0
		for it.Seek(seek); it.ValidForPrefix(scan); it.Next() {
			if len(rows) == limit || size >= ListBytesMax {
				next = encodeCursor(rows[len(rows)-1].Key)
				break
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read row: %w", err)
			}
			rows = append(rows, Row{Key: string(item.Key()[base:]), Data: v})
			size += len(v)
		}
		return nil
	})
	if err != nil {
		return nil, "", 0, fmt.Errorf("list %s: %w", name, err)
	}
	return rows, next, position, nil
}

// encodeCursor renders the opaque cursor that continues after key.
func encodeCursor(key string) string {
	b := make([]byte, 0, 1+len(key))
	b = append(b, cursorVersion)
	b = append(b, key...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses a cursor from a client; "" is the first page.
func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	if len(c) > cursorCharsMax {
		return "", fmt.Errorf("%w: cursor of %d characters exceeds %d", ErrInvalid, len(c), cursorCharsMax)
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", fmt.Errorf("%w: cursor: %w", ErrInvalid, err)
	}
	if len(b) < 2 || b[0] != cursorVersion {
		return "", fmt.Errorf("%w: cursor is not one this server issued", ErrInvalid)
	}
	key := string(b[1:])
	if err := checkKey(key); err != nil {
		return "", fmt.Errorf("%w: cursor: %w", ErrInvalid, err)
	}
	return key, nil
}

// errWaitTimeout: the projection did not reach the position in time.
var errWaitTimeout = errors.New("cqrs: projection did not reach the position in time")

// WaitPosition returns once the projection has applied position pos, or
// after timeout with an error; either way it returns the projection's
// position.
func (e *Engine) WaitPosition(ctx context.Context, name string, pos uint64, timeout time.Duration) (uint64, error) {
	r, err := e.runner(name)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		r.mu.Lock()
		cur, ch := r.active.position, r.changed
		r.mu.Unlock()
		if cur >= pos {
			return cur, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return cur, fmt.Errorf("%s at %d, waited %v for %d: %w", name, cur, timeout, pos, errWaitTimeout)
			}
			return cur, ctx.Err()
		case <-e.ctx.Done():
			return cur, ErrClosed
		case <-ch:
		}
	}
}

// Projection statuses.
const (
	StatusRunning    = "running"
	StatusRebuilding = "rebuilding"
	StatusFailed     = "failed"
)

// ProjectionStatus is one row of GET /v1/projections.
type ProjectionStatus struct {
	Name string `json:"name"`
	// Version is the registered code's; ServingVersion built the rows being
	// served (they differ while a new version rebuilds).
	Version        int64  `json:"version"`
	ServingVersion int64  `json:"serving_version"`
	Position       uint64 `json:"position"`
	LagPositions   uint64 `json:"lag_positions"`
	// LagMs is how long ago the oldest event not yet applied was committed.
	LagMs  int64  `json:"lag_ms"`
	Status string `json:"status"`
	// Rebuilding is true while a shadow generation is being built, even if
	// Status says failed (the rebuild stopped at an event).
	Rebuilding      bool    `json:"rebuilding"`
	RebuildPercent  float64 `json:"rebuild_percent"`
	RebuildPosition uint64  `json:"rebuild_position"`
	Error           string  `json:"error"`
	// FailedPosition is the event the projection (or its rebuild) stopped at.
	FailedPosition uint64 `json:"failed_position,omitempty"`
	SkippedEvents  uint64 `json:"skipped_events"`
	EventsApplied  uint64 `json:"events_applied"`
}

// Status describes every projection, in name order.
func (e *Engine) Status() []ProjectionStatus {
	head := e.log.LastPosition()
	now := time.Now()
	runners := e.allRunners()
	out := make([]ProjectionStatus, 0, len(runners))
	for _, r := range runners {
		s := r.snapshot()
		st := ProjectionStatus{
			Name: r.name, Version: r.version, ServingVersion: s.active.version,
			Position: s.active.position, Status: StatusRunning, SkippedEvents: s.active.skipped,
			EventsApplied: r.eventsApplied.Load(),
		}
		if head > s.active.position {
			st.LagPositions = head - s.active.position
			st.LagMs = e.lagMs(s.active.position+1, now)
		}
		if s.shadow != nil {
			st.Status, st.Rebuilding = StatusRebuilding, true
			st.RebuildPosition = s.shadow.position
			st.RebuildPercent = 100
			if head > 0 {
				st.RebuildPercent = math.Floor(1000*float64(s.shadow.position)/float64(head)) / 10
			}
		}
		switch {
		case s.storageErr != "":
			st.Status, st.Error = StatusFailed, s.storageErr
		case s.shadow != nil && s.shadow.failure != nil:
			st.Status = StatusFailed
			st.Error = "rebuild: " + s.shadow.failure.err
			st.FailedPosition = s.shadow.failure.position
		case s.active.failure != nil:
			if s.shadow == nil {
				st.Status = StatusFailed
			}
			st.Error = s.active.failure.err
			st.FailedPosition = s.active.failure.position
		}
		out = append(out, st)
	}
	return out
}

// lagMs is the age of the event at pos against now (0 if it cannot be read,
// or if the agreed log time is ahead of this node's clock).
func (e *Engine) lagMs(pos uint64, now time.Time) int64 {
	ev, err := e.log.EventAt(pos)
	if err != nil {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, ev.Timestamp)).Milliseconds())
}
