package cqrs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ordoledger/ordo/eventlog"
)

// Subscription bounds.
const (
	// SubscriptionsMax bounds open subscriptions per engine.
	SubscriptionsMax = 1024
	// SubscribeBatchEventsMax bounds the events read, rendered and written
	// per step: with eventlog's byte bound on a read, this bounds what one
	// connection buffers.
	SubscribeBatchEventsMax = 256
	// SubscribeWriteTimeout bounds one write to a subscriber: a client that
	// stops reading is dropped instead of holding its goroutine forever.
	SubscribeWriteTimeout = 30 * time.Second
	// SubscribeTypesMax bounds the type= filters of one subscription.
	SubscribeTypesMax = 64
	// contentJSON is the content type whose data the API shows as JSON.
	contentJSON = "application/json"
)

type subscriberCount struct{ n atomic.Int64 }

func (c *subscriberCount) acquire() bool {
	if c.n.Add(1) > SubscriptionsMax {
		c.n.Add(-1)
		return false
	}
	return true
}

func (c *subscriberCount) release()    { c.n.Add(-1) }
func (c *subscriberCount) open() int64 { return c.n.Load() }

// EventJSON is an event as the API shows it.
type EventJSON struct {
	Position    uint64          `json:"position"`
	Stream      string          `json:"stream"`
	Version     uint64          `json:"version"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data,omitempty"`
	DataB64     string          `json:"data_b64,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	MetadataB64 string          `json:"metadata_b64,omitempty"`
	EntrySeq    uint64          `json:"entry_seq"`
	Timestamp   string          `json:"timestamp"`
}

func formatUUID(id [16]byte) string {
	h := hex.EncodeToString(id[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func formatTime(unixNs int64) string {
	return time.Unix(0, unixNs).UTC().Format(time.RFC3339Nano)
}

// NewEventJSON renders an event as every API of ordo shows it (the node's
// event lists and subscriptions alike).
func NewEventJSON(ev *eventlog.Event) EventJSON {
	out := EventJSON{
		Position: ev.Position, Stream: ev.Stream, Version: ev.Version, ID: formatUUID(ev.ID), Type: ev.Type,
		EntrySeq: ev.EntrySeq, Timestamp: formatTime(ev.Timestamp),
	}
	if ev.ContentType == contentJSON && json.Valid(ev.Data) {
		out.Data = ev.Data
	} else if len(ev.Data) > 0 {
		out.DataB64 = base64.StdEncoding.EncodeToString(ev.Data)
	}
	if len(ev.Metadata) > 0 {
		if json.Valid(ev.Metadata) {
			out.Metadata = ev.Metadata
		} else {
			out.MetadataB64 = base64.StdEncoding.EncodeToString(ev.Metadata)
		}
	}
	return out
}

// subscribeFilter selects the events a subscriber asked for.
type subscribeFilter struct {
	streamPrefix string
	types        map[string]bool
}

func (f subscribeFilter) match(ev *eventlog.Event) bool {
	return strings.HasPrefix(ev.Stream, f.streamPrefix) && (len(f.types) == 0 || f.types[ev.Type])
}

// subscribeStart reads ?from= (default 1, the start of the log), or else the
// Last-Event-ID header of a reconnecting EventSource.
func subscribeStart(r *http.Request) (uint64, error) {
	if r.URL.Query().Get("from") != "" {
		from, err := queryUint(r, "from", 1)
		return max(from, 1), err
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		last, err := strconv.ParseUint(id, 10, 64)
		if err != nil || last == ^uint64(0) {
			return 0, fmt.Errorf("%w: Last-Event-ID %q is not a position", ErrInvalid, id)
		}
		return last + 1, nil
	}
	return 1, nil
}

// handleSubscribe streams events as server-sent events: everything from
// ?from= on, then live. It reads the log by position in both phases, so the
// switch from catch-up to live can neither skip nor repeat an event.
func (e *Engine) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	from, err := subscribeStart(r)
	if err != nil {
		writeQueryError(w, err, nil)
		return
	}
	q := r.URL.Query()
	f := subscribeFilter{streamPrefix: q.Get("stream_prefix")}
	if types := q["type"]; len(types) > 0 {
		if len(types) > SubscribeTypesMax {
			writeQueryError(w, fmt.Errorf("%w: %d type filters, at most %d", ErrInvalid, len(types), SubscribeTypesMax), nil)
			return
		}
		f.types = make(map[string]bool, len(types))
		for _, t := range types {
			f.types[t] = true
		}
	}
	if !e.subscribers.acquire() {
		writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("at most %d open subscriptions", SubscriptionsMax))
		return
	}
	defer e.subscribers.release()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	// The connection may serve other requests after this one.
	defer s.rc.SetWriteDeadline(time.Time{})
	if err := s.flush(nil); err != nil {
		return
	}
	if err := e.stream(ctx, s, from, f); err != nil && ctx.Err() == nil {
		e.logger.Debug("subscription ended", "err", err)
	}
}

// stream writes events from position from on until ctx ends or a write fails.
func (e *Engine) stream(ctx context.Context, s *sseWriter, from uint64, f subscribeFilter) error {
	var buf bytes.Buffer
	pos := from
	lastWrite := time.Now()
	for {
		evs, next, err := e.log.ReadAll(pos, SubscribeBatchEventsMax)
		if err != nil {
			msg, _ := json.Marshal(apiError{Error: err.Error(), Code: "internal"})
			buf.Reset()
			fmt.Fprintf(&buf, "event: error\ndata: %s\n\n", msg)
			return errors.Join(err, s.flush(buf.Bytes()))
		}
		buf.Reset()
		for i := range evs {
			if !f.match(&evs[i]) {
				continue
			}
			data, err := json.Marshal(NewEventJSON(&evs[i]))
			if err != nil {
				return fmt.Errorf("render event %d: %w", evs[i].Position, err)
			}
			fmt.Fprintf(&buf, "id: %d\ndata: %s\n\n", evs[i].Position, data)
		}
		pos = next
		if buf.Len() == 0 && time.Since(lastWrite) >= e.heartbeat {
			buf.WriteString(": heartbeat\n\n")
		}
		if buf.Len() > 0 {
			if err := s.flush(buf.Bytes()); err != nil {
				return err
			}
			lastWrite = time.Now()
		}
		if len(evs) == SubscribeBatchEventsMax {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, e.heartbeat-time.Since(lastWrite))
		err = e.log.Wait(wctx, pos)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, eventlog.ErrClosed):
			return err
		}
	}
}

// sseWriter writes and flushes with a deadline per write.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *sseWriter) flush(b []byte) error {
	// Not every ResponseWriter supports deadlines (httptest's recorder does
	// not); the write itself still fails once the client is gone.
	if err := s.rc.SetWriteDeadline(time.Now().Add(SubscribeWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if len(b) > 0 {
		if _, err := s.w.Write(b); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
