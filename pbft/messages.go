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

// ReplyBundle is a gateway's answer to one client request: the request's
// encoded result (a leaf of the batch's results tree), its RFC 6962 audit
// path, and the encoded EXECUTED envelopes of the replicas whose results root
// matches the gateway's. It is signed by nobody: a client trusts only the f+1
// EXECUTED signatures in it and checks everything else against them. The node
// encodes it as canonical CBOR for clients that ask for application/cbor;
// the json names are those of the JSON answer, which carries the same fields.
type ReplyBundle struct {
	EntrySeq    uint64          `cbor:"1,keyasint" json:"entry_seq"`    // the entry the EXECUTED statements are for
	Result      []byte          `cbor:"2,keyasint" json:"result_b64"`   // the encoded ledger.Result
	ResultIndex uint64          `cbor:"3,keyasint" json:"result_index"` // its leaf index
	ResultCount uint64          `cbor:"4,keyasint" json:"result_count"` // the leaves in the tree
	Proof       []crypto.Digest `cbor:"5,keyasint" json:"proof"`        // audit path, leaf to root
	Executed    [][]byte        `cbor:"6,keyasint" json:"executed"`     // encoded Envelopes of kind EXECUTED
}

// Bounds of a batch submit (POST /v1/requests/batch).
const (
	// SubmitBatchMax bounds the signed requests in one batch submit.
	SubmitBatchMax = 256
	// SubmitBatchBytesMax bounds a batch submit's body; each request in it
	// is also bound by the network's request_bytes_max.
	SubmitBatchBytesMax = 4 << 20
	// SubmitAnswersMediaType is the media type of a batch submit's answer:
	// a stream of frames (codec.AppendFrame), each one SubmitAnswer.
	SubmitAnswersMediaType = "application/x-ordo-answer-frames"
)

// SubmitAnswer is one request's answer inside the answer of a batch submit:
// what POST /v1/requests would have answered for that request alone to a
// client that accepts application/cbor — its HTTP status, media type and
// body (a reply bundle, or a JSON error). Index is the request's place in the
// batch; answers come in the order the requests finish.
type SubmitAnswer struct {
	Index       uint32 `cbor:"1,keyasint"`
	Status      uint16 `cbor:"2,keyasint"`
	ContentType string `cbor:"3,keyasint"`
	Body        []byte `cbor:"4,keyasint"`
}

// Checkpoint states that executing every batch up to Seq left this replica's
// state with StateDigest (the node decides what the digest covers: the log
// head hash and the replicated state). 2f+1 matching Checkpoints from distinct
// replicas make Seq a stable checkpoint; those envelopes are its proof.
type Checkpoint struct {
	Seq         uint64        `cbor:"1,keyasint"`
	StateDigest crypto.Digest `cbor:"2,keyasint"`
	Replica     uint32        `cbor:"3,keyasint"`
}

// PreparedCert proves that a digest prepared at (view, seq): the primary's
// PRE-PREPARE envelope, carried without its batch, and 2f PREPARE envelopes
// from distinct backups for the same (view, seq, digest). The batch is left
// out so that a VIEW-CHANGE stays within the message limit whatever the batch
// size (see Config.Validate); replicas that prepared the digest hold it.
type PreparedCert struct {
	PrePrepare Envelope   `cbor:"1,keyasint"`
	Prepares   []Envelope `cbor:"2,keyasint"`
}

// ViewChange is a replica's move to View. It carries the replica's stable
// checkpoint with its proof (2f+1 CHECKPOINT envelopes; none for seq 0) and,
// for every seq above it that prepared here, the certificate of the highest
// view it prepared in, in increasing seq order.
type ViewChange struct {
	View        uint64         `cbor:"1,keyasint"`
	StableSeq   uint64         `cbor:"2,keyasint"`
	StableProof []Envelope     `cbor:"3,keyasint"`
	Prepared    []PreparedCert `cbor:"4,keyasint"`
	Replica     uint32         `cbor:"5,keyasint"`
}

// NewView starts View: the 2f+1 VIEW-CHANGE envelopes the primary chose and
// the PRE-PREPAREs (signed by the primary, without batches) it re-issues for
// every seq from the highest stable checkpoint among them to the highest
// prepared seq, in seq order. Every backup recomputes PrePrepares from
// ViewChanges and refuses a NEW-VIEW that differs.
type NewView struct {
	View        uint64     `cbor:"1,keyasint"`
	ViewChanges []Envelope `cbor:"2,keyasint"`
	PrePrepares []Envelope `cbor:"3,keyasint"`
	Replica     uint32     `cbor:"4,keyasint"`
}

// Evidence is two conflicting messages signed by one replica: for one
// (View, Seq) of a PRE-PREPARE, PREPARE or COMMIT, for one Seq of a
// CHECKPOINT, or for one View of a VIEW-CHANGE. Either envelope verifies
// against the replica's key, so the pair proves the replica faulty to anyone.
type Evidence struct {
	Replica       uint32
	Kind          Kind
	View, Seq     uint64
	First, Second Envelope
}

// nullTimestamp is the timestamp of every null batch a new primary re-issues:
// fixed, so that every backup recomputes the same digest. The log time of a
// delivered null batch is the previous batch's plus one nanosecond.
const nullTimestamp = 0

// nullDigest is the digest of the empty batch with nullTimestamp.
var nullDigest = BatchDigest(nullTimestamp, nil)

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
