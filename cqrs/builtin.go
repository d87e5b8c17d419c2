package cqrs

import (
	"encoding/json"
	"fmt"

	"github.com/ordoledger/ordo/eventlog"
)

// Built-in projection names and versions. Bump a version whenever its Apply
// changes meaning: the engine then rebuilds it.
const (
	StreamsProjection    = "streams"
	EventTypesProjection = "event-types"
	BalancesProjection   = "balances"

	streamsVersion    = 1
	eventTypesVersion = 1
	balancesVersion   = 1
)

// streamRow is a row of the streams projection, keyed by stream.
type streamRow struct {
	Stream        string `json:"stream"`
	Version       uint64 `json:"version"`
	Events        uint64 `json:"events"`
	FirstPosition uint64 `json:"first_position"`
	LastPosition  uint64 `json:"last_position"`
	FirstTime     string `json:"first_time"`
	LastTime      string `json:"last_time"`
}

// streamsProjection keeps one row per stream: its version, event count and
// first and last positions and times.
type streamsProjection struct{}

func (streamsProjection) Name() string               { return StreamsProjection }
func (streamsProjection) Version() int               { return streamsVersion }
func (streamsProjection) Wants(*eventlog.Event) bool { return true }
func (streamsProjection) Apply(t Tx, ev *eventlog.Event) error {
	var row streamRow
	if err := getRow(t, ev.Stream, &row); err != nil {
		return err
	}
	if row.Events == 0 {
		row = streamRow{Stream: ev.Stream, FirstPosition: ev.Position, FirstTime: formatTime(ev.Timestamp)}
	}
	row.Version = ev.Version
	row.Events++
	row.LastPosition = ev.Position
	row.LastTime = formatTime(ev.Timestamp)
	return setRow(t, ev.Stream, &row)
}

// typeRow is a row of the event-types projection, keyed by type.
type typeRow struct {
	Type  string `json:"type"`
	Count uint64 `json:"count"`
}

// eventTypesProjection counts events per type.
type eventTypesProjection struct{}

func (eventTypesProjection) Name() string                  { return EventTypesProjection }
func (eventTypesProjection) Version() int                  { return eventTypesVersion }
func (eventTypesProjection) Wants(ev *eventlog.Event) bool { return ev.Type != "" }
func (eventTypesProjection) Apply(t Tx, ev *eventlog.Event) error {
	row := typeRow{Type: ev.Type}
	if err := getRow(t, ev.Type, &row); err != nil {
		return err
	}
	row.Count++
	return setRow(t, ev.Type, &row)
}

// getRow decodes the row under key into v, leaving v alone if there is none.
func getRow(t Tx, key string, v any) error {
	b, found, err := t.Get(key)
	if err != nil || !found {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("stored row %q: %w", key, err)
	}
	return nil
}

func setRow(t Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode row %q: %w", key, err)
	}
	return t.Set(key, b)
}
