package pbft

import (
	"encoding/binary"
	"fmt"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Kind names a signed message kind. Its String is part of the signing domain,
// so a signature of one kind never verifies as another.
type Kind uint8

// Message kinds.
const (
	KindRequest Kind = iota + 1
	KindPrePrepare
	KindPrepare
	KindCommit
	KindCheckpoint
	KindViewChange
	KindNewView
	KindExecuted
)

var kindNames = [...]string{
	KindRequest:    "request",
	KindPrePrepare: "pre-prepare",
	KindPrepare:    "prepare",
	KindCommit:     "commit",
	KindCheckpoint: "checkpoint",
	KindViewChange: "view-change",
	KindNewView:    "new-view",
	KindExecuted:   "executed",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Request is what a client signs: its key, its own sequence number and an
// opaque command for the state machine.
type Request struct {
	Client  crypto.PublicKey `cbor:"1,keyasint"`
	Seq     uint64           `cbor:"2,keyasint"`
	Command []byte           `cbor:"3,keyasint"`
}

// SignedRequest is a Request's canonical encoding and the client's signature
// over it (kind "request"). Batches carry SignedRequests encoded with codec;
// those exact bytes are the Merkle leaves of the batch digest.
type SignedRequest struct {
	Body codec.Raw `cbor:"1,keyasint"`
	Sig  []byte    `cbor:"2,keyasint"`
}

// Envelope is a replica-signed protocol message as it travels and is stored.
// Body is the canonical encoding of the kind's body struct; Sig covers it in
// the kind's domain. Batch is set only on PRE-PREPARE: the encoded
// SignedRequests, bound to the signature through the body's Digest.
type Envelope struct {
	Kind  Kind      `cbor:"1,keyasint"`
	Body  codec.Raw `cbor:"2,keyasint"`
	Sig   []byte    `cbor:"3,keyasint"`
	Batch [][]byte  `cbor:"4,keyasint,omitempty"`
}

// PrePrepare proposes a batch for (View, Seq). Timestamp is the primary's clock
// in Unix nanoseconds; see BatchDigest.
type PrePrepare struct {
	View      uint64        `cbor:"1,keyasint"`
	Seq       uint64        `cbor:"2,keyasint"`
	Digest    crypto.Digest `cbor:"3,keyasint"`
	Timestamp int64         `cbor:"4,keyasint"`
	Replica   uint32        `cbor:"5,keyasint"`
}

// Prepare is a backup's vote for the digest proposed at (View, Seq).
type Prepare struct {
	View    uint64        `cbor:"1,keyasint"`
	Seq     uint64        `cbor:"2,keyasint"`
	Digest  crypto.Digest `cbor:"3,keyasint"`
	Replica uint32        `cbor:"4,keyasint"`
}

// Commit is a replica's vote that (View, Seq, Digest) is prepared. 2f+1
// matching Commits are the batch's commit certificate.
type Commit struct {
	View    uint64        `cbor:"1,keyasint"`
	Seq     uint64        `cbor:"2,keyasint"`
	Digest  crypto.Digest `cbor:"3,keyasint"`
	Replica uint32        `cbor:"4,keyasint"`
}

// Executed is a replica's statement that executing batch Seq produced results
// whose Merkle root is ResultsRoot and extended the hash chain to EntryHash.
// f+1 matching Executed messages make a reply bundle no faulty gateway can forge.
type Executed struct {
	Seq         uint64        `cbor:"1,keyasint"`
	ResultsRoot crypto.Digest `cbor:"2,keyasint"`
	EntryHash   crypto.Digest `cbor:"3,keyasint"`
	Replica     uint32        `cbor:"4,keyasint"`
}

// BatchDigest binds a batch's requests and the primary's timestamp:
// SHA-256("ordo/batch" ‖ timestamp (8 bytes, big endian) ‖ RFC 6962 root of the
// encoded requests). The timestamp is inside the digest so that the agreed
// time is agreed like the requests are.
func BatchDigest(timestamp int64, requests [][]byte) crypto.Digest {
	root := crypto.MerkleRoot(requests)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(timestamp))
	return crypto.Hash([]byte("ordo/batch"), ts[:], root[:])
}

// Certificate is the proof that a batch committed: 2f+1 COMMIT envelopes from
// distinct replicas, all for (View, Seq, Digest). Timestamp is the PRE-PREPARE's
// timestamp, which Digest binds: with it, anyone holding the batch can check
// BatchDigest(Timestamp, batch) == Digest without the PRE-PREPARE itself.
type Certificate struct {
	View      uint64        `cbor:"1,keyasint"`
	Seq       uint64        `cbor:"2,keyasint"`
	Digest    crypto.Digest `cbor:"3,keyasint"`
	Commits   []Envelope    `cbor:"4,keyasint"`
	Timestamp int64         `cbor:"5,keyasint"`
}
