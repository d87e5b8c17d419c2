package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ordoledger/ordo/eventlog"
)

// Rebuild applies the ledger events among events to the ledger state in tx,
// skipping events of other streams. The events must continue, in log order,
// those already applied to that state; from a log's first event on, the state
// Rebuild builds is byte for byte the one the executor kept. Events that do
// not read back exactly as the executor writes them, or that contradict the
// state, are an error. A long log is rebuilt a page of events per transaction.
func Rebuild(tx *eventlog.Tx, events []eventlog.Event) error {
	b := newLedgerBatch(tx, 0)
	for i := range events {
		ev := &events[i]
		if !isLedgerStream(ev.Stream) {
			continue
		}
		if err := b.replay(ev); err != nil {
			return fmt.Errorf("rebuild: event %d (%s on %s): %w", ev.Position, ev.Type, ev.Stream, err)
		}
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	return nil
}

func (b *ledgerBatch) replay(ev *eventlog.Event) error {
	c, err := b.newChain(true)
	if err != nil {
		return err
	}
	num := c.next
	if got, ok := ledgerEventNum(ev.ID); !ok || got != num {
		return fmt.Errorf("event id %x is not that of ledger event %d", ev.ID, num)
	}
	if ev.ContentType != ContentJSON {
		return fmt.Errorf("content type %q", ev.ContentType)
	}
	var stream string
	switch ev.Type {
	case EventAccountCreated:
		var d accountCreated
		if err := decodeExact(ev.Data, &d); err != nil {
			return err
		}
		stream = AccountStreamPrefix + d.ID
		err = c.applyAccountCreated(&d, num)
	case EventTransferCreated:
		var d transferCreated
		if err := decodeExact(ev.Data, &d); err != nil {
			return err
		}
		stream = TransferStreamPrefix + d.ID
		err = c.applyTransferCreated(&d, ev.Timestamp, num)
	case EventPendingPosted, EventPendingVoided, EventPendingExpired:
		var d pendingSettled
		if err := decodeExact(ev.Data, &d); err != nil {
			return err
		}
		var meta settleMetadata
		if ev.Type != EventPendingExpired {
			if err := decodeExact(ev.Metadata, &meta); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
		}
		stream = TransferStreamPrefix + d.PendingID
		err = c.applySettled(ev.Type, &d, meta.ID, num)
	default:
		return errors.New("not a ledger event type")
	}
	if err != nil {
		return err
	}
	if ev.Stream != stream {
		return fmt.Errorf("event belongs on stream %s", stream)
	}
	if ev.Type != EventPendingPosted && ev.Type != EventPendingVoided && len(ev.Metadata) != 0 {
		return errors.New("unexpected metadata")
	}
	c.next++
	_, err = c.commit()
	return err
}

// decodeExact decodes JSON that must be exactly what encoding v gives.
func decodeExact(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("data %q is not as the ledger writes it", data)
	}
	return nil
}
