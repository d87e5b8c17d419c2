package cqrs

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/ordoledger/ordo/eventlog"
)

// The ledger's event schema (streams, types), as the accounting executor
// emits it. Data is JSON.
const (
	accountStreamPrefix  = "account-"
	transferStreamPrefix = "transfer-"

	typeAccountCreated  = "AccountCreated"
	typeTransferCreated = "TransferCreated"
	typePendingPosted   = "PendingPosted"
	typePendingVoided   = "PendingVoided"
	typePendingExpired  = "PendingExpired"
)

type accountCreated struct {
	ID   string `json:"id"`
	Code uint64 `json:"code"`
}

type transferCreated struct {
	ID            string `json:"id"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
	Amount        uint64 `json:"amount"`
	Pending       bool   `json:"pending"`
}

// pendingResolved is PendingPosted, PendingVoided and PendingExpired.
type pendingResolved struct {
	PendingID     string `json:"pending_id"`
	Amount        uint64 `json:"amount"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
}

// reservation is the private state kept per pending transfer: the events
// that resolve it do not repeat the amount reserved.
type reservation struct {
	Amount        uint64 `json:"amount"`
	DebitAccount  string `json:"debit_account"`
	CreditAccount string `json:"credit_account"`
}

// accountRow is a row of the balances projection, keyed by account id.
// Its balance (credits posted minus debits posted) is derived when the row
// is written; it may be negative or beyond int64, so it is rendered as a
// JSON integer by hand.
type accountRow struct {
	Account        string `json:"account"`
	Code           uint64 `json:"code"`
	DebitsPosted   uint64 `json:"debits_posted"`
	CreditsPosted  uint64 `json:"credits_posted"`
	DebitsPending  uint64 `json:"debits_pending"`
	CreditsPending uint64 `json:"credits_pending"`
	LastTransfer   string `json:"last_transfer"`
}

func (a *accountRow) appendJSON(b []byte) []byte {
	b = append(b, `{"account":`...)
	b = appendJSONString(b, a.Account)
	b = append(b, `,"code":`...)
	b = strconv.AppendUint(b, a.Code, 10)
	b = append(b, `,"debits_posted":`...)
	b = strconv.AppendUint(b, a.DebitsPosted, 10)
	b = append(b, `,"credits_posted":`...)
	b = strconv.AppendUint(b, a.CreditsPosted, 10)
	b = append(b, `,"debits_pending":`...)
	b = strconv.AppendUint(b, a.DebitsPending, 10)
	b = append(b, `,"credits_pending":`...)
	b = strconv.AppendUint(b, a.CreditsPending, 10)
	b = append(b, `,"balance":`...)
	if a.CreditsPosted >= a.DebitsPosted {
		b = strconv.AppendUint(b, a.CreditsPosted-a.DebitsPosted, 10)
	} else {
		b = append(b, '-')
		b = strconv.AppendUint(b, a.DebitsPosted-a.CreditsPosted, 10)
	}
	b = append(b, `,"last_transfer":`...)
	b = appendJSONString(b, a.LastTransfer)
	return append(b, '}')
}

var errOverflow = errors.New("amount arithmetic overflows 64 bits")

func addAmount(what string, a, b uint64) (uint64, error) {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return 0, fmt.Errorf("%s: %d + %d: %w", what, a, b, errOverflow)
	}
	return s, nil
}

func subAmount(what string, a, b uint64) (uint64, error) {
	d, borrow := bits.Sub64(a, b, 0)
	if borrow != 0 {
		return 0, fmt.Errorf("%s: %d - %d below zero: %w", what, a, b, errOverflow)
	}
	return d, nil
}

// balancesProjection keeps per-account posted and pending debits and
// credits. Any event that contradicts what it has seen (an unknown account,
// an overflow, a pending transfer resolved twice) stops it: such an event
// means the ledger and this read model disagree, and a wrong balance must
// not be served as if it were right.
type balancesProjection struct{}

func (balancesProjection) Name() string { return BalancesProjection }
func (balancesProjection) Version() int { return balancesVersion }

func (balancesProjection) Wants(ev *eventlog.Event) bool {
	switch ev.Type {
	case typeAccountCreated:
		return strings.HasPrefix(ev.Stream, accountStreamPrefix)
	case typeTransferCreated, typePendingPosted, typePendingVoided, typePendingExpired:
		return strings.HasPrefix(ev.Stream, transferStreamPrefix)
	}
	return false
}

func (balancesProjection) Apply(t Tx, ev *eventlog.Event) error {
	if ev.ContentType != contentJSON {
		return fmt.Errorf("%s at %d: content type %q, want %q", ev.Type, ev.Position, ev.ContentType, contentJSON)
	}
	var err error
	switch ev.Type {
	case typeAccountCreated:
		err = applyAccountCreated(t, ev)
	case typeTransferCreated:
		err = applyTransferCreated(t, ev)
	default:
		err = applyPendingResolved(t, ev)
	}
	if err != nil {
		return fmt.Errorf("%s at %d: %w", ev.Type, ev.Position, err)
	}
	return nil
}

func decodeData(ev *eventlog.Event, v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return nil
}

func applyAccountCreated(t Tx, ev *eventlog.Event) error {
	var d accountCreated
	if err := decodeData(ev, &d); err != nil {
		return err
	}
	if d.ID == "" || ev.Stream != accountStreamPrefix+d.ID {
		return fmt.Errorf("account %q on stream %q", d.ID, ev.Stream)
	}
	row, found, err := loadRow[accountRow](t, d.ID)
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("account %q created twice", d.ID)
	}
	*row = accountRow{Account: d.ID, Code: d.Code}
	return keepRow(t, row.Account, row)
}

func loadAccount(t Tx, id string) (*accountRow, error) {
	if id == "" {
		return nil, errors.New("empty account id")
	}
	row, found, err := loadRow[accountRow](t, id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("account %q does not exist", id)
	}
	return row, nil
}

// loadPair loads a transfer's two accounts. When they are one account, both
// results are the same row, so every change lands on it.
func loadPair(t Tx, debit, credit string) (*accountRow, *accountRow, error) {
	d, err := loadAccount(t, debit)
	if err != nil {
		return nil, nil, fmt.Errorf("debit account: %w", err)
	}
	if credit == debit {
		return d, d, nil
	}
	c, err := loadAccount(t, credit)
	if err != nil {
		return nil, nil, fmt.Errorf("credit account: %w", err)
	}
	return d, c, nil
}

func putPair(t Tx, d, c *accountRow) error {
	if err := keepRow(t, d.Account, d); err != nil {
		return err
	}
	if c == d {
		return nil
	}
	return keepRow(t, c.Account, c)
}

func applyTransferCreated(t Tx, ev *eventlog.Event) error {
	var d transferCreated
	if err := decodeData(ev, &d); err != nil {
		return err
	}
	if d.ID == "" || ev.Stream != transferStreamPrefix+d.ID {
		return fmt.Errorf("transfer %q on stream %q", d.ID, ev.Stream)
	}
	debit, credit, err := loadPair(t, d.DebitAccount, d.CreditAccount)
	if err != nil {
		return fmt.Errorf("transfer %q: %w", d.ID, err)
	}
	if d.Pending {
		if _, found, err := t.GetState(d.ID); err != nil {
			return err
		} else if found {
			return fmt.Errorf("pending transfer %q created twice", d.ID)
		}
		if debit.DebitsPending, err = addAmount("debits_pending of "+debit.Account, debit.DebitsPending, d.Amount); err != nil {
			return err
		}
		if credit.CreditsPending, err = addAmount("credits_pending of "+credit.Account, credit.CreditsPending, d.Amount); err != nil {
			return err
		}
		res, err := json.Marshal(reservation{Amount: d.Amount, DebitAccount: d.DebitAccount, CreditAccount: d.CreditAccount})
		if err != nil {
			return fmt.Errorf("encode reservation: %w", err)
		}
		if err := t.SetState(d.ID, res); err != nil {
			return err
		}
	} else {
		if debit.DebitsPosted, err = addAmount("debits_posted of "+debit.Account, debit.DebitsPosted, d.Amount); err != nil {
			return err
		}
		if credit.CreditsPosted, err = addAmount("credits_posted of "+credit.Account, credit.CreditsPosted, d.Amount); err != nil {
			return err
		}
	}
	debit.LastTransfer, credit.LastTransfer = d.ID, d.ID
	return putPair(t, debit, credit)
}

// applyPendingResolved releases a reservation in full and, for
// PendingPosted, posts the amount the event names (at most the reserved one).
func applyPendingResolved(t Tx, ev *eventlog.Event) error {
	var d pendingResolved
	if err := decodeData(ev, &d); err != nil {
		return err
	}
	if d.PendingID == "" || ev.Stream != transferStreamPrefix+d.PendingID {
		return fmt.Errorf("pending transfer %q on stream %q", d.PendingID, ev.Stream)
	}
	b, found, err := t.GetState(d.PendingID)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("pending transfer %q is unknown or already resolved", d.PendingID)
	}
	var res reservation
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("stored reservation %q: %w", d.PendingID, err)
	}
	if res.DebitAccount != d.DebitAccount || res.CreditAccount != d.CreditAccount {
		return fmt.Errorf("pending transfer %q moves %s→%s, the event says %s→%s",
			d.PendingID, res.DebitAccount, res.CreditAccount, d.DebitAccount, d.CreditAccount)
	}
	debit, credit, err := loadPair(t, d.DebitAccount, d.CreditAccount)
	if err != nil {
		return fmt.Errorf("pending transfer %q: %w", d.PendingID, err)
	}
	if debit.DebitsPending, err = subAmount("debits_pending of "+debit.Account, debit.DebitsPending, res.Amount); err != nil {
		return err
	}
	if credit.CreditsPending, err = subAmount("credits_pending of "+credit.Account, credit.CreditsPending, res.Amount); err != nil {
		return err
	}
	if ev.Type == typePendingPosted {
		if d.Amount > res.Amount {
			return fmt.Errorf("pending transfer %q posts %d of %d reserved", d.PendingID, d.Amount, res.Amount)
		}
		if debit.DebitsPosted, err = addAmount("debits_posted of "+debit.Account, debit.DebitsPosted, d.Amount); err != nil {
			return err
		}
		if credit.CreditsPosted, err = addAmount("credits_posted of "+credit.Account, credit.CreditsPosted, d.Amount); err != nil {
			return err
		}
	}
	debit.LastTransfer, credit.LastTransfer = d.PendingID, d.PendingID
	if err := t.DeleteState(d.PendingID); err != nil {
		return err
	}
	return putPair(t, debit, credit)
}
