package ledger

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// Bounds that are not configuration: they are part of the command format.
const (
	// NameBytesMax bounds stream names and account and transfer ids.
	NameBytesMax = 128
	// EventTypeBytesMax bounds an event's type.
	EventTypeBytesMax = 128
)

// Config bounds the state machine. Every replica must run with the same
// Config (it comes from the genesis): it changes results.
type Config struct {
	// ClientWindow is how many executed requests' results are kept per client
	// for at-most-once execution.
	ClientWindow int `json:"client_window"`
	// EventsPerAppendMax bounds the events of one append.
	EventsPerAppendMax int `json:"events_per_append_max"`
	// EventBytesMax bounds one event's data plus metadata.
	EventBytesMax int `json:"event_bytes_max"`
	// OpsPerCommandMax bounds the ledger operations of one command.
	OpsPerCommandMax int `json:"ops_per_command_max"`
	// OpsPerBatchMax bounds the ledger operations of one batch; commands
	// beyond it get CodeBatchFull. With it at least the batch's request count,
	// only commands of several operations can meet it, and a batch never does
	// more ledger work than one of single operations: each operation writes
	// about ten keys, and a badger transaction holds a bounded number.
	OpsPerBatchMax int `json:"ops_per_batch_max"`
	// ExpiriesPerBatchMax bounds the pending transfers one batch expires,
	// for the same reason.
	ExpiriesPerBatchMax int `json:"expiries_per_batch_max"`
}

// CommandBytesMax bounds the encoded command of one request, which the write
// budget is sized for; a genesis's request_bytes_max may not exceed it.
const CommandBytesMax = 1 << 20

// Upper limits for Config values.
const (
	clientWindowLimit = 1 << 20
	// eventsPerAppendLimit and opsPerCommandLimit keep the largest command
	// (of at most CommandBytesMax) within an otherwise empty batch's write
	// budget, so that it is never refused as batch_full for good
	// (TestLargestCommandsFitABatch).
	eventsPerAppendLimit  = 4096
	eventBytesLimit       = 1 << 20
	opsPerCommandLimit    = 1024
	opsPerBatchLimit      = 1 << 16
	expiriesPerBatchLimit = 1 << 16
)

// DefaultConfig is the configuration a new genesis gets.
func DefaultConfig() Config {
	return Config{
		ClientWindow: 4096, EventsPerAppendMax: 1000, EventBytesMax: 64 << 10,
		OpsPerCommandMax: 256, OpsPerBatchMax: 2048, ExpiriesPerBatchMax: 1024,
	}
}

// Validate checks every bound once.
func (c Config) Validate() error {
	switch {
	case c.ClientWindow < 1 || c.ClientWindow > clientWindowLimit:
		return fmt.Errorf("ledger: client_window %d outside 1..%d", c.ClientWindow, clientWindowLimit)
	case c.EventsPerAppendMax < 1 || c.EventsPerAppendMax > eventsPerAppendLimit:
		return fmt.Errorf("ledger: events_per_append_max %d outside 1..%d", c.EventsPerAppendMax, eventsPerAppendLimit)
	case c.EventBytesMax < 1 || c.EventBytesMax > eventBytesLimit:
		return fmt.Errorf("ledger: event_bytes_max %d outside 1..%d", c.EventBytesMax, eventBytesLimit)
	case c.OpsPerBatchMax < 1 || c.OpsPerBatchMax > opsPerBatchLimit:
		return fmt.Errorf("ledger: ops_per_batch_max %d outside 1..%d", c.OpsPerBatchMax, opsPerBatchLimit)
	case c.OpsPerCommandMax < 1 || c.OpsPerCommandMax > min(opsPerCommandLimit, c.OpsPerBatchMax):
		return fmt.Errorf("ledger: ops_per_command_max %d outside 1..%d (and ops_per_batch_max)", c.OpsPerCommandMax, opsPerCommandLimit)
	case c.ExpiriesPerBatchMax < 1 || c.ExpiriesPerBatchMax > expiriesPerBatchLimit:
		return fmt.Errorf("ledger: expiries_per_batch_max %d outside 1..%d", c.ExpiriesPerBatchMax, expiriesPerBatchLimit)
	}
	return nil
}

// Request is one committed client request as the machine sees it.
type Request struct {
	Client    crypto.PublicKey
	ClientSeq uint64
	// Hash is crypto.Hash of the encoded SignedRequest: what Result.RequestHash
	// binds the result to.
	Hash    crypto.Digest
	Command []byte
}

// Machine executes committed batches. It holds no state of its own: all of it
// lives in the log's replicated key space, so a Machine is safe to share.
type Machine struct {
	cfg Config
}

// WithDefaults returns c with every zero field set to its DefaultConfig value.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.ClientWindow == 0 {
		c.ClientWindow = d.ClientWindow
	}
	if c.EventsPerAppendMax == 0 {
		c.EventsPerAppendMax = d.EventsPerAppendMax
	}
	if c.EventBytesMax == 0 {
		c.EventBytesMax = d.EventBytesMax
	}
	if c.OpsPerCommandMax == 0 {
		c.OpsPerCommandMax = d.OpsPerCommandMax
	}
	if c.OpsPerBatchMax == 0 {
		c.OpsPerBatchMax = d.OpsPerBatchMax
	}
	if c.ExpiriesPerBatchMax == 0 {
		c.ExpiriesPerBatchMax = d.ExpiriesPerBatchMax
	}
	return c
}

// NewMachine builds a Machine from cfg with zero fields defaulted (see
// WithDefaults), after checking it.
func NewMachine(cfg Config) (*Machine, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Machine{cfg: cfg}, nil
}

// Execute runs one committed batch inside tx and returns one encoded Result per
// request, in order. Before the requests it expires the pending transfers
// whose deadline is before the batch's log time (their events belong to no
// request). An error means storage failed; the batch must not commit.
func (m *Machine) Execute(tx *eventlog.Tx, reqs []Request) ([][]byte, error) {
	if tx == nil {
		return nil, errors.New("execute: nil transaction")
	}
	if len(reqs) > RequestsPerBatchMax {
		return nil, fmt.Errorf("execute: %d requests, at most %d fit a batch's write budget", len(reqs), RequestsPerBatchMax)
	}
	lb := newLedgerBatch(tx, m.cfg.OpsPerBatchMax)
	lb.requestsLeft = len(reqs)
	if err := lb.expire(m.cfg.ExpiriesPerBatchMax); err != nil {
		return nil, fmt.Errorf("execute: expiring pending transfers: %w", err)
	}
	results := make([][]byte, len(reqs))
	w := newWindow(tx, m.cfg.ClientWindow)
	for i := range reqs {
		lb.requestsLeft = len(reqs) - i - 1
		r, err := m.executeOnce(tx, w, lb, &reqs[i])
		if err != nil {
			return nil, fmt.Errorf("execute request %d (client %v seq %d): %w", i, reqs[i].Client, reqs[i].ClientSeq, err)
		}
		results[i] = r
	}
	if err := lb.flush(); err != nil {
		return nil, fmt.Errorf("execute: writing the ledger state: %w", err)
	}
	return results, nil
}

// executeOnce gives a request at-most-once semantics: a (client, seq) already
// executed gets its stored result back, byte for byte, and changes nothing.
func (m *Machine) executeOnce(tx *eventlog.Tx, w *window, lb *ledgerBatch, req *Request) ([]byte, error) {
	cs, err := w.load(req.Client)
	if err != nil {
		return nil, err
	}
	if cs.mayBeRetained(req.ClientSeq) {
		if stored, found, err := tx.Get(resultKey(req.Client, req.ClientSeq)); err != nil {
			return nil, err
		} else if found {
			if !lb.fits(cost{results: int64(len(stored))}) {
				stored = noRoomForResult(tx, req, len(stored))
			}
			lb.resultBytes += int64(len(stored))
			return stored, nil
		}
	}
	if w.tooOld(&cs, req.ClientSeq) {
		res := Result{
			RequestHash:   req.Hash,
			Code:          CodeSeqTooOld,
			Message:       fmt.Sprintf("client seq %d is below %d, the lowest of the %d this client's results are kept for", req.ClientSeq, cs.low[0], cs.count),
			StreamVersion: -1,
			EntrySeq:      tx.Seq(),
		}
		return codec.MustMarshal(&res), nil
	}
	writes, _ := tx.Room()
	res, err := m.execute(tx, lb, req)
	if err != nil {
		return nil, err
	}
	enc := codec.MustMarshal(&res)
	// A request that wrote nothing reserved no room for its result, which
	// can still be large: an idempotent retry lists every position.
	if after, _ := tx.Room(); after == writes && !lb.fits(windowCost(len(enc))) {
		enc = noRoomForResult(tx, req, len(enc))
	}
	lb.resultBytes += int64(len(enc))
	if err := w.store(req.Client, &cs, req.ClientSeq, enc); err != nil {
		return nil, err
	}
	return enc, nil
}

// execute runs the command itself.
func (m *Machine) execute(tx *eventlog.Tx, lb *ledgerBatch, req *Request) (Result, error) {
	var cmd Command
	if err := codec.Unmarshal(req.Command, &cmd); err != nil {
		// The decoder's own message is left out: results are replicated, and
		// their bytes must not depend on a library's wording.
		return badCommand(tx, req, "command is not a valid encoded Command"), nil
	}
	n := 0
	for _, set := range []bool{cmd.Append != nil, cmd.CreateAccount != nil, cmd.Transfer != nil,
		cmd.PostPending != nil, cmd.VoidPending != nil, len(cmd.Ops) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return badCommand(tx, req, "command names no operation"), nil
	case n > 1:
		return badCommand(tx, req, fmt.Sprintf("command names %d operations, want 1", n)), nil
	case cmd.Append != nil:
		return m.append(tx, lb, req, cmd.Append)
	case len(cmd.Ops) > 0:
		return m.runLedger(tx, lb, req, cmd.Ops, false)
	default:
		op := LedgerOp{CreateAccount: cmd.CreateAccount, Transfer: cmd.Transfer, PostPending: cmd.PostPending, VoidPending: cmd.VoidPending}
		return m.runLedger(tx, lb, req, []LedgerOp{op}, true)
	}
}

// batchFull is the result of a request the batch has no room left for;
// format says what did not fit.
func batchFull(tx *eventlog.Tx, req *Request, format string, args ...any) Result {
	return Result{
		RequestHash: req.Hash, Code: CodeBatchFull, StreamVersion: -1, EntrySeq: tx.Seq(),
		Message: fmt.Sprintf(format, args...) + "; submit it again",
	}
}

// noRoomForResult is the encoded batch_full result of a request whose own
// result, of resultBytes, finds no room left.
func noRoomForResult(tx *eventlog.Tx, req *Request, resultBytes int) []byte {
	res := batchFull(tx, req, "the batch has no room left for this request's result of %d bytes", resultBytes)
	return codec.MustMarshal(&res)
}

func badCommand(tx *eventlog.Tx, req *Request, msg string) Result {
	return Result{RequestHash: req.Hash, Code: CodeBadCommand, Message: msg, StreamVersion: -1, EntrySeq: tx.Seq()}
}

// ValidName reports whether s is a valid identifier (stream name, account or
// transfer id): 1–128 bytes of [A-Za-z0-9._:@-].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > NameBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// FindResult finds which request of entry e produced the event at position pos:
// its index in e.Requests and e.Results (the leaf for a Merkle proof) and its
// decoded Result. Results of idempotent retries and repeated client seqs carry
// positions of earlier entries and are never matched.
func FindResult(e *eventlog.Entry, pos uint64) (int, *Result, error) {
	if pos < e.FirstPosition || pos-e.FirstPosition >= e.EventCount {
		return 0, nil, fmt.Errorf("entry %d holds positions %d..%d, not %d", e.Seq, e.FirstPosition, e.FirstPosition+e.EventCount-1, pos)
	}
	for i, b := range e.Results {
		var r Result
		if err := codec.Unmarshal(b, &r); err != nil {
			return 0, nil, fmt.Errorf("entry %d result %d: %w", e.Seq, i, err)
		}
		if r.EntrySeq == e.Seq && slices.Contains(r.Positions, pos) {
			return i, &r, nil
		}
	}
	return 0, nil, fmt.Errorf("entry %d: no result holds position %d", e.Seq, pos)
}
