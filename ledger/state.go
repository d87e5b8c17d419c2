package ledger

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// Ledger state keys, all under keyLedger so that the ledger's part of the
// replicated state is one key range (see doc.go for the layout).
const (
	keyLedger      byte = 'L'
	ledgerAccount  byte = 'a'
	ledgerTransfer byte = 't'
	ledgerExpiry   byte = 'x'
	ledgerEvents   byte = 'n'
)

func accountKey(id string) []byte {
	return append([]byte{keyLedger, ledgerAccount}, id...)
}

func transferKey(id string) []byte {
	return append([]byte{keyLedger, ledgerTransfer}, id...)
}

var (
	expiryPrefix    = []byte{keyLedger, ledgerExpiry}
	ledgerEventsKey = []byte{keyLedger, ledgerEvents}
)

// expiryKey orders pending transfers by deadline, then id. The deadline's
// sign bit is flipped so that the big-endian bytes sort as the signed values.
func expiryKey(deadline int64, id string) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), expiryPrefix...), uint64(deadline)^(1<<63))
	return append(k, id...)
}

func parseExpiryKey(k []byte) (deadline int64, id string, err error) {
	if len(k) <= len(expiryPrefix)+8 {
		return 0, "", fmt.Errorf("expiry key of %d bytes", len(k))
	}
	deadline = int64(binary.BigEndian.Uint64(k[len(expiryPrefix):]) ^ (1 << 63))
	return deadline, string(k[len(expiryPrefix)+8:]), nil
}

// account is the stored state of one account: its creation and its balances.
// Every balance side keeps pending+posted within uint64 (transfers that would
// break that fail with CodeOverflow), so posting a reservation cannot overflow.
type account struct {
	Code           uint64           `cbor:"1,keyasint"`
	Owner          crypto.PublicKey `cbor:"2,keyasint"`
	Flags          AccountFlags     `cbor:"3,keyasint,omitempty"`
	DebitsPending  uint64           `cbor:"4,keyasint,omitempty"`
	DebitsPosted   uint64           `cbor:"5,keyasint,omitempty"`
	CreditsPending uint64           `cbor:"6,keyasint,omitempty"`
	CreditsPosted  uint64           `cbor:"7,keyasint,omitempty"`
	// Event is the ledger event number of its AccountCreated.
	Event uint64 `cbor:"8,keyasint"`
}

// Kinds of record in the transfer id space.
const (
	kindTransfer uint8 = iota + 1
	kindPost
	kindVoid
)

// States of a pending transfer.
const (
	statusPending uint8 = iota + 1
	statusPosted
	statusVoided
	statusExpired
)

// transfer is the stored state of one id of the transfer id space: a
// transfer, or the post or void operation that settled a pending one.
type transfer struct {
	Kind uint8 `cbor:"1,keyasint"`
	// Transfers.
	DebitAccount  string `cbor:"2,keyasint,omitempty"`
	CreditAccount string `cbor:"3,keyasint,omitempty"`
	// Amount is a transfer's amount, or what a post posted.
	Amount    uint64 `cbor:"4,keyasint,omitempty"`
	Code      uint64 `cbor:"5,keyasint,omitempty"`
	Pending   bool   `cbor:"6,keyasint,omitempty"`
	TimeoutMs uint64 `cbor:"7,keyasint,omitempty"`
	// Status of a pending transfer.
	Status uint8 `cbor:"8,keyasint,omitempty"`
	// Deadline of a pending transfer with a timeout: it expires in the first
	// batch whose log time is later.
	Deadline int64 `cbor:"9,keyasint,omitempty"`
	// PendingID of a post or void.
	PendingID string `cbor:"10,keyasint,omitempty"`
	// Event is the ledger event number of a transfer's TransferCreated, or of
	// the PendingPosted or PendingVoided of a post or void.
	Event uint64 `cbor:"11,keyasint"`
}

// deadlineAfter is the log time at which a pending transfer made at ts with
// timeoutMs expires, saturating rather than wrapping.
func deadlineAfter(ts int64, timeoutMs uint64) int64 {
	const nsPerMs = 1_000_000
	if timeoutMs > uint64(math.MaxInt64/nsPerMs) {
		return math.MaxInt64
	}
	d := int64(timeoutMs) * nsPerMs
	if ts > math.MaxInt64-d {
		return math.MaxInt64
	}
	return ts + d
}

// cached is a record read or written during the batch; dirty ones are
// written back by flush.
type cached[T any] struct {
	rec   T
	dirty bool
}

// ledgerBatch is the ledger state as one batch sees it. Records are decoded
// once per batch and written back once, at flush, in the order they first
// changed: a batch of transfers between few accounts then costs one write per
// account, not one per transfer. The maps are only looked up, never iterated.
type ledgerBatch struct {
	tx        *eventlog.Tx
	accounts  map[string]*cached[account]
	transfers map[string]*cached[transfer]
	// dirtyAccounts and dirtyTransfers list the changed ids in first-change order.
	dirtyAccounts  []string
	dirtyTransfers []string
	// events is how many ledger events exist; it numbers the next one.
	events       uint64
	eventsLoaded bool
	eventsDirty  bool
	// opsLeft is how many more ledger operations this batch may run.
	opsLeft int
	// requestsLeft is how many requests of the batch come after the one
	// executing; flushCost bounds what flush will write (see hold).
	requestsLeft int
	flushCost    cost
	// resultBytes is what the batch's results so far take.
	resultBytes int64
}

func newLedgerBatch(tx *eventlog.Tx, opsMax int) *ledgerBatch {
	return &ledgerBatch{
		tx:        tx,
		accounts:  map[string]*cached[account]{},
		transfers: map[string]*cached[transfer]{},
		opsLeft:   opsMax,
	}
}

func (b *ledgerBatch) account(id string) (account, bool, error) {
	if c, ok := b.accounts[id]; ok {
		return c.rec, true, nil
	}
	var a account
	found, err := b.load(accountKey(id), &a)
	if err != nil || !found {
		return a, false, err
	}
	b.accounts[id] = &cached[account]{rec: a}
	return a, true, nil
}

func (b *ledgerBatch) transfer(id string) (transfer, bool, error) {
	if c, ok := b.transfers[id]; ok {
		return c.rec, true, nil
	}
	var t transfer
	found, err := b.load(transferKey(id), &t)
	if err != nil || !found {
		return t, false, err
	}
	b.transfers[id] = &cached[transfer]{rec: t}
	return t, true, nil
}

func (b *ledgerBatch) load(key []byte, rec any) (bool, error) {
	v, found, err := b.tx.Get(key)
	if err != nil || !found {
		return false, err
	}
	if err := codec.Unmarshal(v, rec); err != nil {
		return false, fmt.Errorf("ledger record %q: corrupt: %w", key, err)
	}
	return true, nil
}

func (b *ledgerBatch) setAccount(id string, a account) {
	c, ok := b.accounts[id]
	if !ok {
		c = &cached[account]{}
		b.accounts[id] = c
	}
	c.rec = a
	if !c.dirty {
		c.dirty = true
		b.dirtyAccounts = append(b.dirtyAccounts, id)
		b.flushCost = b.flushCost.plus(accountFlushCost)
	}
}

func (b *ledgerBatch) setTransfer(id string, t transfer) {
	c, ok := b.transfers[id]
	if !ok {
		c = &cached[transfer]{}
		b.transfers[id] = c
	}
	c.rec = t
	if !c.dirty {
		c.dirty = true
		b.dirtyTransfers = append(b.dirtyTransfers, id)
		b.flushCost = b.flushCost.plus(transferFlushCost)
	}
}

// eventCount loads the number of ledger events on first use.
func (b *ledgerBatch) eventCount() (uint64, error) {
	if b.eventsLoaded {
		return b.events, nil
	}
	v, found, err := b.tx.Get(ledgerEventsKey)
	if err != nil {
		return 0, err
	}
	if found {
		if len(v) != 8 {
			return 0, fmt.Errorf("ledger event count of %d bytes: corrupt", len(v))
		}
		b.events = binary.BigEndian.Uint64(v)
	}
	b.eventsLoaded = true
	return b.events, nil
}

// flush writes back every record the batch changed.
func (b *ledgerBatch) flush() error {
	for _, id := range b.dirtyAccounts {
		if err := b.store(accountKey(id), &b.accounts[id].rec); err != nil {
			return err
		}
	}
	for _, id := range b.dirtyTransfers {
		if err := b.store(transferKey(id), &b.transfers[id].rec); err != nil {
			return err
		}
	}
	if b.eventsDirty {
		if err := b.tx.Set(ledgerEventsKey, binary.BigEndian.AppendUint64(nil, b.events)); err != nil {
			return err
		}
	}
	return nil
}

func (b *ledgerBatch) store(key []byte, rec any) error {
	v, err := codec.Marshal(rec)
	if err != nil {
		return fmt.Errorf("ledger record %q: %w", key, err)
	}
	return b.tx.Set(key, v)
}

// chain stages the changes of one linked chain (or of one operation, or of
// one batch's expiries) over the batch's state, so that a failing chain can
// be dropped whole: the transaction has no savepoints. commit applies them.
type chain struct {
	b             *ledgerBatch
	accounts      map[string]account
	transfers     map[string]transfer
	accountOrder  []string
	transferOrder []string
	// expiry lists index changes in order: keys to set, or to delete.
	expiry []expiryChange
	// first is the number of the chain's first event; next of the one after
	// its last.
	first, next uint64
	events      []eventlog.NewEvent
	streams     []string
	// replay marks a chain that rebuilds state from events already in a log.
	replay bool
}

type expiryChange struct {
	key    []byte
	delete bool
}

func (b *ledgerBatch) newChain(replay bool) (*chain, error) {
	n, err := b.eventCount()
	if err != nil {
		return nil, err
	}
	// The maps are made on first write: reading a nil map is fine, and most
	// chains are one operation.
	return &chain{b: b, first: n + 1, next: n + 1, replay: replay}, nil
}

func (c *chain) account(id string) (account, bool, error) {
	if a, ok := c.accounts[id]; ok {
		return a, true, nil
	}
	return c.b.account(id)
}

func (c *chain) transfer(id string) (transfer, bool, error) {
	if t, ok := c.transfers[id]; ok {
		return t, true, nil
	}
	return c.b.transfer(id)
}

func (c *chain) putAccount(id string, a account) {
	if c.accounts == nil {
		c.accounts = map[string]account{}
	}
	if _, ok := c.accounts[id]; !ok {
		c.accountOrder = append(c.accountOrder, id)
	}
	c.accounts[id] = a
}

func (c *chain) putTransfer(id string, t transfer) {
	if c.transfers == nil {
		c.transfers = map[string]transfer{}
	}
	if _, ok := c.transfers[id]; !ok {
		c.transferOrder = append(c.transferOrder, id)
	}
	c.transfers[id] = t
}

// stage records an event the chain produced; its number is c.next.
func (c *chain) stage(stream string, ev eventlog.NewEvent) {
	c.streams = append(c.streams, stream)
	c.events = append(c.events, ev)
	c.next++
}

// commit applies the chain to the batch and appends its events, returning
// their positions in order (none when replaying).
func (c *chain) commit() ([]uint64, error) {
	var positions []uint64
	if !c.replay {
		positions = make([]uint64, len(c.events))
		for i := range c.events {
			pos, _, err := c.b.tx.AppendEvents(c.streams[i], c.events[i:i+1])
			if err != nil {
				return nil, fmt.Errorf("append ledger event to %s: %w", c.streams[i], err)
			}
			positions[i] = pos[0]
		}
	}
	for _, e := range c.expiry {
		var err error
		if e.delete {
			err = c.b.tx.Delete(e.key)
		} else {
			err = c.b.tx.Set(e.key, nil)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, id := range c.accountOrder {
		c.b.setAccount(id, c.accounts[id])
	}
	for _, id := range c.transferOrder {
		c.b.setTransfer(id, c.transfers[id])
	}
	if c.next != c.first {
		c.b.events = c.next - 1
		c.b.eventsDirty = true
	}
	return positions, nil
}
