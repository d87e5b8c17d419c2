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
// Exactly one field is set. The single ledger operations (CreateAccount,
// Transfer, PostPending, VoidPending) answer in Result.Code alone; Ops runs a
// list of them, optionally linked into chains, and answers per operation in
// Result.Ops as well.
type Command struct {
	Append        *AppendCommand        `cbor:"1,keyasint,omitempty"`
	CreateAccount *CreateAccountCommand `cbor:"2,keyasint,omitempty"`
	Transfer      *TransferCommand      `cbor:"3,keyasint,omitempty"`
	PostPending   *PostPendingCommand   `cbor:"4,keyasint,omitempty"`
	VoidPending   *VoidPendingCommand   `cbor:"5,keyasint,omitempty"`
	Ops           []LedgerOp            `cbor:"6,keyasint,omitempty"`
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

// LedgerOp is one operation of Command.Ops; exactly one of its operation
// fields is set. Linked chains it to the next operation, as in TigerBeetle:
// a chain is a run of linked operations closed by the first unlinked one, and
// it succeeds or fails as one.
type LedgerOp struct {
	CreateAccount *CreateAccountCommand `cbor:"1,keyasint,omitempty"`
	Transfer      *TransferCommand      `cbor:"2,keyasint,omitempty"`
	PostPending   *PostPendingCommand   `cbor:"3,keyasint,omitempty"`
	VoidPending   *VoidPendingCommand   `cbor:"4,keyasint,omitempty"`
	Linked        bool                  `cbor:"5,keyasint,omitempty"`
}

// CreateAccountCommand opens an account. Code (the currency or ledger the
// account keeps) and Flags are fixed for life. OwnerKey must be the key of
// the client whose request creates the account: a client opens accounts for
// itself only, and only that key may later move money out of the account.
type CreateAccountCommand struct {
	ID       string           `cbor:"1,keyasint"`
	Code     uint64           `cbor:"2,keyasint"`
	OwnerKey crypto.PublicKey `cbor:"3,keyasint"`
	Flags    AccountFlags     `cbor:"4,keyasint,omitempty"`
}

// TransferCommand moves Amount from DebitAccount to CreditAccount, both of
// currency Code. It is posted at once, or with Pending only reserved until a
// PostPending or VoidPending settles it, or until TimeoutMs of log time pass
// (0: no timeout). Only the debit account's owner may make it.
type TransferCommand struct {
	ID            string `cbor:"1,keyasint"`
	DebitAccount  string `cbor:"2,keyasint"`
	CreditAccount string `cbor:"3,keyasint"`
	Amount        uint64 `cbor:"4,keyasint"`
	Code          uint64 `cbor:"5,keyasint"`
	Pending       bool   `cbor:"6,keyasint,omitempty"`
	TimeoutMs     uint64 `cbor:"7,keyasint,omitempty"`
}

// PostPendingCommand posts Amount (0: all) of the pending transfer PendingID
// and releases the rest of its reservation. ID names the operation itself, for
// idempotent retries, and shares the transfer id space.
type PostPendingCommand struct {
	ID        string `cbor:"1,keyasint"`
	PendingID string `cbor:"2,keyasint"`
	Amount    uint64 `cbor:"3,keyasint,omitempty"`
}

// VoidPendingCommand releases the whole reservation of the pending transfer
// PendingID. ID is as in PostPendingCommand.
type VoidPendingCommand struct {
	ID        string `cbor:"1,keyasint"`
	PendingID string `cbor:"2,keyasint"`
}

// Result codes. CodeOK and CodeExists are successes; every other code says
// the command, or the operation, changed nothing.
const (
	CodeOK                   = "ok"
	CodeExists               = "exists"
	CodeWrongExpectedVersion = "wrong_expected_version"
	CodeIDReused             = "id_reused"
	CodeBadCommand           = "bad_command"
	CodeSeqTooOld            = "client_seq_too_old"

	CodeExistsWithDifferentFields    = "exists_with_different_fields"
	CodeAccountNotFound              = "account_not_found"
	CodeNotOwner                     = "not_owner"
	CodeCodeMismatch                 = "code_mismatch"
	CodeSameAccount                  = "same_account"
	CodeAmountZero                   = "amount_zero"
	CodeOverflow                     = "overflow"
	CodeExceedsCredits               = "exceeds_credits"
	CodeExceedsDebits                = "exceeds_debits"
	CodeLinkedEventFailed            = "linked_event_failed"
	CodeLinkedEventChainOpen         = "linked_event_chain_open"
	CodePendingTransferNotFound      = "pending_transfer_not_found"
	CodePendingTransferNotPending    = "pending_transfer_not_pending"
	CodePendingTransferExpired       = "pending_transfer_expired"
	CodePendingTransferAlreadyPosted = "pending_transfer_already_posted"
	CodePendingTransferAlreadyVoided = "pending_transfer_already_voided"
	CodeExceedsPendingAmount         = "exceeds_pending_amount"
	// CodeBatchFull: the batch had already done Config.OpsPerBatchMax ledger
	// operations, or has no room left in its write budget for the command
	// (see RequestsPerBatchMax). Nothing changed; submit the command again
	// (a new client seq).
	CodeBatchFull = "batch_full"
)

// Result is what executing one request produced. Its canonical encoding is a
// leaf of the batch's results Merkle tree; RequestHash binds it to the request
// (crypto.Hash of the encoded SignedRequest).
//
// For ledger commands StreamVersion is -1 and Positions lists, in operation
// order, the event each successful operation produced or, for CodeExists, the
// event the original operation produced. Ops holds one OpResult per operation
// of Command.Ops; then Code is CodeOK when every operation succeeded
// (CodeExists when every one was CodeExists), else the code of the first
// operation that failed on its own account (never CodeLinkedEventFailed).
type Result struct {
	RequestHash   crypto.Digest `cbor:"1,keyasint"`
	Code          string        `cbor:"2,keyasint"`
	Message       string        `cbor:"3,keyasint,omitempty"`
	Positions     []uint64      `cbor:"4,keyasint,omitempty"`
	StreamVersion int64         `cbor:"5,keyasint"`
	EntrySeq      uint64        `cbor:"6,keyasint"`
	Ops           []OpResult    `cbor:"7,keyasint,omitempty"`
}

// OpResult is the outcome of one operation of Command.Ops. Position is that
// of the event the operation produced (for CodeExists, the original's); 0
// when it failed.
type OpResult struct {
	Code     string `cbor:"1,keyasint"`
	Message  string `cbor:"2,keyasint,omitempty"`
	Position uint64 `cbor:"3,keyasint,omitempty"`
}
