package ledger

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// The ledger's event schema. Every effect of a ledger operation is one event
// of content type application/json on stream AccountStreamPrefix+id or
// TransferStreamPrefix+id; the ledger state is a cache of these events (see
// Rebuild). Client appends to these streams are refused.
const (
	AccountStreamPrefix  = "account-"
	TransferStreamPrefix = "transfer-"

	// EventAccountCreated: {"id","code","owner_key","flags":[…]}.
	EventAccountCreated = "AccountCreated"
	// EventTransferCreated: {"id","debit_account","credit_account","amount",
	// "code","pending","timeout_ms"}; posted at once unless pending.
	EventTransferCreated = "TransferCreated"
	// EventPendingPosted, EventPendingVoided and EventPendingExpired go to the
	// pending transfer's stream: {"pending_id","amount","debit_account",
	// "credit_account"}. The whole reservation is released; a post posts
	// amount, the others carry the amount released. Posts and voids carry
	// {"id":…} (the operation's own id) as metadata.
	EventPendingPosted  = "PendingPosted"
	EventPendingVoided  = "PendingVoided"
	EventPendingExpired = "PendingExpired"
)

// Id bounds: the stream name of an account or transfer must fit NameBytesMax.
const (
	AccountIDBytesMax  = NameBytesMax - len(AccountStreamPrefix)
	TransferIDBytesMax = NameBytesMax - len(TransferStreamPrefix)
)

// AccountFlags are an account's balance rules, fixed at creation. They are
// exclusive: an account may have at most one.
type AccountFlags uint32

const (
	// FlagDebitsMustNotExceedCredits: debits pending plus posted never exceed
	// credits posted (an asset the holder cannot overdraw).
	FlagDebitsMustNotExceedCredits AccountFlags = 1 << 0
	// FlagCreditsMustNotExceedDebits: credits pending plus posted never exceed
	// debits posted.
	FlagCreditsMustNotExceedDebits AccountFlags = 1 << 1

	accountFlagsKnown = FlagDebitsMustNotExceedCredits | FlagCreditsMustNotExceedDebits
)

// accountFlagNames is the flags' order in events and output.
var accountFlagNames = [...]struct {
	flag AccountFlags
	name string
}{
	{FlagDebitsMustNotExceedCredits, "debits_must_not_exceed_credits"},
	{FlagCreditsMustNotExceedDebits, "credits_must_not_exceed_debits"},
}

// Names lists the known flags set in f, in a fixed order; never nil.
func (f AccountFlags) Names() []string {
	names := []string{}
	for _, n := range accountFlagNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return names
}

// ParseAccountFlags is the inverse of Names. Unknown and repeated names are errors.
func ParseAccountFlags(names []string) (AccountFlags, error) {
	var f AccountFlags
next:
	for _, s := range names {
		for _, n := range accountFlagNames {
			if s == n.name {
				if f&n.flag != 0 {
					return 0, fmt.Errorf("account flag %q given twice", s)
				}
				f |= n.flag
				continue next
			}
		}
		return 0, fmt.Errorf("unknown account flag %q (known: %s)", s, strings.Join(AccountFlags(accountFlagsKnown).Names(), ", "))
	}
	return f, nil
}

// Event data, encoded with encoding/json: fields in declaration order, so the
// bytes are a function of the values.
type accountCreated struct {
	ID       string   `json:"id"`
	Code     uint64   `json:"code"`
	OwnerKey string   `json:"owner_key"`
	Flags    []string `json:"flags"`
}

type transferCreated struct {
	ID            string `json:"id"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        uint64 `json:"amount"`
	Code          uint64 `json:"code"`
	Pending       bool   `json:"pending"`
	TimeoutMs     uint64 `json:"timeout_ms"`
}

type pendingSettled struct {
	PendingID     string `json:"pending_id"`
	Amount        uint64 `json:"amount"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
}

// settleMetadata names the post or void operation behind a settlement.
type settleMetadata struct {
	ID string `json:"id"`
}

// Ledger event ids are RFC 9562 version-8 UUIDs: the 8 bytes ledgerIDPrefix
// (which carries the version), then the event's ledger number with the
// variant bits set. Numbers count from 1 and never repeat, so ids never
// collide, and client appends may not use this prefix, so a client cannot
// take an id the ledger will need.
var ledgerIDPrefix = [8]byte{'o', 'r', 'd', 'o', 'L', 'G', 0x80, 0x00}

const (
	uuidVariant     uint64 = 0b10 << 62
	uuidVariantMask        = 0b11 << 62
	// ledgerEventNumMax is the largest number the id has room for.
	ledgerEventNumMax = 1<<62 - 1
)

func ledgerEventID(num uint64) [16]byte {
	var id [16]byte
	copy(id[:], ledgerIDPrefix[:])
	binary.BigEndian.PutUint64(id[8:], num|uuidVariant)
	return id
}

// ledgerEventNum is the number in a ledger event id.
func ledgerEventNum(id [16]byte) (uint64, bool) {
	if !isLedgerEventID(id) {
		return 0, false
	}
	v := binary.BigEndian.Uint64(id[8:])
	if v&uuidVariantMask != uuidVariant {
		return 0, false
	}
	return v &^ uuidVariantMask, true
}

func isLedgerEventID(id [16]byte) bool {
	return [8]byte(id[:8]) == ledgerIDPrefix
}

func isLedgerStream(stream string) bool {
	return strings.HasPrefix(stream, AccountStreamPrefix) || strings.HasPrefix(stream, TransferStreamPrefix)
}

// emit stages one ledger event of the chain, numbered c.next.
func (c *chain) emit(stream, typ string, data, metadata any) error {
	if c.next > ledgerEventNumMax {
		return fmt.Errorf("ledger event number %d does not fit an event id", c.next)
	}
	ev := EventData{ID: ledgerEventID(c.next), Type: typ, ContentType: ContentJSON}
	var err error
	if ev.Data, err = json.Marshal(data); err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	if metadata != nil {
		if ev.Metadata, err = json.Marshal(metadata); err != nil {
			return fmt.Errorf("encode %s metadata: %w", typ, err)
		}
	}
	c.stage(stream, eventlog.NewEvent{
		ID: ev.ID, Type: ev.Type, ContentType: ev.ContentType,
		Data: ev.Data, Metadata: ev.Metadata, ContentHash: ContentHash(&ev),
	})
	return nil
}

// The apply functions change the state as one event says. The executor calls
// them on events it has just validated; Rebuild on events read back from a
// log. An error means the events contradict the state (a corrupt log, or a
// broken invariant of the executor).

func (c *chain) applyAccountCreated(ev *accountCreated, num uint64) error {
	owner, err := crypto.ParsePublicKey(ev.OwnerKey)
	if err != nil {
		return fmt.Errorf("account %s: %w", ev.ID, err)
	}
	flags, err := ParseAccountFlags(ev.Flags)
	if err != nil {
		return fmt.Errorf("account %s: %w", ev.ID, err)
	}
	if _, found, err := c.account(ev.ID); err != nil {
		return err
	} else if found {
		return fmt.Errorf("account %s created twice", ev.ID)
	}
	c.putAccount(ev.ID, account{Code: ev.Code, Owner: owner, Flags: flags, Event: num})
	return nil
}

func (c *chain) applyTransferCreated(ev *transferCreated, ts int64, num uint64) error {
	if _, found, err := c.transfer(ev.ID); err != nil {
		return err
	} else if found {
		return fmt.Errorf("transfer %s created twice", ev.ID)
	}
	dr, cr, err := c.accountPair(ev.DebitAccount, ev.CreditAccount)
	if err != nil {
		return fmt.Errorf("transfer %s: %w", ev.ID, err)
	}
	t := transfer{
		Kind: kindTransfer, DebitAccount: ev.DebitAccount, CreditAccount: ev.CreditAccount,
		Amount: ev.Amount, Code: ev.Code, Pending: ev.Pending, TimeoutMs: ev.TimeoutMs, Event: num,
	}
	var ok bool
	if ev.Pending {
		t.Status = statusPending
		dr.DebitsPending, ok = addSide(dr.DebitsPending, dr.DebitsPosted, ev.Amount)
		if ok {
			cr.CreditsPending, ok = addSide(cr.CreditsPending, cr.CreditsPosted, ev.Amount)
		}
		if ev.TimeoutMs > 0 {
			t.Deadline = deadlineAfter(ts, ev.TimeoutMs)
			c.expiry = append(c.expiry, expiryChange{key: expiryKey(t.Deadline, ev.ID)})
		}
	} else {
		dr.DebitsPosted, ok = addSide(dr.DebitsPosted, dr.DebitsPending, ev.Amount)
		if ok {
			cr.CreditsPosted, ok = addSide(cr.CreditsPosted, cr.CreditsPending, ev.Amount)
		}
	}
	if !ok {
		return fmt.Errorf("transfer %s of %d overflows a balance", ev.ID, ev.Amount)
	}
	c.putAccount(ev.DebitAccount, dr)
	c.putAccount(ev.CreditAccount, cr)
	c.putTransfer(ev.ID, t)
	return nil
}

// applySettled applies PendingPosted, PendingVoided or PendingExpired; opID
// is the post's or void's own id ("" for an expiry).
func (c *chain) applySettled(typ string, ev *pendingSettled, opID string, num uint64) error {
	p, found, err := c.transfer(ev.PendingID)
	if err != nil {
		return err
	}
	if !found || p.Kind != kindTransfer || p.Status != statusPending {
		return fmt.Errorf("%s of %s, which is not a pending transfer", typ, ev.PendingID)
	}
	if p.DebitAccount != ev.DebitAccount || p.CreditAccount != ev.CreditAccount {
		return fmt.Errorf("%s of %s names accounts %s and %s, the transfer %s and %s", typ, ev.PendingID,
			ev.DebitAccount, ev.CreditAccount, p.DebitAccount, p.CreditAccount)
	}
	var op transfer
	switch typ {
	case EventPendingPosted:
		if ev.Amount == 0 || ev.Amount > p.Amount {
			return fmt.Errorf("%s of %s posts %d of %d reserved", typ, ev.PendingID, ev.Amount, p.Amount)
		}
		p.Status = statusPosted
		op = transfer{Kind: kindPost, PendingID: ev.PendingID, Amount: ev.Amount, Event: num}
	case EventPendingVoided, EventPendingExpired:
		if ev.Amount != p.Amount {
			return fmt.Errorf("%s of %s releases %d of %d reserved", typ, ev.PendingID, ev.Amount, p.Amount)
		}
		p.Status = statusVoided
		op = transfer{Kind: kindVoid, PendingID: ev.PendingID, Event: num}
		if typ == EventPendingExpired {
			p.Status = statusExpired
		}
	default:
		return fmt.Errorf("settlement event type %q", typ)
	}
	if (typ == EventPendingExpired) != (opID == "") {
		return fmt.Errorf("%s of %s with operation id %q", typ, ev.PendingID, opID)
	}
	if opID != "" {
		if _, found, err := c.transfer(opID); err != nil {
			return err
		} else if found {
			return fmt.Errorf("%s of %s: id %s is taken", typ, ev.PendingID, opID)
		}
	}
	dr, cr, err := c.accountPair(p.DebitAccount, p.CreditAccount)
	if err != nil {
		return fmt.Errorf("%s of %s: %w", typ, ev.PendingID, err)
	}
	if dr.DebitsPending < p.Amount || cr.CreditsPending < p.Amount {
		return fmt.Errorf("%s of %s: less than %d pending on its accounts", typ, ev.PendingID, p.Amount)
	}
	dr.DebitsPending -= p.Amount
	cr.CreditsPending -= p.Amount
	// Within bounds: pending+posted fitted before, and the amount posted is
	// at most the amount released.
	dr.DebitsPosted += op.Amount
	cr.CreditsPosted += op.Amount
	if p.Deadline != 0 {
		c.expiry = append(c.expiry, expiryChange{key: expiryKey(p.Deadline, ev.PendingID), delete: true})
	}
	c.putAccount(p.DebitAccount, dr)
	c.putAccount(p.CreditAccount, cr)
	c.putTransfer(ev.PendingID, p)
	if opID != "" {
		c.putTransfer(opID, op)
	}
	return nil
}

// accountPair loads the two distinct accounts of a transfer.
func (c *chain) accountPair(debit, credit string) (dr, cr account, err error) {
	if debit == credit {
		return dr, cr, fmt.Errorf("debit and credit account are both %s", debit)
	}
	dr, found, err := c.account(debit)
	if err != nil {
		return dr, cr, err
	}
	if !found {
		return dr, cr, fmt.Errorf("debit account %s does not exist", debit)
	}
	cr, found, err = c.account(credit)
	if err != nil {
		return dr, cr, err
	}
	if !found {
		return dr, cr, fmt.Errorf("credit account %s does not exist", credit)
	}
	return dr, cr, nil
}

// addSide adds amount to one balance of a side whose other balance is other,
// keeping the side's sum within uint64.
func addSide(balance, other, amount uint64) (uint64, bool) {
	sum := balance + amount
	if sum < balance || sum+other < sum {
		return 0, false
	}
	return sum, true
}
