package ledger

import (
	"github.com/ordoledger/ordo/crypto"
)

// Expected-version sentinels for AppendCommand.ExpectedVersion; values ≥ 0
// demand that exact current stream version (the version of its last event,
// counting from 0).
const (
	ExpectedAny      int64 = -1
	ExpectedNoStream int64 = -2
	ExpectedExists   int64 = -3
)

// Content types of event data.
const (
	ContentBytes = ""
	ContentJSON  = "application/json"
)

// Command is the one thing a client request asks the state machine to do.
// Exactly one field is set.
type Command struct {
	Append *AppendCommand `cbor:"1,keyasint,omitempty"`
}

// AppendCommand appends events to one stream, atomically.
type AppendCommand struct {
	Stream          string      `cbor:"1,keyasint"`
	ExpectedVersion int64       `cbor:"2,keyasint"`
	Events          []EventData `cbor:"3,keyasint"`
}

// EventData is one event as a client proposes it.
type EventData struct {
	ID          [16]byte `cbor:"1,keyasint"`
	Type        string   `cbor:"2,keyasint"`
	ContentType string   `cbor:"3,keyasint,omitempty"`
	Data        []byte   `cbor:"4,keyasint,omitempty"`
	Metadata    []byte   `cbor:"5,keyasint,omitempty"`
}

// Result codes.
const (
	CodeOK                   = "ok"
	CodeExists               = "exists"
	CodeWrongExpectedVersion = "wrong_expected_version"
	CodeIDReused             = "id_reused"
	CodeBadCommand           = "bad_command"
	CodeSeqTooOld            = "client_seq_too_old"
)

// Result is what executing one request produced. Its canonical encoding is a
// leaf of the batch's results Merkle tree; RequestHash binds it to the request
// (crypto.Hash of the encoded SignedRequest).
type Result struct {
	RequestHash   crypto.Digest `cbor:"1,keyasint"`
	Code          string        `cbor:"2,keyasint"`
	Message       string        `cbor:"3,keyasint,omitempty"`
	Positions     []uint64      `cbor:"4,keyasint,omitempty"`
	StreamVersion int64         `cbor:"5,keyasint"`
	EntrySeq      uint64        `cbor:"6,keyasint"`
}
