package cqrs

import (
	"strconv"

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

func (r *streamRow) appendJSON(b []byte) []byte {
	b = append(b, `{"stream":`...)
	b = appendJSONString(b, r.Stream)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, r.Version, 10)
	b = append(b, `,"events":`...)
	b = strconv.AppendUint(b, r.Events, 10)
	b = append(b, `,"first_position":`...)
	b = strconv.AppendUint(b, r.FirstPosition, 10)
	b = append(b, `,"last_position":`...)
	b = strconv.AppendUint(b, r.LastPosition, 10)
	b = append(b, `,"first_time":`...)
	b = appendJSONString(b, r.FirstTime)
	b = append(b, `,"last_time":`...)
	b = appendJSONString(b, r.LastTime)
	return append(b, '}')
}

// streamsProjection keeps one row per stream: its version, event count and
// first and last positions and times.
type streamsProjection struct{}

func (streamsProjection) Name() string               { return StreamsProjection }
func (streamsProjection) Version() int               { return streamsVersion }
func (streamsProjection) Wants(*eventlog.Event) bool { return true }
func (streamsProjection) Apply(t Tx, ev *eventlog.Event) error {
	// A stream's first event has version 0, and this projection sees every
	// event: a stream has no row before its first event, so there is nothing
	// to read.
	var row *streamRow
	if ev.Version == 0 {
		row = new(streamRow)
	} else {
		var err error
		if row, _, err = loadRow[streamRow](t, ev.Stream); err != nil {
			return err
		}
	}
	if row.Events == 0 {
		*row = streamRow{Stream: ev.Stream, FirstPosition: ev.Position, FirstTime: formatTime(ev.Timestamp)}
	}
	row.Version = ev.Version
	row.Events++
	row.LastPosition = ev.Position
	row.LastTime = formatTime(ev.Timestamp)
	return keepRow(t, ev.Stream, row)
}

// typeRow is a row of the event-types projection, keyed by type.
type typeRow struct {
	Type  string `json:"type"`
	Count uint64 `json:"count"`
}

func (r *typeRow) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, r.Type)
	b = append(b, `,"count":`...)
	b = strconv.AppendUint(b, r.Count, 10)
	return append(b, '}')
}

// eventTypesProjection counts events per type.
type eventTypesProjection struct{}

func (eventTypesProjection) Name() string                  { return EventTypesProjection }
func (eventTypesProjection) Version() int                  { return eventTypesVersion }
func (eventTypesProjection) Wants(ev *eventlog.Event) bool { return ev.Type != "" }
func (eventTypesProjection) Apply(t Tx, ev *eventlog.Event) error {
	row, found, err := loadRow[typeRow](t, ev.Type)
	if err != nil {
		return err
	}
	if !found {
		row.Type = ev.Type
	}
	row.Count++
	return keepRow(t, ev.Type, row)
}
