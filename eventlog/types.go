package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Errors callers branch on.
var (
	// ErrOutOfOrder is returned by Apply for any seq other than Applied()+1;
	// the node relies on it to skip batches it already applied.
	ErrOutOfOrder = errors.New("eventlog: entry out of order")
	// ErrNotFound is returned for an entry, event or stream that does not exist.
	ErrNotFound = errors.New("eventlog: not found")
	// ErrBatchTooBig is returned when a batch does not fit in one
	// transaction: its executor went past BatchWritesMax or
	// BatchWriteBytesMax, or its entry would not decode again under the
	// codec's limits. Executors keep within the budget (see Tx.Room), so
	// seeing this means an executor's bound is wrong.
	ErrBatchTooBig = errors.New("eventlog: batch too big for one transaction")
	// ErrNoRoom is returned by AppendEvents, which then has written nothing,
	// when the events would not fit in what is left of the batch's write
	// budget after the room the executor reserved (Tx.Reserve).
	ErrNoRoom = errors.New("eventlog: no room left in the batch")
	// ErrCorrupt is returned when a stored value does not decode or does not
	// match what its key and hash chain say it must be. Such a value is never served.
	ErrCorrupt = errors.New("eventlog: corrupt stored value")
	// ErrOlderFormat: the log was written by an earlier ordo whose head kept
	// no state digest. Move the data directory aside; the node fetches every
	// entry from its peers again.
	ErrOlderFormat = errors.New("eventlog: log written by an earlier ordo without a state digest in its head; move the data directory aside and let the node fetch the log again")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("eventlog: closed")
)

// entryDomain separates entry hashes from every other SHA-256 in ordo.
const entryDomain = "ordo/entry"

// Entry is one committed batch as the log keeps it.
// Hash = SHA-256("ordo/entry" ‖ PrevHash ‖ Seq (8 bytes BE) ‖ Digest ‖ ResultsRoot).
type Entry struct {
	Seq         uint64        `cbor:"1,keyasint"`
	View        uint64        `cbor:"2,keyasint"`
	Timestamp   int64         `cbor:"3,keyasint"`
	Digest      crypto.Digest `cbor:"4,keyasint"`
	Requests    [][]byte      `cbor:"5,keyasint"`
	Certificate []byte        `cbor:"6,keyasint"`
	Results     [][]byte      `cbor:"7,keyasint"`
	ResultsRoot crypto.Digest `cbor:"8,keyasint"`
	PrevHash    crypto.Digest `cbor:"9,keyasint"`
	Hash        crypto.Digest `cbor:"10,keyasint"`
	// FirstPosition is the global position of the first event this entry
	// produced; with EventCount 0 it is the position the next event will get.
	FirstPosition uint64 `cbor:"11,keyasint"`
	EventCount    uint64 `cbor:"12,keyasint"`
}

// EntryHeader is what the node knows about a committed batch before it runs.
type EntryHeader struct {
	Seq, View   uint64
	Timestamp   int64
	Digest      crypto.Digest
	Requests    [][]byte
	Certificate []byte
}

// Event is one stored event.
type Event struct {
	Position    uint64   `cbor:"1,keyasint"`
	Stream      string   `cbor:"2,keyasint"`
	Version     uint64   `cbor:"3,keyasint"`
	ID          [16]byte `cbor:"4,keyasint"`
	Type        string   `cbor:"5,keyasint"`
	ContentType string   `cbor:"6,keyasint,omitempty"`
	Data        []byte   `cbor:"7,keyasint,omitempty"`
	Metadata    []byte   `cbor:"8,keyasint,omitempty"`
	EntrySeq    uint64   `cbor:"9,keyasint"`
	Timestamp   int64    `cbor:"10,keyasint"`
}

// NewEvent is an event the executor asks Tx.AppendEvents to write.
// ContentHash is the executor's digest of the event's content; the log keeps it
// in the ID index so that idempotent retries can be recognised.
type NewEvent struct {
	ID          [16]byte
	Type        string
	ContentType string
	Data        []byte
	Metadata    []byte
	ContentHash crypto.Digest
}

// EventRef is what the ID index says about an event ID.
type EventRef struct {
	Stream      string        `cbor:"1,keyasint"`
	Position    uint64        `cbor:"2,keyasint"`
	Version     uint64        `cbor:"3,keyasint"`
	ContentHash crypto.Digest `cbor:"4,keyasint"`
}

// head is the newest applied entry, stored under keyHead and mirrored in memory.
type head struct {
	Seq          uint64        `cbor:"1,keyasint"`
	Hash         crypto.Digest `cbor:"2,keyasint"`
	LastPosition uint64        `cbor:"3,keyasint"`
	// State is the state digest as of Seq (see Log.StateDigest).
	State crypto.Digest `cbor:"4,keyasint"`
}

// EntryHash is the hash chain link of an entry.
func EntryHash(prev crypto.Digest, seq uint64, digest, resultsRoot crypto.Digest) crypto.Digest {
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	return crypto.Hash([]byte(entryDomain), prev[:], s[:], digest[:], resultsRoot[:])
}

// Check verifies what an entry says about itself: its results root and its
// hash given its PrevHash. It does not check the certificate or the batch
// digest (that is pbft's) nor the link to the previous entry (that needs it).
func (e *Entry) Check() error {
	if root := crypto.MerkleRoot(e.Results); root != e.ResultsRoot {
		return fmt.Errorf("entry %d: results root %v, results hash to %v: %w", e.Seq, e.ResultsRoot, root, ErrCorrupt)
	}
	if h := EntryHash(e.PrevHash, e.Seq, e.Digest, e.ResultsRoot); h != e.Hash {
		return fmt.Errorf("entry %d: hash %v, contents hash to %v: %w", e.Seq, e.Hash, h, ErrCorrupt)
	}
	return nil
}

// DecodeEntry decodes an entry from untrusted bytes (a peer, a disk) and checks
// it with Check.
func DecodeEntry(b []byte) (*Entry, error) {
	var e Entry
	if err := codec.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode entry: %w: %w", ErrCorrupt, err)
	}
	if err := e.Check(); err != nil {
		return nil, err
	}
	return &e, nil
}

// decodeStoredEntry decodes the value under entryKey(seq).
func decodeStoredEntry(seq uint64, b []byte) (*Entry, error) {
	e, err := DecodeEntry(b)
	if err != nil {
		return nil, fmt.Errorf("stored entry %d: %w", seq, err)
	}
	if e.Seq != seq {
		return nil, fmt.Errorf("stored entry %d holds seq %d: %w", seq, e.Seq, ErrCorrupt)
	}
	return e, nil
}

// decodeStoredEvent decodes the value under eventKey(pos).
func decodeStoredEvent(pos uint64, b []byte) (*Event, error) {
	var ev Event
	if err := codec.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("stored event %d: %w: %w", pos, ErrCorrupt, err)
	}
	if ev.Position != pos {
		return nil, fmt.Errorf("stored event %d holds position %d: %w", pos, ev.Position, ErrCorrupt)
	}
	if err := checkStreamName(ev.Stream); err != nil {
		return nil, fmt.Errorf("stored event %d: %w: %w", pos, ErrCorrupt, err)
	}
	return &ev, nil
}

func decodeEventRef(id [16]byte, b []byte) (EventRef, error) {
	var r EventRef
	if err := codec.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("stored id %x: %w: %w", id, ErrCorrupt, err)
	}
	return r, nil
}

func decodeHead(b []byte) (head, error) {
	var h head
	if err := codec.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("stored head: %w: %w", ErrCorrupt, err)
	}
	return h, nil
}
