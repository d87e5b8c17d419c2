package ledger

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// contentDomain separates event content hashes from every other SHA-256 in ordo.
const contentDomain = "ordo/event-content"

// ContentHash is the digest idempotent retries are compared by: the event's
// type, content type, data and metadata, each length-prefixed.
func ContentHash(ev *EventData) crypto.Digest {
	return crypto.Hash([]byte(contentDomain),
		lengthPrefixed([]byte(ev.Type)), lengthPrefixed([]byte(ev.ContentType)),
		lengthPrefixed(ev.Data), lengthPrefixed(ev.Metadata))
}

func lengthPrefixed(b []byte) []byte {
	out := make([]byte, 8, 8+len(b))
	binary.BigEndian.PutUint64(out, uint64(len(b)))
	return append(out, b...)
}

// append executes an AppendCommand with KurrentDB semantics.
func (m *Machine) append(tx *eventlog.Tx, lb *ledgerBatch, req *Request, cmd *AppendCommand) (Result, error) {
	if msg := m.checkAppend(cmd); msg != "" {
		return badCommand(tx, req, msg), nil
	}
	res := Result{RequestHash: req.Hash, EntrySeq: tx.Seq()}
	cur, err := tx.StreamVersion(cmd.Stream)
	if err != nil {
		return res, err
	}
	res.StreamVersion = cur

	// Idempotency comes before the version check: a retry of an append that
	// succeeded would otherwise fail its own expected version.
	hashes := make([]crypto.Digest, len(cmd.Events))
	positions := make([]uint64, len(cmd.Events))
	found, lastVersion := 0, int64(-1)
	conflict := ""
	for i := range cmd.Events {
		ev := &cmd.Events[i]
		hashes[i] = ContentHash(ev)
		ref, ok, err := tx.EventByID(ev.ID)
		if err != nil {
			return res, err
		}
		if !ok {
			continue
		}
		found++
		positions[i] = ref.Position
		lastVersion = max(lastVersion, int64(ref.Version))
		if conflict != "" {
			continue
		}
		switch {
		case ref.Stream != cmd.Stream:
			conflict = fmt.Sprintf("event id %s is already used on another stream", formatID(ev.ID))
		case ref.ContentHash != hashes[i]:
			conflict = fmt.Sprintf("event id %s is already used with other content", formatID(ev.ID))
		}
	}
	switch {
	case found == len(cmd.Events) && conflict == "":
		res.Code = CodeOK
		res.Positions = positions
		res.StreamVersion = lastVersion
		return res, nil
	case found > 0 && conflict == "":
		res.Code = CodeIDReused
		res.Message = fmt.Sprintf("%d of the %d event ids are already used", found, len(cmd.Events))
		return res, nil
	case found > 0:
		res.Code = CodeIDReused
		res.Message = conflict
		return res, nil
	}

	if msg := expectedVersionMismatch(cmd.ExpectedVersion, cur); msg != "" {
		res.Code = CodeWrongExpectedVersion
		res.Message = msg
		return res, nil
	}
	evs := make([]eventlog.NewEvent, len(cmd.Events))
	for i := range cmd.Events {
		ev := &cmd.Events[i]
		evs[i] = eventlog.NewEvent{
			ID: ev.ID, Type: ev.Type, ContentType: ev.ContentType,
			Data: ev.Data, Metadata: ev.Metadata, ContentHash: hashes[i],
		}
	}
	window := itemsWindowCost(len(evs))
	if !lb.fits(cost{results: window.results}) {
		return batchFull(tx, req, "the batch has no room left for the result of %d events", len(evs)), nil
	}
	lb.reserve(window)
	pos, last, err := tx.AppendEvents(cmd.Stream, evs)
	if errors.Is(err, eventlog.ErrNoRoom) {
		return batchFull(tx, req, "the batch has no room left for %d events", len(evs)), nil
	}
	if err != nil {
		return res, err
	}
	res.Code = CodeOK
	res.Positions = pos
	res.StreamVersion = int64(last)
	return res, nil
}

// checkAppend returns why an append is malformed, or "".
func (m *Machine) checkAppend(cmd *AppendCommand) string {
	if !ValidName(cmd.Stream) {
		return fmt.Sprintf("stream name must be 1-%d bytes of [A-Za-z0-9._:@-]", NameBytesMax)
	}
	// The ledger's streams hold only its own events: projections trust them.
	if isLedgerStream(cmd.Stream) {
		return fmt.Sprintf("streams named %s… and %s… are written by the ledger only", AccountStreamPrefix, TransferStreamPrefix)
	}
	if cmd.ExpectedVersion < ExpectedExists {
		return fmt.Sprintf("expected version %d is neither a version nor any, no_stream or exists", cmd.ExpectedVersion)
	}
	if len(cmd.Events) == 0 || len(cmd.Events) > m.cfg.EventsPerAppendMax {
		return fmt.Sprintf("append has %d events, want 1..%d", len(cmd.Events), m.cfg.EventsPerAppendMax)
	}
	// Only membership is asked of this map, never its order.
	seen := make(map[[16]byte]struct{}, len(cmd.Events))
	for i := range cmd.Events {
		ev := &cmd.Events[i]
		if ev.ID == ([16]byte{}) {
			return fmt.Sprintf("event %d has the nil id", i)
		}
		if isLedgerEventID(ev.ID) {
			return fmt.Sprintf("event id %s: ids starting %x are the ledger's", formatID(ev.ID), ledgerIDPrefix)
		}
		if _, dup := seen[ev.ID]; dup {
			return fmt.Sprintf("event id %s appears twice in the append", formatID(ev.ID))
		}
		seen[ev.ID] = struct{}{}
		if len(ev.Type) == 0 || len(ev.Type) > EventTypeBytesMax {
			return fmt.Sprintf("event %d: type must be 1-%d bytes", i, EventTypeBytesMax)
		}
		if len(ev.Data)+len(ev.Metadata) > m.cfg.EventBytesMax {
			return fmt.Sprintf("event %d: %d bytes of data and metadata, at most %d", i, len(ev.Data)+len(ev.Metadata), m.cfg.EventBytesMax)
		}
		switch ev.ContentType {
		case ContentBytes:
		case ContentJSON:
			if !json.Valid(ev.Data) {
				return fmt.Sprintf("event %d: data is not valid JSON", i)
			}
		default:
			return fmt.Sprintf("event %d: content type must be %q or empty", i, ContentJSON)
		}
	}
	return ""
}

// expectedVersionMismatch returns why the stream's current version cur does
// not satisfy expected, or "".
func expectedVersionMismatch(expected, cur int64) string {
	switch {
	case expected == ExpectedAny:
		return ""
	case expected == ExpectedNoStream:
		if cur != -1 {
			return fmt.Sprintf("expected no stream, stream is at version %d", cur)
		}
	case expected == ExpectedExists:
		if cur == -1 {
			return "expected the stream to exist, it has no events"
		}
	case expected != cur:
		return fmt.Sprintf("expected version %d, stream is at version %d", expected, cur)
	}
	return ""
}

// formatID prints an event id in UUID form.
func formatID(id [16]byte) string {
	h := hex.EncodeToString(id[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
