package ledger

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/eventlog"
)

// The model: a plain, in-memory statement of the ledger's rules, written
// apart from the executor, against which TestLedgerModel checks every result
// code, position, event and balance.

type mAccount struct {
	code             uint64
	owner            byte
	flags            AccountFlags
	dp, dpo, cp, cpo uint64 // debits pending, posted; credits pending, posted
	pos              uint64
}

type mTransfer struct {
	kind          uint8
	debit, credit string
	amount, code  uint64
	pending       bool
	timeoutMs     uint64
	status        uint8
	deadline      int64
	pendingID     string
	pos           uint64
}

type mEvent struct{ stream, typ, data, meta string }

type model struct {
	accounts  map[string]mAccount
	transfers map[string]mTransfer
	next      uint64 // position of the next event
	events    []mEvent
	ts        int64
	opsLeft   int
	cfg       Config
	// appended maps the ids of appended events to their positions.
	appended map[[16]byte]uint64
}

func (m *model) clone() *model {
	c := *m
	c.accounts = maps.Clone(m.accounts)
	c.transfers = maps.Clone(m.transfers)
	c.events = slices.Clone(m.events)
	return &c
}

func (m *model) emit(stream, typ, data, meta string) uint64 {
	m.events = append(m.events, mEvent{stream, typ, data, meta})
	m.next++
	return m.next - 1
}

func mValid(id string, bytesMax int) bool {
	if len(id) == 0 || len(id) > bytesMax {
		return false
	}
	for _, c := range id {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-", c) {
			return false
		}
	}
	return true
}

type mResult struct {
	code string
	pos  uint64
}

func (m *model) createAccount(c byte, op *CreateAccountCommand) mResult {
	switch {
	case !mValid(op.ID, NameBytesMax-len("account-")), op.Flags > 2, op.Code == 0:
		return mResult{code: CodeBadCommand}
	case op.OwnerKey != client(c):
		return mResult{code: CodeNotOwner}
	}
	if a, ok := m.accounts[op.ID]; ok {
		if a.code == op.Code && client(a.owner) == op.OwnerKey && a.flags == op.Flags {
			return mResult{CodeExists, a.pos}
		}
		return mResult{code: CodeExistsWithDifferentFields}
	}
	flags := ""
	switch op.Flags {
	case FlagDebitsMustNotExceedCredits:
		flags = `"debits_must_not_exceed_credits"`
	case FlagCreditsMustNotExceedDebits:
		flags = `"credits_must_not_exceed_debits"`
	}
	pos := m.emit("account-"+op.ID, "AccountCreated",
		fmt.Sprintf(`{"id":%q,"code":%d,"owner_key":"%v","flags":[%s]}`, op.ID, op.Code, op.OwnerKey, flags), "")
	m.accounts[op.ID] = mAccount{code: op.Code, owner: c, flags: op.Flags, pos: pos}
	return mResult{CodeOK, pos}
}

// fits reports whether a+b+c fits in uint64.
func fits(a, b, c uint64) bool {
	s := new(big.Int).SetUint64(a)
	s.Add(s, new(big.Int).SetUint64(b))
	s.Add(s, new(big.Int).SetUint64(c))
	return s.IsUint64()
}

func (m *model) transfer(c byte, op *TransferCommand) mResult {
	switch {
	case !mValid(op.ID, NameBytesMax-len("transfer-")), !mValid(op.DebitAccount, NameBytesMax-len("account-")),
		!mValid(op.CreditAccount, NameBytesMax-len("account-")), op.Code == 0,
		op.TimeoutMs != 0 && !op.Pending, op.TimeoutMs > TimeoutMsMax:
		return mResult{code: CodeBadCommand}
	case op.DebitAccount == op.CreditAccount:
		return mResult{code: CodeSameAccount}
	case op.Amount == 0:
		return mResult{code: CodeAmountZero}
	}
	if t, ok := m.transfers[op.ID]; ok {
		if t.kind == kindTransfer && t.debit == op.DebitAccount && t.credit == op.CreditAccount && t.amount == op.Amount &&
			t.code == op.Code && t.pending == op.Pending && t.timeoutMs == op.TimeoutMs {
			return mResult{CodeExists, t.pos}
		}
		return mResult{code: CodeExistsWithDifferentFields}
	}
	dr, ok1 := m.accounts[op.DebitAccount]
	cr, ok2 := m.accounts[op.CreditAccount]
	switch {
	case !ok1 || !ok2:
		return mResult{code: CodeAccountNotFound}
	case dr.owner != c:
		return mResult{code: CodeNotOwner}
	case dr.code != op.Code || cr.code != op.Code:
		return mResult{code: CodeCodeMismatch}
	case !fits(dr.dp, dr.dpo, op.Amount) || !fits(cr.cp, cr.cpo, op.Amount):
		return mResult{code: CodeOverflow}
	case dr.flags == FlagDebitsMustNotExceedCredits && dr.dp+dr.dpo+op.Amount > dr.cpo:
		return mResult{code: CodeExceedsCredits}
	case cr.flags == FlagCreditsMustNotExceedDebits && cr.cp+cr.cpo+op.Amount > cr.dpo:
		return mResult{code: CodeExceedsDebits}
	}
	t := mTransfer{kind: kindTransfer, debit: op.DebitAccount, credit: op.CreditAccount, amount: op.Amount,
		code: op.Code, pending: op.Pending, timeoutMs: op.TimeoutMs}
	if op.Pending {
		dr.dp += op.Amount
		cr.cp += op.Amount
		t.status = statusPending
		if op.TimeoutMs > 0 {
			t.deadline = m.ts + int64(op.TimeoutMs)*1e6
		}
	} else {
		dr.dpo += op.Amount
		cr.cpo += op.Amount
	}
	t.pos = m.emit("transfer-"+op.ID, "TransferCreated", fmt.Sprintf(
		`{"id":%q,"debit_account":%q,"credit_account":%q,"amount":%d,"code":%d,"pending":%t,"timeout_ms":%d}`,
		op.ID, op.DebitAccount, op.CreditAccount, op.Amount, op.Code, op.Pending, op.TimeoutMs), "")
	m.accounts[op.DebitAccount], m.accounts[op.CreditAccount], m.transfers[op.ID] = dr, cr, t
	return mResult{CodeOK, t.pos}
}

func (m *model) settle(c byte, kind uint8, id, pid string, amount uint64) mResult {
	if !mValid(id, NameBytesMax-len("transfer-")) || !mValid(pid, NameBytesMax-len("transfer-")) {
		return mResult{code: CodeBadCommand}
	}
	if prior, ok := m.transfers[id]; ok {
		if prior.kind == kind && prior.pendingID == pid &&
			(kind == kindVoid || amount == prior.amount || amount == 0 && prior.amount == m.transfers[pid].amount) {
			return mResult{CodeExists, prior.pos}
		}
		return mResult{code: CodeExistsWithDifferentFields}
	}
	p, ok := m.transfers[pid]
	switch {
	case !ok:
		return mResult{code: CodePendingTransferNotFound}
	case p.kind != kindTransfer || !p.pending:
		return mResult{code: CodePendingTransferNotPending}
	case m.accounts[p.debit].owner != c:
		return mResult{code: CodeNotOwner}
	case p.status == statusPosted:
		return mResult{code: CodePendingTransferAlreadyPosted}
	case p.status == statusVoided:
		return mResult{code: CodePendingTransferAlreadyVoided}
	case p.status == statusExpired, p.deadline != 0 && p.deadline < m.ts:
		return mResult{code: CodePendingTransferExpired}
	case kind == kindPost && amount > p.amount:
		return mResult{code: CodeExceedsPendingAmount}
	}
	if kind == kindVoid || amount == 0 {
		amount = p.amount
	}
	typ, status, posted := "PendingVoided", statusVoided, uint64(0)
	if kind == kindPost {
		typ, status, posted = "PendingPosted", statusPosted, amount
	}
	pos := m.release(pid, typ, status, amount, posted, fmt.Sprintf(`{"id":%q}`, id))
	rec := mTransfer{kind: kind, pendingID: pid, pos: pos}
	if kind == kindPost {
		rec.amount = amount
	}
	m.transfers[id] = rec
	return mResult{CodeOK, pos}
}

// release settles pending transfer pid: the reservation goes, posted is posted.
func (m *model) release(pid, typ string, status uint8, amount, posted uint64, meta string) uint64 {
	p := m.transfers[pid]
	dr, cr := m.accounts[p.debit], m.accounts[p.credit]
	dr.dp -= p.amount
	cr.cp -= p.amount
	dr.dpo += posted
	cr.cpo += posted
	p.status = status
	m.accounts[p.debit], m.accounts[p.credit], m.transfers[pid] = dr, cr, p
	return m.emit("transfer-"+pid, typ, fmt.Sprintf(`{"pending_id":%q,"amount":%d,"debit_account":%q,"credit_account":%q}`,
		pid, amount, p.debit, p.credit), meta)
}

// expire is the start of a batch.
func (m *model) expire() {
	var due []string
	for id, t := range m.transfers {
		if t.kind == kindTransfer && t.status == statusPending && t.deadline != 0 && t.deadline < m.ts {
			due = append(due, id)
		}
	}
	slices.SortFunc(due, func(a, b string) int {
		if da, db := m.transfers[a].deadline, m.transfers[b].deadline; da != db {
			return int(da - db)
		}
		return strings.Compare(a, b)
	})
	for _, id := range due[:min(len(due), m.cfg.ExpiriesPerBatchMax)] {
		m.release(id, "PendingExpired", statusExpired, m.transfers[id].amount, 0, "")
	}
}

func (m *model) op(c byte, op *LedgerOp) mResult {
	n := 0
	for _, set := range []bool{op.CreateAccount != nil, op.Transfer != nil, op.PostPending != nil, op.VoidPending != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return mResult{code: CodeBadCommand}
	case op.CreateAccount != nil:
		return m.createAccount(c, op.CreateAccount)
	case op.Transfer != nil:
		return m.transfer(c, op.Transfer)
	case op.PostPending != nil:
		return m.settle(c, kindPost, op.PostPending.ID, op.PostPending.PendingID, op.PostPending.Amount)
	default:
		return m.settle(c, kindVoid, op.VoidPending.ID, op.VoidPending.PendingID, 0)
	}
}

// ops runs a list TigerBeetle-style and returns each operation's result.
func (m *model) ops(c byte, ops []LedgerOp) []mResult {
	out := make([]mResult, len(ops))
	for start := 0; start < len(ops); {
		end := start
		for end < len(ops)-1 && ops[end].Linked {
			end++
		}
		before := m.clone()
		failedAt := -1
		for i := start; i <= end; i++ {
			if i == len(ops)-1 && ops[i].Linked {
				out[i] = mResult{code: CodeLinkedEventChainOpen}
				if failedAt < 0 {
					failedAt = i
				}
				continue
			}
			if failedAt >= 0 {
				out[i] = mResult{code: CodeLinkedEventFailed}
				continue
			}
			out[i] = m.op(c, &ops[i])
			if out[i].code != CodeOK && out[i].code != CodeExists {
				failedAt = i
			}
		}
		if failedAt >= 0 {
			*m = *before
			for i := start; i <= end; i++ {
				if i != failedAt && out[i].code != CodeLinkedEventChainOpen {
					out[i] = mResult{code: CodeLinkedEventFailed}
				}
				out[i].pos = 0
			}
		}
		start = end + 1
	}
	return out
}

// request runs one decoded command and returns the request's code, its
// positions, and the per-operation results of a list.
func (m *model) request(c byte, cmd *Command) (string, []uint64, []mResult) {
	if cmd.Append != nil {
		if isLedgerStream(cmd.Append.Stream) {
			return CodeBadCommand, nil, nil
		}
		e := cmd.Append.Events[0]
		if pos, ok := m.appended[e.ID]; ok {
			return CodeOK, []uint64{pos}, nil
		}
		m.appended[e.ID] = m.emit(cmd.Append.Stream, e.Type, string(e.Data), "")
		return CodeOK, []uint64{m.appended[e.ID]}, nil
	}
	ops, single := cmd.Ops, len(cmd.Ops) == 0
	if single {
		ops = []LedgerOp{{CreateAccount: cmd.CreateAccount, Transfer: cmd.Transfer, PostPending: cmd.PostPending, VoidPending: cmd.VoidPending}}
		if ops[0] == (LedgerOp{}) {
			return CodeBadCommand, nil, nil
		}
	}
	if len(ops) > m.cfg.OpsPerCommandMax {
		return CodeBadCommand, nil, nil
	}
	if len(ops) > m.opsLeft {
		return CodeBatchFull, nil, nil
	}
	m.opsLeft -= len(ops)
	rs := m.ops(c, ops)
	var positions []uint64
	for _, r := range rs {
		if r.pos != 0 {
			positions = append(positions, r.pos)
		}
	}
	if single {
		return rs[0].code, positions, nil
	}
	code := CodeExists
	for _, r := range rs {
		switch r.code {
		case CodeOK:
			if code == CodeExists {
				code = CodeOK
			}
		case CodeExists, CodeLinkedEventFailed:
		default:
			return r.code, positions, rs
		}
	}
	return code, positions, rs
}

// checkI8 checks conservation and the flags on the model.
func (m *model) checkI8(t *rapid.T) {
	var dp, dpo, cp, cpo big.Int
	for id, a := range m.accounts {
		dp.Add(&dp, new(big.Int).SetUint64(a.dp))
		dpo.Add(&dpo, new(big.Int).SetUint64(a.dpo))
		cp.Add(&cp, new(big.Int).SetUint64(a.cp))
		cpo.Add(&cpo, new(big.Int).SetUint64(a.cpo))
		if a.flags == FlagDebitsMustNotExceedCredits && (!fits(a.dp, a.dpo, 0) || a.dp+a.dpo > a.cpo) {
			t.Fatalf("model: account %s breaks debits_must_not_exceed_credits: %+v", id, a)
		}
		if a.flags == FlagCreditsMustNotExceedDebits && (!fits(a.cp, a.cpo, 0) || a.cp+a.cpo > a.dpo) {
			t.Fatalf("model: account %s breaks credits_must_not_exceed_debits: %+v", id, a)
		}
	}
	if dp.Cmp(&cp) != 0 || dpo.Cmp(&cpo) != 0 {
		t.Fatalf("model: debits %v/%v, credits %v/%v (pending/posted)", &dp, &dpo, &cp, &cpo)
	}
}

// The universe the generator draws from: small, so that ids collide, retries
// happen and accounts fill up.
var (
	modelAccounts  = []string{"A0", "A1", "A2", "A3", "A4"}
	modelTransfers = []string{"T0", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "T13"}
	// modelSettles are ids for posts and voids, which may take transfer ids too.
	modelSettles = []string{"S0", "S1", "S2", "S3", "S4", "S5"}
)

// choose draws an index with the given weights. rapid favours small values
// and the ends of a range, which would swamp the weights; scattering the
// drawn value with a multiplicative hash spreads them (and 0, where rapid
// shrinks to, still means the first index).
func choose(t *rapid.T, label string, weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := uint64(rapid.IntRange(0, 1<<20).Draw(t, label))
	v := int((x * 0x9E3779B97F4A7C15 >> 40) % uint64(total))
	for i, w := range weights {
		if v < w {
			return i
		}
		v -= w
	}
	panic("unreachable")
}

func oneOf[T any](t *rapid.T, label string, vs ...T) T {
	w := make([]int, len(vs))
	for i := range w {
		w[i] = 1
	}
	return vs[choose(t, label, w...)]
}

func drawID(t *rapid.T, label string, ids []string) string {
	switch choose(t, label+" kind", 80, 1, 1) {
	case 1:
		return "bad id"
	case 2:
		return strings.Repeat("x", 121)
	}
	return oneOf(t, label, ids...)
}

func drawAmount(t *rapid.T) uint64 {
	switch choose(t, "amount kind", 30, 1, 1, 1) {
	case 1:
		return 0
	case 2:
		return 1 << 63
	case 3:
		return math.MaxUint64 - 3
	}
	return uint64(choose(t, "amount", slices.Repeat([]int{1}, 60)...) + 1)
}

// drawOp draws an operation of client c, steered by the model towards ids
// that make operations succeed about as often as they fail.
func drawOp(t *rapid.T, c byte, m *model) LedgerOp {
	var owned, pending []string
	for _, id := range modelAccounts {
		if a, ok := m.accounts[id]; ok && a.owner == c {
			owned = append(owned, id)
		}
	}
	for _, id := range modelTransfers {
		if p, ok := m.transfers[id]; ok && p.status == statusPending {
			pending = append(pending, id)
		}
	}
	pick := func(label string, hints, ids []string) string {
		if len(hints) > 0 && choose(t, label+" hinted", 1, 1) == 0 {
			return oneOf(t, label, hints...)
		}
		return drawID(t, label, ids)
	}
	code := func() uint64 { return []uint64{1, 2, 0}[choose(t, "code", 40, 4, 1)] }
	// Few accounts: mostly open some; nothing pending: settle rarely.
	opens, settles := 6, 1
	if len(m.accounts) < 3 {
		opens = 30
	}
	if len(pending) > 0 {
		settles = 6
	}
	switch choose(t, "op", 20, opens, settles, settles, 1) {
	case 0:
		tr := &TransferCommand{
			ID: drawID(t, "transfer", modelTransfers), DebitAccount: pick("debit", owned, modelAccounts),
			CreditAccount: drawID(t, "credit", modelAccounts), Amount: drawAmount(t), Code: code(),
			Pending: choose(t, "pending", 1, 1) == 1,
		}
		// The amounts on either side of a limit.
		var edges []uint64
		if a, ok := m.accounts[tr.DebitAccount]; ok && a.flags == FlagDebitsMustNotExceedCredits && a.cpo > a.dp+a.dpo {
			edges = append(edges, a.cpo-a.dp-a.dpo, a.cpo-a.dp-a.dpo+1)
		}
		if a, ok := m.accounts[tr.CreditAccount]; ok && a.flags == FlagCreditsMustNotExceedDebits && a.dpo > a.cp+a.cpo {
			edges = append(edges, a.dpo-a.cp-a.cpo, a.dpo-a.cp-a.cpo+1)
		}
		if len(edges) > 0 && choose(t, "edge amount", 2, 1) == 1 {
			tr.Amount = oneOf(t, "edge", edges...)
		}
		if tr.Pending || choose(t, "stray timeout", 40, 1) == 1 {
			tr.TimeoutMs = []uint64{0, 1000, 3000, TimeoutMsMax + 1}[choose(t, "timeout", 10, 10, 10, 1)]
		}
		return LedgerOp{Transfer: tr}
	case 1:
		owner := c
		if choose(t, "foreign owner", 20, 1) == 1 {
			owner = 3 - c
		}
		flags := []AccountFlags{0, FlagDebitsMustNotExceedCredits, FlagCreditsMustNotExceedDebits, 3, 8}[choose(t, "flags", 10, 10, 10, 1, 1)]
		return LedgerOp{CreateAccount: &CreateAccountCommand{ID: drawID(t, "account", modelAccounts), Code: code(), OwnerKey: client(owner), Flags: flags}}
	case 2:
		pid := pick("pending", pending, modelTransfers)
		amount := []uint64{0, 1, 5, 30, 100}[choose(t, "post amount", 5, 1, 1, 1, 1)]
		if p, ok := m.transfers[pid]; ok && choose(t, "edge post", 1, 1) == 1 {
			amount = oneOf(t, "edge", p.amount, p.amount+1)
		}
		return LedgerOp{PostPending: &PostPendingCommand{ID: pick("post", modelSettles, modelTransfers), PendingID: pid, Amount: amount}}
	case 3:
		return LedgerOp{VoidPending: &VoidPendingCommand{ID: pick("void", modelSettles, modelTransfers), PendingID: pick("pending", pending, modelTransfers)}}
	}
	return LedgerOp{}
}

func drawCommand(t *rapid.T, c byte, m *model, n *int) Command {
	switch choose(t, "command", 30, 10, 2) {
	case 1:
		ops := make([]LedgerOp, choose(t, "ops", 0, 6, 6, 6, 6, 1))
		for i := range ops {
			ops[i] = drawOp(t, c, m)
			// Chains left open are rare, as they are in use.
			ops[i].Linked = choose(t, "linked", 2, 1) == 1 && (i < len(ops)-1 || choose(t, "open", 5, 1) == 1)
		}
		return Command{Ops: ops}
	case 2:
		*n++
		stream := oneOf(t, "append stream", "orders", "account-A0", "transfer-T0")
		return Command{Append: &AppendCommand{Stream: stream, ExpectedVersion: ExpectedAny,
			Events: []EventData{{ID: evID(*n), Type: "placed", ContentType: ContentJSON, Data: []byte(fmt.Sprintf(`{"n":%d}`, *n))}}}}
	}
	op := drawOp(t, c, m)
	return Command{CreateAccount: op.CreateAccount, Transfer: op.Transfer, PostPending: op.PostPending, VoidPending: op.VoidPending}
}

type sentRequest struct {
	req Request
	raw []byte
}

// TestLedgerModel runs random batches of ledger commands — linked lists,
// retries under the same and under new client seqs, wrong owners, overflows,
// flags, pending transfers expiring as log time advances, batches and
// commands at their bounds — against the model. After every batch (most hold
// one command) it checks each result code and position, each event byte for
// byte, every account against the model, and I8 on the executor's own state.
// A second log executes the same batches and must agree byte for byte; at the
// end the ledger state is rebuilt from the events and must match.
func TestLedgerModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			ExpiriesPerBatchMax: 1 + choose(rt, "expiries per batch", 1, 1, 1),
			OpsPerBatchMax:      4 + choose(rt, "ops per batch", 1, 1, 1, 1, 1, 1, 1, 1),
			OpsPerCommandMax:    4,
		}
		cfg = cfg.WithDefaults()
		h, twin := newHarness(rt, cfg), newHarness(rt, cfg)
		m := &model{accounts: map[string]mAccount{}, transfers: map[string]mTransfer{}, appended: map[[16]byte]uint64{},
			next: 1, cfg: cfg, ts: 1_700_000_000e9}
		var checkErr error
		h.inspect = func(tx *eventlog.Tx) { checkErr = checkState(tx, m) }
		var sent []sentRequest
		seqs := map[byte]uint64{}
		appends := 0
		batches := rapid.IntRange(1, 60).Draw(rt, "batches")
		for b := 0; b < batches; b++ {
			// Round steps make batches land on deadlines exactly.
			step := []int64{500, 1000, 1}[choose(rt, "step", 1, 1, 2)]
			if step == 1 {
				step = rapid.Int64Range(1, 2500).Draw(rt, "ms passing")
			}
			m.ts += step * 1e6
			m.opsLeft = cfg.OpsPerBatchMax
			m.events = nil
			first := m.next
			m.expire()
			type expect struct {
				code      string
				positions []uint64
				ops       []mResult
				same      []byte // a retried (client, seq): the stored result
			}
			var reqs []Request
			var wants []expect
			for range 1 + choose(rt, "batch size", 6, 2, 1) {
				if len(sent) > 0 && choose(rt, "retry same seq", 12, 1) == 1 {
					s := sent[rapid.IntRange(0, len(sent)-1).Draw(rt, "retried")]
					reqs = append(reqs, s.req)
					wants = append(wants, expect{same: s.raw})
					continue
				}
				c := byte(1 + choose(rt, "client", 3, 1))
				var cmd Command
				if len(sent) > 0 && choose(rt, "resend", 12, 1) == 1 {
					prev := sent[rapid.IntRange(0, len(sent)-1).Draw(rt, "resent")].req
					c = prev.Client[0]
					if err := codec.Unmarshal(prev.Command, &cmd); err != nil {
						rt.Fatal(err)
					}
				} else {
					cmd = drawCommand(rt, c, m, &appends)
				}
				seqs[c]++
				r := req(c, seqs[c], codec.MustMarshal(&cmd))
				code, positions, ops := m.request(c, &cmd)
				reqs = append(reqs, r)
				wants = append(wants, expect{code: code, positions: positions, ops: ops})
				m.checkI8(rt)
			}
			raw := h.runRawAt(m.ts, reqs...)
			if checkErr != nil {
				rt.Fatalf("batch %d: %v", b, checkErr)
			}
			if twinRaw := twin.runRawAt(m.ts, reqs...); !slices.EqualFunc(raw, twinRaw, bytes.Equal) {
				rt.Fatalf("batch %d: the twin log got other results", b)
			}
			for i, w := range wants {
				if w.same != nil {
					if !bytes.Equal(raw[i], w.same) {
						rt.Fatalf("batch %d request %d: a retried seq got new bytes", b, i)
					}
					continue
				}
				var res Result
				if err := codec.Unmarshal(raw[i], &res); err != nil {
					rt.Fatal(err)
				}
				if res.Code != w.code || fmt.Sprint(res.Positions) != fmt.Sprint(w.positions) || len(res.Ops) != len(w.ops) {
					rt.Fatalf("batch %d request %d: %s %v (%q) %d ops, model says %s %v %d ops",
						b, i, res.Code, res.Positions, res.Message, len(res.Ops), w.code, w.positions, len(w.ops))
				}
				for j, o := range res.Ops {
					if o.Code != w.ops[j].code || o.Position != w.ops[j].pos || (o.Code != CodeOK && o.Code != CodeExists) == (o.Message == "") {
						rt.Fatalf("batch %d request %d op %d: %s@%d %q, model says %s@%d", b, i, j, o.Code, o.Position, o.Message, w.ops[j].code, w.ops[j].pos)
					}
				}
				sent = append(sent, sentRequest{req: reqs[i], raw: raw[i]})
			}
			checkEvents(rt, h.log, first, m.events)
		}
		_, da := h.log.StateDigest()
		_, db := twin.log.StateDigest()
		_, ha := h.log.Applied()
		_, hb := twin.log.Applied()
		if da != db || ha != hb {
			rt.Fatal("the twin logs' states or heads differ")
		}
		rebuildAndCompare(rt, h)
	})
}

// checkEvents compares the log's events from position first on with want.
func checkEvents(t *rapid.T, l *eventlog.Log, first uint64, want []mEvent) {
	got, _, err := l.ReadAll(first, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d events from %d, model says %d", len(got), first, len(want))
	}
	for i, e := range got {
		w := want[i]
		if e.Stream != w.stream || e.Type != w.typ || string(e.Data) != w.data || string(e.Metadata) != w.meta {
			t.Fatalf("event %d: %s %s %s %q, model says %s %s %s %q", e.Position, e.Stream, e.Type, e.Data, e.Metadata, w.stream, w.typ, w.data, w.meta)
		}
	}
}

// checkState compares the executor's accounts with the model's and checks
// I8 on them, inside the batch's transaction.
func checkState(tx *eventlog.Tx, m *model) error {
	lb := newLedgerBatch(tx, 0)
	var dp, dpo, cp, cpo big.Int
	for _, id := range modelAccounts {
		a, found, err := lb.account(id)
		if err != nil {
			return err
		}
		w, ok := m.accounts[id]
		if found != ok {
			return fmt.Errorf("account %s: exists %t, model says %t", id, found, ok)
		}
		if a.Code != w.code || a.Owner != client(w.owner) || a.Flags != w.flags ||
			a.DebitsPending != w.dp || a.DebitsPosted != w.dpo || a.CreditsPending != w.cp || a.CreditsPosted != w.cpo {
			return fmt.Errorf("account %s: %+v, model says %+v", id, a, w)
		}
		dp.Add(&dp, new(big.Int).SetUint64(a.DebitsPending))
		dpo.Add(&dpo, new(big.Int).SetUint64(a.DebitsPosted))
		cp.Add(&cp, new(big.Int).SetUint64(a.CreditsPending))
		cpo.Add(&cpo, new(big.Int).SetUint64(a.CreditsPosted))
		if a.Flags&FlagDebitsMustNotExceedCredits != 0 && (!fits(a.DebitsPending, a.DebitsPosted, 0) || a.DebitsPending+a.DebitsPosted > a.CreditsPosted) {
			return fmt.Errorf("I8: account %s breaks debits_must_not_exceed_credits: %+v", id, a)
		}
		if a.Flags&FlagCreditsMustNotExceedDebits != 0 && (!fits(a.CreditsPending, a.CreditsPosted, 0) || a.CreditsPending+a.CreditsPosted > a.DebitsPosted) {
			return fmt.Errorf("I8: account %s breaks credits_must_not_exceed_debits: %+v", id, a)
		}
	}
	if dp.Cmp(&cp) != 0 || dpo.Cmp(&cpo) != 0 {
		return fmt.Errorf("I8: debits %v/%v, credits %v/%v (pending/posted)", &dp, &dpo, &cp, &cpo)
	}
	return nil
}
