package ledger

import (
	"fmt"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
)

// outcome is what one ledger operation came to.
type outcome struct {
	code, msg string
	// event is the ledger number of the event the operation produced or, for
	// CodeExists, of the one the original operation produced; 0 on failure.
	event uint64
}

func failed(code, format string, args ...any) outcome {
	return outcome{code: code, msg: fmt.Sprintf(format, args...)}
}

func succeeded(code string) bool { return code == CodeOK || code == CodeExists }

// runLedger executes ledger operations: the command's Ops, or its one operation
// (single), whose outcome is then the Result's Code and Message alone.
func (m *Machine) runLedger(tx *eventlog.Tx, lb *ledgerBatch, req *Request, ops []LedgerOp, single bool) (Result, error) {
	res := Result{RequestHash: req.Hash, StreamVersion: -1, EntrySeq: tx.Seq()}
	if len(ops) > m.cfg.OpsPerCommandMax {
		res.Code = CodeBadCommand
		res.Message = fmt.Sprintf("command has %d operations, at most %d are allowed", len(ops), m.cfg.OpsPerCommandMax)
		return res, nil
	}
	if len(ops) > lb.opsLeft {
		return batchFull(tx, req, "the batch has room for %d more ledger operations, the command has %d", lb.opsLeft, len(ops)), nil
	}
	// Each operation's event, and the records it may make dirty, beyond
	// the batch's hold.
	flush := opFlushCost.times(len(ops))
	if !lb.fits(opCost.times(len(ops)).plus(flush).plus(itemsWindowCost(len(ops)))) {
		return batchFull(tx, req, "the batch has no room left for %d more ledger operations", len(ops)), nil
	}
	lb.opsLeft -= len(ops)
	results := make([]OpResult, len(ops))
	for start := 0; start < len(ops); {
		end := start
		for end < len(ops)-1 && ops[end].Linked {
			end++
		}
		open := end == len(ops)-1 && ops[end].Linked
		// The records of this chain and the later ones are not dirty yet.
		lb.reserve(opFlushCost.times(len(ops) - start).plus(itemsWindowCost(len(ops))))
		if err := lb.runChain(req.Client, ops[start:end+1], results[start:end+1], open); err != nil {
			return res, err
		}
		start = end + 1
	}
	for _, r := range results {
		if r.Position != 0 {
			res.Positions = append(res.Positions, r.Position)
		}
	}
	if single {
		res.Code, res.Message = results[0].Code, results[0].Message
		return res, nil
	}
	res.Ops = results
	res.Code = CodeExists
	for i, r := range results {
		switch {
		case r.Code == CodeOK:
			if res.Code == CodeExists {
				res.Code = CodeOK
			}
		case r.Code == CodeExists, r.Code == CodeLinkedEventFailed:
		default:
			res.Code = r.Code
			res.Message = fmt.Sprintf("operation %d: %s", i, r.Message)
			return res, nil
		}
	}
	return res, nil
}

// runChain executes one chain of linked operations (or one unlinked
// operation) and commits it only if every operation succeeds. open marks a
// chain the command left open: its last operation fails as such.
func (b *ledgerBatch) runChain(client crypto.PublicKey, ops []LedgerOp, results []OpResult, open bool) error {
	c, err := b.newChain(false)
	if err != nil {
		return err
	}
	outs := make([]outcome, len(ops))
	failedAt := -1
	for i := range ops {
		switch {
		case open && i == len(ops)-1:
			outs[i] = failed(CodeLinkedEventChainOpen, "the command's last operation is linked to nothing")
			if failedAt < 0 {
				failedAt = i
			}
		case failedAt >= 0:
		default:
			o, err := c.exec(client, &ops[i])
			if err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
			outs[i] = o
			if !succeeded(o.code) {
				failedAt = i
			}
		}
	}
	if failedAt >= 0 {
		for i, o := range outs {
			if i == failedAt || o.code == CodeLinkedEventChainOpen {
				results[i] = OpResult{Code: o.code, Message: o.msg}
				continue
			}
			results[i] = OpResult{Code: CodeLinkedEventFailed, Message: fmt.Sprintf("operation %d of its linked chain failed", failedAt)}
		}
		return nil
	}
	positions, err := c.commit()
	if err != nil {
		return err
	}
	for i, o := range outs {
		results[i] = OpResult{Code: o.code, Message: o.msg}
		if o.event >= c.first {
			results[i].Position = positions[o.event-c.first]
			continue
		}
		ref, found, err := b.tx.EventByID(ledgerEventID(o.event))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("ledger event %d is on record but not in the log", o.event)
		}
		results[i].Position = ref.Position
	}
	return nil
}

// exec validates one operation against the chain's state and, if it holds,
// stages its event and applies it.
func (c *chain) exec(client crypto.PublicKey, op *LedgerOp) (outcome, error) {
	n := 0
	for _, set := range []bool{op.CreateAccount != nil, op.Transfer != nil, op.PostPending != nil, op.VoidPending != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return failed(CodeBadCommand, "operation names %d operations, want 1", n), nil
	case op.CreateAccount != nil:
		return c.createAccount(client, op.CreateAccount)
	case op.Transfer != nil:
		return c.createTransfer(client, op.Transfer)
	case op.PostPending != nil:
		return c.settle(client, op.PostPending.ID, op.PostPending.PendingID, op.PostPending.Amount, EventPendingPosted)
	default:
		return c.settle(client, op.VoidPending.ID, op.VoidPending.PendingID, 0, EventPendingVoided)
	}
}

// checkID returns why id is not a valid account or transfer id, or "".
func checkID(what, id string, bytesMax int) string {
	if !ValidName(id) || len(id) > bytesMax {
		return fmt.Sprintf("%s must be 1-%d bytes of [A-Za-z0-9._:@-]", what, bytesMax)
	}
	return ""
}

func (c *chain) createAccount(client crypto.PublicKey, op *CreateAccountCommand) (outcome, error) {
	if msg := checkID("account id", op.ID, AccountIDBytesMax); msg != "" {
		return failed(CodeBadCommand, "%s", msg), nil
	}
	if op.Flags&^accountFlagsKnown != 0 {
		return failed(CodeBadCommand, "unknown account flags %#x", uint32(op.Flags&^accountFlagsKnown)), nil
	}
	if op.Flags == accountFlagsKnown {
		return failed(CodeBadCommand, "flags %s exclude each other", accountFlagNames[0].name+" and "+accountFlagNames[1].name), nil
	}
	if op.Code == 0 {
		return failed(CodeBadCommand, "account code must not be 0"), nil
	}
	if op.OwnerKey != client {
		return failed(CodeNotOwner, "owner_key %v is not the key of the client creating account %s", op.OwnerKey, op.ID), nil
	}
	a, found, err := c.account(op.ID)
	if err != nil {
		return outcome{}, err
	}
	if found {
		if a.Code == op.Code && a.Owner == op.OwnerKey && a.Flags == op.Flags {
			return outcome{code: CodeExists, event: a.Event}, nil
		}
		return failed(CodeExistsWithDifferentFields, "account %s exists with code %d, owner %v, flags %v",
			op.ID, a.Code, a.Owner, a.Flags.Names()), nil
	}
	ev := accountCreated{ID: op.ID, Code: op.Code, OwnerKey: op.OwnerKey.String(), Flags: op.Flags.Names()}
	num := c.next
	if err := c.applyAccountCreated(&ev, num); err != nil {
		return outcome{}, err
	}
	return outcome{code: CodeOK, event: num}, c.emit(AccountStreamPrefix+op.ID, EventAccountCreated, &ev, nil)
}

func (c *chain) createTransfer(client crypto.PublicKey, op *TransferCommand) (outcome, error) {
	for _, f := range [...]struct{ what, id string }{
		{"transfer id", op.ID}, {"debit account id", op.DebitAccount}, {"credit account id", op.CreditAccount},
	} {
		bytesMax := AccountIDBytesMax
		if f.what == "transfer id" {
			bytesMax = TransferIDBytesMax
		}
		if msg := checkID(f.what, f.id, bytesMax); msg != "" {
			return failed(CodeBadCommand, "%s", msg), nil
		}
	}
	switch {
	case op.Code == 0:
		return failed(CodeBadCommand, "transfer code must not be 0"), nil
	case op.TimeoutMs != 0 && !op.Pending:
		return failed(CodeBadCommand, "timeout_ms is for pending transfers only"), nil
	case op.TimeoutMs > TimeoutMsMax:
		return failed(CodeBadCommand, "timeout_ms %d exceeds %d", op.TimeoutMs, uint64(TimeoutMsMax)), nil
	case op.DebitAccount == op.CreditAccount:
		return failed(CodeSameAccount, "transfer %s debits and credits the same account %s", op.ID, op.DebitAccount), nil
	case op.Amount == 0:
		return failed(CodeAmountZero, "transfer %s has amount 0", op.ID), nil
	}
	t, found, err := c.transfer(op.ID)
	if err != nil {
		return outcome{}, err
	}
	if found {
		if t.Kind == kindTransfer && t.DebitAccount == op.DebitAccount && t.CreditAccount == op.CreditAccount &&
			t.Amount == op.Amount && t.Code == op.Code && t.Pending == op.Pending && t.TimeoutMs == op.TimeoutMs {
			return outcome{code: CodeExists, event: t.Event}, nil
		}
		return failed(CodeExistsWithDifferentFields, "%s exists with other fields", describe(op.ID, &t)), nil
	}
	dr, found, err := c.account(op.DebitAccount)
	if err != nil {
		return outcome{}, err
	}
	if !found {
		return failed(CodeAccountNotFound, "debit account %s does not exist", op.DebitAccount), nil
	}
	cr, found, err := c.account(op.CreditAccount)
	if err != nil {
		return outcome{}, err
	}
	if !found {
		return failed(CodeAccountNotFound, "credit account %s does not exist", op.CreditAccount), nil
	}
	if dr.Owner != client {
		return failed(CodeNotOwner, "only the owner of debit account %s may move money out of it", op.DebitAccount), nil
	}
	if dr.Code != op.Code || cr.Code != op.Code {
		return failed(CodeCodeMismatch, "transfer code %d, debit account %s has code %d, credit account %s has code %d",
			op.Code, op.DebitAccount, dr.Code, op.CreditAccount, cr.Code), nil
	}
	drSum, ok1 := addSide(dr.DebitsPending, dr.DebitsPosted, op.Amount)
	crSum, ok2 := addSide(cr.CreditsPending, cr.CreditsPosted, op.Amount)
	if !ok1 || !ok2 {
		return failed(CodeOverflow, "transfer %s of %d would overflow the balances of its accounts", op.ID, op.Amount), nil
	}
	// Pending amounts count against the limits as if posted, so that posting
	// a reservation can never break them.
	if dr.Flags&FlagDebitsMustNotExceedCredits != 0 && drSum+dr.DebitsPosted > dr.CreditsPosted {
		return failed(CodeExceedsCredits, "debit account %s: debits %d pending and %d posted plus %d would exceed its %d credits posted",
			op.DebitAccount, dr.DebitsPending, dr.DebitsPosted, op.Amount, dr.CreditsPosted), nil
	}
	if cr.Flags&FlagCreditsMustNotExceedDebits != 0 && crSum+cr.CreditsPosted > cr.DebitsPosted {
		return failed(CodeExceedsDebits, "credit account %s: credits %d pending and %d posted plus %d would exceed its %d debits posted",
			op.CreditAccount, cr.CreditsPending, cr.CreditsPosted, op.Amount, cr.DebitsPosted), nil
	}
	ev := transferCreated{
		ID: op.ID, DebitAccount: op.DebitAccount, CreditAccount: op.CreditAccount,
		Amount: op.Amount, Code: op.Code, Pending: op.Pending, TimeoutMs: op.TimeoutMs,
	}
	num := c.next
	if err := c.applyTransferCreated(&ev, c.b.tx.Timestamp(), num); err != nil {
		return outcome{}, err
	}
	return outcome{code: CodeOK, event: num}, c.emit(TransferStreamPrefix+op.ID, EventTransferCreated, &ev, nil)
}

// settle posts (typ EventPendingPosted) amount of, or voids, the pending
// transfer pendingID as operation id.
func (c *chain) settle(client crypto.PublicKey, id, pendingID string, amount uint64, typ string) (outcome, error) {
	if msg := checkID("id", id, TransferIDBytesMax); msg != "" {
		return failed(CodeBadCommand, "%s", msg), nil
	}
	if msg := checkID("pending_id", pendingID, TransferIDBytesMax); msg != "" {
		return failed(CodeBadCommand, "%s", msg), nil
	}
	kind := kindPost
	if typ == EventPendingVoided {
		kind = kindVoid
	}
	prior, found, err := c.transfer(id)
	if err != nil {
		return outcome{}, err
	}
	if found {
		if prior.Kind == kind && prior.PendingID == pendingID {
			same := true
			if kind == kindPost {
				p, _, err := c.transfer(pendingID)
				if err != nil {
					return outcome{}, err
				}
				same = amount == prior.Amount || amount == 0 && prior.Amount == p.Amount
			}
			if same {
				return outcome{code: CodeExists, event: prior.Event}, nil
			}
		}
		return failed(CodeExistsWithDifferentFields, "%s exists with other fields", describe(id, &prior)), nil
	}
	p, found, err := c.transfer(pendingID)
	if err != nil {
		return outcome{}, err
	}
	if !found {
		return failed(CodePendingTransferNotFound, "no transfer %s", pendingID), nil
	}
	if p.Kind != kindTransfer || !p.Pending {
		return failed(CodePendingTransferNotPending, "%s is not a pending transfer", describe(pendingID, &p)), nil
	}
	dr, found, err := c.account(p.DebitAccount)
	if err != nil {
		return outcome{}, err
	}
	if !found {
		return outcome{}, fmt.Errorf("pending transfer %s debits missing account %s", pendingID, p.DebitAccount)
	}
	if dr.Owner != client {
		return failed(CodeNotOwner, "only the owner of debit account %s may settle pending transfer %s", p.DebitAccount, pendingID), nil
	}
	switch {
	case p.Status == statusPosted:
		return failed(CodePendingTransferAlreadyPosted, "pending transfer %s is already posted", pendingID), nil
	case p.Status == statusVoided:
		return failed(CodePendingTransferAlreadyVoided, "pending transfer %s is already voided", pendingID), nil
	case p.Status == statusExpired,
		p.Deadline != 0 && p.Deadline < c.b.tx.Timestamp():
		// The second case is a transfer past its deadline that the sweep has
		// not reached yet (Config.ExpiriesPerBatchMax): it is expired all the same.
		return failed(CodePendingTransferExpired, "pending transfer %s expired at log time %d", pendingID, p.Deadline), nil
	}
	if amount > p.Amount {
		return failed(CodeExceedsPendingAmount, "posting %d of pending transfer %s, which reserves %d", amount, pendingID, p.Amount), nil
	}
	if kind == kindVoid || amount == 0 {
		amount = p.Amount
	}
	ev := pendingSettled{PendingID: pendingID, Amount: amount, DebitAccount: p.DebitAccount, CreditAccount: p.CreditAccount}
	num := c.next
	if err := c.applySettled(typ, &ev, id, num); err != nil {
		return outcome{}, err
	}
	return outcome{code: CodeOK, event: num}, c.emit(TransferStreamPrefix+pendingID, typ, &ev, &settleMetadata{ID: id})
}

// describe names what a transfer-space id holds, for messages.
func describe(id string, t *transfer) string {
	switch t.Kind {
	case kindPost:
		return fmt.Sprintf("%s (a post of pending transfer %s)", id, t.PendingID)
	case kindVoid:
		return fmt.Sprintf("%s (a void of pending transfer %s)", id, t.PendingID)
	}
	return fmt.Sprintf("transfer %s", id)
}
