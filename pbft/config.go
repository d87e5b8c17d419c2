package pbft

import (
	"fmt"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Limits that Config.Validate enforces on the configuration itself.
const (
	// ValidatorsMax matches the genesis limit on the validator set.
	ValidatorsMax = 256
	// WindowSeqsMax bounds L, and with it the number of live slots.
	WindowSeqsMax = 1 << 16
	// PendingRequestsMaxLimit bounds the pending queue a config may ask for.
	PendingRequestsMaxLimit = 1 << 22
	// ClockSkewMaxLimit bounds ClockSkewMax: a larger skew would let a primary
	// push log time far into the future.
	ClockSkewMaxLimit = time.Hour
	// BatchDelayMaxLimit bounds BatchDelay.
	BatchDelayMaxLimit = time.Second
	// RetransmitIntervalMaxLimit bounds RetransmitInterval.
	RetransmitIntervalMaxLimit = time.Minute
	// ViewChangeTimeoutMaxLimit bounds ViewChangeTimeout.
	ViewChangeTimeoutMaxLimit = 10 * time.Minute
	// ViewChangeDoublingsMax bounds how often the view-change timeout doubles
	// over consecutive failed views: it never exceeds ViewChangeTimeout << 6.
	ViewChangeDoublingsMax = 6
	// CensorshipTimeoutFactor: a backup also changes view when one pending
	// request has waited this many view-change timeouts, even while other
	// requests are delivered, so a primary cannot censor one request by
	// keeping the rest moving.
	CensorshipTimeoutFactor = 4
	// HeartbeatIntervals: an active replica re-sends its latest COMMIT or
	// CHECKPOINT every this many retransmit intervals, so that one left
	// behind while the rest went idle notices.
	HeartbeatIntervals = 4
	// EvidenceMax is how many pieces of evidence Status keeps (the latest).
	EvidenceMax = 64
	// StoredBatchesPerSeqMax bounds the batches a replica keeps for one seq
	// across views (the latest accepted ones): a seq gets a new digest only
	// in a view whose primary proposes one, so few are ever needed; a replica
	// missing a re-issued batch gets the entry by state transfer.
	StoredBatchesPerSeqMax = 4

	// envelopeOverheadBytesMax is the room a PRE-PREPARE envelope needs besides
	// its requests: kind, body, signature and CBOR headers.
	envelopeOverheadBytesMax = 1024
	// requestHeaderBytesMax is the CBOR header of one request in a batch.
	requestHeaderBytesMax = 9
	// signedEnvelopeBytesMax bounds the encoding of one batchless PRE-PREPARE,
	// PREPARE, COMMIT or CHECKPOINT envelope (TestSignedEnvelopeBytesMax).
	signedEnvelopeBytesMax = 160
	// structOverheadBytesMax bounds what a VIEW-CHANGE, NEW-VIEW or prepared
	// certificate adds around the envelopes it carries: map and array headers
	// and integer fields; envelopeFrameBytesMax bounds what an envelope adds
	// around its body (kind, signature, headers).
	structOverheadBytesMax = 64
	envelopeFrameBytesMax  = 96
	// messageMarginBytes leaves room below codec.MaxMessageBytes for the
	// transport's own framing.
	messageMarginBytes = 1024
)

// Config is a replica's fixed configuration. Every bound is checked by Validate.
type Config struct {
	ChainID    crypto.Digest
	Validators []crypto.PublicKey // replica order; n = len
	Self       uint32
	Signer     Signer
	// Verifier checks the signatures nested in VIEW-CHANGE and NEW-VIEW
	// messages (ChainVerifier{ChainID} in production).
	Verifier Verifier
	// BatchRequestsMax bounds the requests in one batch.
	BatchRequestsMax int
	// BatchBytesMax bounds the sum of len(raw request) in one batch, and so
	// the size of any one request.
	BatchBytesMax int
	// BatchDelay is how long a busy primary waits for a batch to fill.
	BatchDelay time.Duration
	// ProposalsInFlightMax paces a busy primary: with this many of its seqs
	// proposed and not yet executed (reported through Executed), it proposes
	// again only a full batch, so that under load batches grow instead of
	// multiplying (each costs every replica signatures, messages and
	// fsyncs), and a primary whose executor falls behind stops adding small
	// batches to its backlog. 0 leaves only the window as the bound. It is a
	// local policy: safety never depends on it.
	ProposalsInFlightMax int
	// WindowSeqs is L: with h the last stable checkpoint, seqs in (h, h+L]
	// are accepted and may be proposed.
	WindowSeqs uint64
	// CheckpointInterval is K: a replica signs a CHECKPOINT after executing
	// every seq that is a multiple of K. 2K ≤ L, so that the window always
	// holds the next checkpoint and room to keep proposing while it becomes
	// stable.
	CheckpointInterval uint64
	// PendingRequestsMax bounds the queued client requests.
	PendingRequestsMax int
	// ClockSkewMax: a backup refuses a PRE-PREPARE timestamped later than its
	// own clock plus this.
	ClockSkewMax time.Duration
	// RetransmitInterval is how long a slot may make no progress before this
	// replica re-broadcasts its own messages for it, and the least time
	// between two Fetch actions or two answers to one lagging replica.
	RetransmitInterval time.Duration
	// ViewChangeTimeout is how long a backup waits for a pending request to
	// be delivered (or, once 2f+1 replicas moved to a view, for its NEW-VIEW)
	// before it moves to the next view. It doubles on consecutive failed
	// views, ViewChangeDoublingsMax times at most.
	ViewChangeTimeout time.Duration
}

// Validate checks every bound of the configuration.
func (c Config) Validate() error {
	n := len(c.Validators)
	switch {
	case n < 1 || n > ValidatorsMax:
		return fmt.Errorf("pbft config: %d validators, want 1..%d", n, ValidatorsMax)
	case int(c.Self) >= n:
		return fmt.Errorf("pbft config: self %d is not a replica index (n = %d)", c.Self, n)
	case c.Signer == nil:
		return fmt.Errorf("pbft config: no signer")
	case c.Verifier == nil:
		return fmt.Errorf("pbft config: no verifier")
	case c.ChainID.IsZero():
		return fmt.Errorf("pbft config: chain_id is zero")
	case c.BatchRequestsMax < 1 || c.BatchRequestsMax > codec.MaxArrayElements:
		return fmt.Errorf("pbft config: batch_requests_max %d outside 1..%d", c.BatchRequestsMax, codec.MaxArrayElements)
	case c.BatchBytesMax < 1:
		return fmt.Errorf("pbft config: batch_bytes_max %d must be positive", c.BatchBytesMax)
	case c.BatchBytesMax+c.BatchRequestsMax*requestHeaderBytesMax+envelopeOverheadBytesMax > codec.MaxMessageBytes:
		return fmt.Errorf("pbft config: batch_bytes_max %d with batch_requests_max %d makes a PRE-PREPARE larger than the %d-byte message limit",
			c.BatchBytesMax, c.BatchRequestsMax, codec.MaxMessageBytes)
	case c.BatchDelay < 0 || c.BatchDelay > BatchDelayMaxLimit:
		return fmt.Errorf("pbft config: batch_delay %v outside 0..%v", c.BatchDelay, BatchDelayMaxLimit)
	case c.ProposalsInFlightMax < 0 || uint64(c.ProposalsInFlightMax) > c.WindowSeqs:
		return fmt.Errorf("pbft config: proposals_in_flight_max %d outside 0..window_seqs (%d)", c.ProposalsInFlightMax, c.WindowSeqs)
	case c.WindowSeqs < 1 || c.WindowSeqs > WindowSeqsMax:
		return fmt.Errorf("pbft config: window_seqs %d outside 1..%d", c.WindowSeqs, WindowSeqsMax)
	case c.CheckpointInterval < 1 || c.CheckpointInterval > c.WindowSeqs/2:
		return fmt.Errorf("pbft config: checkpoint_interval %d outside 1..window_seqs/2 (%d)", c.CheckpointInterval, c.WindowSeqs/2)
	case c.PendingRequestsMax < 1 || c.PendingRequestsMax > PendingRequestsMaxLimit:
		return fmt.Errorf("pbft config: pending_requests_max %d outside 1..%d", c.PendingRequestsMax, PendingRequestsMaxLimit)
	case c.ClockSkewMax <= 0 || c.ClockSkewMax > ClockSkewMaxLimit:
		return fmt.Errorf("pbft config: clock_skew_max %v outside (0, %v]", c.ClockSkewMax, ClockSkewMaxLimit)
	case c.RetransmitInterval <= 0 || c.RetransmitInterval > RetransmitIntervalMaxLimit:
		return fmt.Errorf("pbft config: retransmit_interval %v outside (0, %v]", c.RetransmitInterval, RetransmitIntervalMaxLimit)
	case c.ViewChangeTimeout <= 0 || c.ViewChangeTimeout > ViewChangeTimeoutMaxLimit:
		return fmt.Errorf("pbft config: view_change_timeout %v outside (0, %v]", c.ViewChangeTimeout, ViewChangeTimeoutMaxLimit)
	}
	if b := newViewBytesMax(n, c.WindowSeqs); b > codec.MaxMessageBytes-messageMarginBytes {
		return fmt.Errorf("pbft config: with %d validators and window_seqs %d a NEW-VIEW may take %d bytes, above the %d-byte message limit; lower window_seqs",
			n, c.WindowSeqs, b, codec.MaxMessageBytes-messageMarginBytes)
	}
	seen := make(map[crypto.PublicKey]int, n)
	for i, k := range c.Validators {
		if j, dup := seen[k]; dup {
			return fmt.Errorf("pbft config: validators %d and %d share public key %v", j, i, k)
		}
		seen[k] = i
	}
	return nil
}

// viewChangeBytesMax bounds the encoding of a VIEW-CHANGE envelope a replica
// accepts: a checkpoint proof of 2f+1 envelopes and at most L prepared
// certificates of 2f+1 envelopes each (Open and verifyViewChange refuse more).
func viewChangeBytesMax(n int, windowSeqs uint64) uint64 {
	q := uint64(Quorum(n))
	cert := structOverheadBytesMax + q*signedEnvelopeBytesMax
	return envelopeFrameBytesMax + structOverheadBytesMax + q*signedEnvelopeBytesMax + windowSeqs*cert
}

// newViewBytesMax bounds a NEW-VIEW envelope: 2f+1 VIEW-CHANGEs and at most L
// batchless PRE-PREPAREs.
func newViewBytesMax(n int, windowSeqs uint64) uint64 {
	return envelopeFrameBytesMax + structOverheadBytesMax + uint64(Quorum(n))*viewChangeBytesMax(n, windowSeqs) + windowSeqs*signedEnvelopeBytesMax
}
