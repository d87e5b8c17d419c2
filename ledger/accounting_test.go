package ledger

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/eventlog"
)

func cmdBytes(c Command) []byte { return codec.MustMarshal(&c) }

func openCmd(id string, code uint64, owner byte, flags AccountFlags) []byte {
	return cmdBytes(Command{CreateAccount: &CreateAccountCommand{ID: id, Code: code, OwnerKey: client(owner), Flags: flags}})
}

func xferCmd(t TransferCommand) []byte { return cmdBytes(Command{Transfer: &t}) }

func postCmd(id, pending string, amount uint64) []byte {
	return cmdBytes(Command{PostPending: &PostPendingCommand{ID: id, PendingID: pending, Amount: amount}})
}

func voidCmd(id, pending string) []byte {
	return cmdBytes(Command{VoidPending: &VoidPendingCommand{ID: id, PendingID: pending}})
}

func opsCmd(ops ...LedgerOp) []byte { return cmdBytes(Command{Ops: ops}) }

// ledgerHarness numbers client seqs itself.
type ledgerHarness struct {
	*harness
	seq uint64
}

func newLedgerHarness(t tb, cfg Config) *ledgerHarness {
	return &ledgerHarness{harness: newHarness(t, cfg)}
}

// do runs one command of client c in a batch of its own.
func (h *ledgerHarness) do(c byte, cmd []byte) Result {
	h.t.Helper()
	h.seq++
	return h.one(req(c, h.seq, cmd))
}

// doAt runs one command of client c at log time ts.
func (h *ledgerHarness) doAt(ts int64, c byte, cmd []byte) Result {
	h.t.Helper()
	h.seq++
	return h.runAt(ts, req(c, h.seq, cmd))[0]
}

func want(t tb, what string, r Result, code string, positions ...uint64) {
	t.Helper()
	if positions == nil {
		positions = []uint64{}
	}
	got := r.Positions
	if got == nil {
		got = []uint64{}
	}
	if r.Code != code || fmt.Sprint(got) != fmt.Sprint(positions) || r.StreamVersion != -1 {
		t.Fatalf("%s: got %s %v (%q), want %s %v", what, r.Code, r.Positions, r.Message, code, positions)
	}
	if !succeeded(code) && r.Message == "" {
		t.Fatalf("%s: %s without a message", what, code)
	}
}

// wantEvent checks the event at pos, byte for byte.
func wantEvent(t tb, l *eventlog.Log, pos uint64, stream, typ, data, metadata string) {
	t.Helper()
	e, err := l.EventAt(pos)
	if err != nil {
		t.Fatal(err)
	}
	if e.Stream != stream || e.Type != typ || string(e.Data) != data || string(e.Metadata) != metadata || e.ContentType != ContentJSON {
		t.Fatalf("event %d: %s %s %s %q (%s), want %s %s %s %q", pos, e.Stream, e.Type, e.Data, e.Metadata, e.ContentType, stream, typ, data, metadata)
	}
	if n, ok := ledgerEventNum(e.ID); !ok || n == 0 {
		t.Fatalf("event %d: id %x is not a ledger event id", pos, e.ID)
	}
}

// balances reads accounts as the next batch will see them.
func balances(t tb, h *harness, ids ...string) map[string]account {
	t.Helper()
	out := map[string]account{}
	seq, _ := h.log.Applied()
	_, err := h.log.Apply(eventlog.EntryHeader{Seq: seq + 1, Timestamp: int64(seq+1) * 1e9}, func(tx *eventlog.Tx) ([][]byte, error) {
		lb := newLedgerBatch(tx, 0)
		for _, id := range ids {
			a, found, err := lb.account(id)
			if err != nil {
				return nil, err
			}
			if found {
				out[id] = a
			}
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantBalance(t tb, a account, dp, dpo, cp, cpo uint64) {
	t.Helper()
	if a.DebitsPending != dp || a.DebitsPosted != dpo || a.CreditsPending != cp || a.CreditsPosted != cpo {
		t.Fatalf("balances debits %d/%d credits %d/%d (pending/posted), want %d/%d %d/%d",
			a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted, dp, dpo, cp, cpo)
	}
}

func TestCreateAccount(t *testing.T) {
	h := newLedgerHarness(t, DefaultConfig())
	want(t, "create", h.do(1, openCmd("A", 7, 1, FlagDebitsMustNotExceedCredits)), CodeOK, 1)
	wantEvent(t, h.log, 1, "account-A", EventAccountCreated,
		fmt.Sprintf(`{"id":"A","code":7,"owner_key":"%v","flags":["debits_must_not_exceed_credits"]}`, client(1)), "")
	want(t, "create without flags", h.do(1, openCmd("B", 7, 1, 0)), CodeOK, 2)
	wantEvent(t, h.log, 2, "account-B", EventAccountCreated, fmt.Sprintf(`{"id":"B","code":7,"owner_key":"%v","flags":[]}`, client(1)), "")
	want(t, "create other flag", h.do(2, openCmd("C", 9, 2, FlagCreditsMustNotExceedDebits)), CodeOK, 3)
	wantEvent(t, h.log, 3, "account-C", EventAccountCreated,
		fmt.Sprintf(`{"id":"C","code":9,"owner_key":"%v","flags":["credits_must_not_exceed_debits"]}`, client(2)), "")

	_, stateBefore := h.log.StateDigest()
	want(t, "retry", h.do(1, openCmd("A", 7, 1, FlagDebitsMustNotExceedCredits)), CodeExists, 1)
	want(t, "other code", h.do(1, openCmd("A", 8, 1, FlagDebitsMustNotExceedCredits)), CodeExistsWithDifferentFields)
	want(t, "other flags", h.do(1, openCmd("A", 7, 1, 0)), CodeExistsWithDifferentFields)
	want(t, "other owner", h.do(2, openCmd("A", 7, 2, FlagDebitsMustNotExceedCredits)), CodeExistsWithDifferentFields)
	want(t, "someone else's key", h.do(2, openCmd("D", 7, 1, 0)), CodeNotOwner)
	for name, cmd := range map[string][]byte{
		"empty id":        openCmd("", 7, 1, 0),
		"bad char":        openCmd("a/b", 7, 1, 0),
		"id too long":     openCmd(strings.Repeat("a", AccountIDBytesMax+1), 7, 1, 0),
		"code 0":          openCmd("E", 0, 1, 0),
		"both flags":      openCmd("E", 7, 1, FlagDebitsMustNotExceedCredits|FlagCreditsMustNotExceedDebits),
		"unknown flag":    openCmd("E", 7, 1, 1<<5),
		"empty operation": opsCmd(LedgerOp{}),
		"two operations":  opsCmd(LedgerOp{CreateAccount: &CreateAccountCommand{ID: "E", Code: 1, OwnerKey: client(1)}, VoidPending: &VoidPendingCommand{ID: "v", PendingID: "p"}}),
	} {
		r := h.do(1, cmd)
		if r.Code != CodeBadCommand || r.Message == "" || len(r.Positions) != 0 {
			t.Errorf("%s: %s %q, want bad_command", name, r.Code, r.Message)
		}
	}
	if h.log.LastPosition() != 3 {
		t.Fatalf("refused operations wrote events: last position %d", h.log.LastPosition())
	}
	if _, s := h.log.StateDigest(); s == stateBefore {
		t.Fatal("the state digest ignored the requests (their results are state)")
	}
	longest := strings.Repeat("a", AccountIDBytesMax)
	want(t, "longest id", h.do(1, openCmd(longest, 7, 1, 0)), CodeOK, 4)
	wantEvent(t, h.log, 4, AccountStreamPrefix+longest, EventAccountCreated,
		fmt.Sprintf(`{"id":"%s","code":7,"owner_key":"%v","flags":[]}`, longest, client(1)), "")
}

// openAccounts opens accounts of code 1 owned by client 1: "src" may go
// negative, "cash" may not (debits must not exceed credits), "dst" plain,
// "cap" limited by its debits, "eur" of code 2.
func openAccounts(t tb, h *ledgerHarness) {
	t.Helper()
	for _, a := range []struct {
		id    string
		code  uint64
		flags AccountFlags
	}{
		{"src", 1, 0}, {"cash", 1, FlagDebitsMustNotExceedCredits}, {"dst", 1, 0},
		{"cap", 1, FlagCreditsMustNotExceedDebits}, {"eur", 2, 0},
	} {
		if r := h.do(1, openCmd(a.id, a.code, 1, a.flags)); r.Code != CodeOK {
			t.Fatalf("open %s: %s %s", a.id, r.Code, r.Message)
		}
	}
}

func TestTransfer(t *testing.T) {
	h := newLedgerHarness(t, DefaultConfig())
	openAccounts(t, h)
	tr := TransferCommand{ID: "T1", DebitAccount: "src", CreditAccount: "cash", Amount: 100, Code: 1}
	want(t, "transfer", h.do(1, xferCmd(tr)), CodeOK, 6)
	wantEvent(t, h.log, 6, "transfer-T1", EventTransferCreated,
		`{"id":"T1","debit_account":"src","credit_account":"cash","amount":100,"code":1,"pending":false,"timeout_ms":0}`, "")
	want(t, "retry", h.do(1, xferCmd(tr)), CodeExists, 6)
	other := tr
	other.Amount = 101
	want(t, "other amount", h.do(1, xferCmd(other)), CodeExistsWithDifferentFields)
	other = tr
	other.Pending = true
	want(t, "now pending", h.do(1, xferCmd(other)), CodeExistsWithDifferentFields)

	// cash holds 100: it may pay out 100, not 101.
	want(t, "overdraw", h.do(1, xferCmd(TransferCommand{ID: "T2", DebitAccount: "cash", CreditAccount: "dst", Amount: 101, Code: 1})), CodeExceedsCredits)
	want(t, "pay out", h.do(1, xferCmd(TransferCommand{ID: "T2", DebitAccount: "cash", CreditAccount: "dst", Amount: 60, Code: 1})), CodeOK, 7)
	want(t, "pay out the rest", h.do(1, xferCmd(TransferCommand{ID: "T3", DebitAccount: "cash", CreditAccount: "dst", Amount: 40, Code: 1})), CodeOK, 8)
	want(t, "empty", h.do(1, xferCmd(TransferCommand{ID: "T4", DebitAccount: "cash", CreditAccount: "dst", Amount: 1, Code: 1})), CodeExceedsCredits)
	// cap has no debits: it may not be credited.
	want(t, "credit cap", h.do(1, xferCmd(TransferCommand{ID: "T4", DebitAccount: "src", CreditAccount: "cap", Amount: 1, Code: 1})), CodeExceedsDebits)
	want(t, "debit cap", h.do(1, xferCmd(TransferCommand{ID: "T4", DebitAccount: "cap", CreditAccount: "src", Amount: 5, Code: 1})), CodeOK, 9)
	want(t, "credit cap back", h.do(1, xferCmd(TransferCommand{ID: "T5", DebitAccount: "src", CreditAccount: "cap", Amount: 5, Code: 1})), CodeOK, 10)

	for _, c := range []struct {
		name string
		tr   TransferCommand
		code string
	}{
		{"same account", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "src", Amount: 1, Code: 1}, CodeSameAccount},
		{"amount zero", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Code: 1}, CodeAmountZero},
		{"no debit account", TransferCommand{ID: "X", DebitAccount: "nope", CreditAccount: "dst", Amount: 1, Code: 1}, CodeAccountNotFound},
		{"no credit account", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "nope", Amount: 1, Code: 1}, CodeAccountNotFound},
		{"code of accounts", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "eur", Amount: 1, Code: 1}, CodeCodeMismatch},
		{"code of transfer", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 2}, CodeCodeMismatch},
		{"overflow", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Amount: math.MaxUint64 - 50, Code: 1}, CodeOverflow},
		{"code 0", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Amount: 1}, CodeBadCommand},
		{"timeout without pending", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1, TimeoutMs: 5}, CodeBadCommand},
		{"timeout too long", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1, Pending: true, TimeoutMs: TimeoutMsMax + 1}, CodeBadCommand},
		{"id too long", TransferCommand{ID: strings.Repeat("x", TransferIDBytesMax+1), DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1}, CodeBadCommand},
		{"bad debit id", TransferCommand{ID: "X", DebitAccount: "s rc", CreditAccount: "dst", Amount: 1, Code: 1}, CodeBadCommand},
		{"bad credit id", TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "", Amount: 1, Code: 1}, CodeBadCommand},
	} {
		want(t, c.name, h.do(1, xferCmd(c.tr)), c.code)
	}
	// Only the debit account's owner moves money out; anyone may pay in.
	want(t, "not owner", h.do(2, xferCmd(TransferCommand{ID: "X", DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1})), CodeNotOwner)
	want(t, "open foreign", h.do(2, openCmd("theirs", 1, 2, 0)), CodeOK, 11)
	want(t, "pay in", h.do(2, xferCmd(TransferCommand{ID: "X", DebitAccount: "theirs", CreditAccount: "dst", Amount: 1, Code: 1})), CodeOK, 12)
	// A retry by anyone with equal fields is still just that.
	want(t, "retry by another", h.do(3, xferCmd(tr)), CodeExists, 6)

	b := balances(t, h.harness, "src", "cash", "dst", "cap", "theirs")
	wantBalance(t, b["src"], 0, 105, 0, 5)
	wantBalance(t, b["cash"], 0, 100, 0, 100)
	wantBalance(t, b["dst"], 0, 0, 0, 101)
	wantBalance(t, b["cap"], 0, 5, 0, 5)
	wantBalance(t, b["theirs"], 0, 1, 0, 0)

	// An overflow on the credit side is caught too, and pending counts.
	h.do(1, openCmd("big", 1, 1, 0))
	want(t, "fill", h.do(1, xferCmd(TransferCommand{ID: "F1", DebitAccount: "src", CreditAccount: "big", Amount: math.MaxUint64 - 200, Code: 1, Pending: true})), CodeOK, 14)
	want(t, "overflow with pending", h.do(1, xferCmd(TransferCommand{ID: "F2", DebitAccount: "dst", CreditAccount: "big", Amount: 201, Code: 1})), CodeOverflow)
	want(t, "up to the limit", h.do(1, xferCmd(TransferCommand{ID: "F2", DebitAccount: "dst", CreditAccount: "big", Amount: 200, Code: 1})), CodeOK, 15)
}

func TestPendingTransfers(t *testing.T) {
	h := newLedgerHarness(t, DefaultConfig())
	openAccounts(t, h)
	want(t, "fund", h.do(1, xferCmd(TransferCommand{ID: "fund", DebitAccount: "src", CreditAccount: "cash", Amount: 100, Code: 1})), CodeOK, 6)
	p := TransferCommand{ID: "P1", DebitAccount: "cash", CreditAccount: "dst", Amount: 70, Code: 1, Pending: true}
	want(t, "reserve", h.do(1, xferCmd(p)), CodeOK, 7)
	wantEvent(t, h.log, 7, "transfer-P1", EventTransferCreated,
		`{"id":"P1","debit_account":"cash","credit_account":"dst","amount":70,"code":1,"pending":true,"timeout_ms":0}`, "")
	// The reservation counts against the limit.
	want(t, "over the reservation", h.do(1, xferCmd(TransferCommand{ID: "P2", DebitAccount: "cash", CreditAccount: "dst", Amount: 31, Code: 1})), CodeExceedsCredits)
	want(t, "reserve the rest", h.do(1, xferCmd(TransferCommand{ID: "P2", DebitAccount: "cash", CreditAccount: "dst", Amount: 30, Code: 1, Pending: true})), CodeOK, 8)
	b := balances(t, h.harness, "cash", "dst")
	wantBalance(t, b["cash"], 100, 0, 0, 100)
	wantBalance(t, b["dst"], 0, 0, 100, 0)

	want(t, "post too much", h.do(1, postCmd("S1", "P1", 71)), CodeExceedsPendingAmount)
	want(t, "post by another", h.do(2, postCmd("S1", "P1", 50)), CodeNotOwner)
	want(t, "post unknown", h.do(1, postCmd("S1", "nope", 50)), CodePendingTransferNotFound)
	want(t, "post a posted transfer", h.do(1, postCmd("S1", "fund", 50)), CodePendingTransferNotPending)
	want(t, "post part", h.do(1, postCmd("S1", "P1", 50)), CodeOK, 9)
	wantEvent(t, h.log, 9, "transfer-P1", EventPendingPosted,
		`{"pending_id":"P1","amount":50,"debit_account":"cash","credit_account":"dst"}`, `{"id":"S1"}`)
	want(t, "retry the post", h.do(1, postCmd("S1", "P1", 50)), CodeExists, 9)
	want(t, "post id reused", h.do(1, postCmd("S1", "P1", 40)), CodeExistsWithDifferentFields)
	want(t, "post id as a void", h.do(1, voidCmd("S1", "P1")), CodeExistsWithDifferentFields)
	want(t, "post id as a transfer", h.do(1, xferCmd(TransferCommand{ID: "S1", DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1})), CodeExistsWithDifferentFields)
	want(t, "transfer id as a post", h.do(1, postCmd("fund", "P1", 0)), CodeExistsWithDifferentFields)
	want(t, "post again", h.do(1, postCmd("S2", "P1", 0)), CodePendingTransferAlreadyPosted)
	want(t, "void a posted", h.do(1, voidCmd("S2", "P1")), CodePendingTransferAlreadyPosted)
	b = balances(t, h.harness, "cash", "dst")
	// 20 of P1's 70 went back to cash.
	wantBalance(t, b["cash"], 30, 50, 0, 100)
	wantBalance(t, b["dst"], 0, 0, 30, 50)

	want(t, "void by another", h.do(2, voidCmd("V1", "P2")), CodeNotOwner)
	want(t, "void", h.do(1, voidCmd("V1", "P2")), CodeOK, 10)
	wantEvent(t, h.log, 10, "transfer-P2", EventPendingVoided,
		`{"pending_id":"P2","amount":30,"debit_account":"cash","credit_account":"dst"}`, `{"id":"V1"}`)
	want(t, "retry the void", h.do(1, voidCmd("V1", "P2")), CodeExists, 10)
	want(t, "void again", h.do(1, voidCmd("V2", "P2")), CodePendingTransferAlreadyVoided)
	want(t, "post a voided", h.do(1, postCmd("V2", "P2", 0)), CodePendingTransferAlreadyVoided)

	// Posting 0 posts everything, and a retry naming the amount is the same post.
	want(t, "reserve 3", h.do(1, xferCmd(TransferCommand{ID: "P3", DebitAccount: "cash", CreditAccount: "dst", Amount: 30, Code: 1, Pending: true})), CodeOK, 11)
	want(t, "post all", h.do(1, postCmd("S3", "P3", 0)), CodeOK, 12)
	wantEvent(t, h.log, 12, "transfer-P3", EventPendingPosted,
		`{"pending_id":"P3","amount":30,"debit_account":"cash","credit_account":"dst"}`, `{"id":"S3"}`)
	want(t, "retry naming the amount", h.do(1, postCmd("S3", "P3", 30)), CodeExists, 12)
	b = balances(t, h.harness, "cash", "dst")
	wantBalance(t, b["cash"], 0, 80, 0, 100)
	wantBalance(t, b["dst"], 0, 0, 0, 80)
	for name, cmd := range map[string][]byte{
		"bad id":         postCmd("a b", "P3", 0),
		"bad pending id": voidCmd("V9", ""),
		"long id":        voidCmd(strings.Repeat("v", TransferIDBytesMax+1), "P3"),
	} {
		if r := h.do(1, cmd); r.Code != CodeBadCommand {
			t.Errorf("%s: %s, want bad_command", name, r.Code)
		}
	}
}

func TestPendingExpiry(t *testing.T) {
	const sec = int64(1e9)
	h := newLedgerHarness(t, Config{ExpiriesPerBatchMax: 2})
	base := 1000 * sec
	openAccounts(t, h)
	pend := func(id string, amount, timeoutMs uint64) []byte {
		return xferCmd(TransferCommand{ID: id, DebitAccount: "src", CreditAccount: "dst", Amount: amount, Code: 1, Pending: true, TimeoutMs: timeoutMs})
	}
	// Made at base: E1 and E2 expire at base+2s, E3 at base+1s, E0 never.
	// In one batch, so that E1 and E2 share a deadline.
	h.seq++
	rs := h.runAt(base, req(1, h.seq, pend("E2", 2, 2000)), req(1, h.seq+1, pend("E1", 1, 2000)),
		req(1, h.seq+2, pend("E3", 3, 1000)), req(1, h.seq+3, pend("E0", 4, 0)))
	h.seq += 3
	for i, r := range rs {
		want(t, fmt.Sprint("reserve ", i), r, CodeOK, uint64(6+i))
	}
	// At the deadline itself nothing expires; an empty batch changes nothing.
	h.runAt(base + sec)
	if h.log.LastPosition() != 9 {
		t.Fatalf("something expired at its deadline: last position %d", h.log.LastPosition())
	}
	want(t, "post at the deadline", h.doAt(base+sec, 1, postCmd("S3", "E3", 1)), CodeOK, 10)
	want(t, "reserve E4", h.doAt(base+sec, 1, pend("E4", 5, 1500)), CodeOK, 11)

	// Past every deadline: the limit of 2 expires E1 and E2 (deadline order,
	// ties by id) before the batch's request, which then sees E4 expired
	// although the sweep has not reached it.
	r := h.doAt(base+3*sec, 1, postCmd("S4", "E4", 0))
	want(t, "post an overdue transfer", r, CodePendingTransferExpired)
	wantEvent(t, h.log, 12, "transfer-E1", EventPendingExpired, `{"pending_id":"E1","amount":1,"debit_account":"src","credit_account":"dst"}`, "")
	wantEvent(t, h.log, 13, "transfer-E2", EventPendingExpired, `{"pending_id":"E2","amount":2,"debit_account":"src","credit_account":"dst"}`, "")
	if h.log.LastPosition() != 13 {
		t.Fatalf("last position %d, want 13", h.log.LastPosition())
	}
	b := balances(t, h.harness, "src", "dst")
	wantBalance(t, b["src"], 4+5, 1, 0, 0)
	// An empty batch expires the last one.
	h.runAt(base + 4*sec)
	wantEvent(t, h.log, 14, "transfer-E4", EventPendingExpired, `{"pending_id":"E4","amount":5,"debit_account":"src","credit_account":"dst"}`, "")
	b = balances(t, h.harness, "src", "dst")
	wantBalance(t, b["src"], 4, 1, 0, 0)
	wantBalance(t, b["dst"], 0, 0, 4, 1)
	want(t, "post expired", h.doAt(base+5*sec, 1, postCmd("S1", "E1", 0)), CodePendingTransferExpired)
	want(t, "void expired", h.doAt(base+6*sec, 1, voidCmd("S1", "E1")), CodePendingTransferExpired)
	want(t, "void the timeless", h.doAt(base+7*sec, 1, voidCmd("V0", "E0")), CodeOK, 15)
	if h.log.LastPosition() != 15 {
		t.Fatalf("last position %d, want 15", h.log.LastPosition())
	}
}

func TestLinkedOps(t *testing.T) {
	h := newLedgerHarness(t, DefaultConfig())
	openAccounts(t, h)
	tr := func(id, from, to string, amount uint64, linked bool) LedgerOp {
		return LedgerOp{Transfer: &TransferCommand{ID: id, DebitAccount: from, CreditAccount: to, Amount: amount, Code: 1}, Linked: linked}
	}
	codes := func(r Result) string {
		var s []string
		for _, o := range r.Ops {
			s = append(s, fmt.Sprintf("%s@%d", o.Code, o.Position))
		}
		return strings.Join(s, " ")
	}
	check := func(what string, r Result, code, ops string, positions ...uint64) {
		t.Helper()
		want(t, what, r, code, positions...)
		if got := codes(r); got != ops {
			t.Fatalf("%s: ops %s, want %s", what, got, ops)
		}
	}
	// A chain that fails in the middle leaves nothing, not even the account
	// its first operation opened.
	r := h.do(1, opsCmd(
		LedgerOp{CreateAccount: &CreateAccountCommand{ID: "new", Code: 1, OwnerKey: client(1)}, Linked: true},
		tr("L1", "src", "new", 10, true),
		tr("L2", "new", "cash", 20, true), // fine: new has no limit
		tr("L3", "cash", "dst", 25, true), // cash holds 20
		tr("L4", "src", "dst", 1, false),
	))
	check("failing chain", r, CodeExceedsCredits,
		"linked_event_failed@0 linked_event_failed@0 linked_event_failed@0 exceeds_credits@0 linked_event_failed@0")
	if !strings.HasPrefix(r.Message, "operation 3: ") {
		t.Fatalf("message %q", r.Message)
	}
	if h.log.LastPosition() != 5 || len(balances(t, h.harness, "new")) != 0 {
		t.Fatal("a failed chain left events or an account")
	}

	// The same chain within the limit succeeds as one, later operations
	// seeing earlier ones; an unlinked operation after it stands alone.
	r = h.do(1, opsCmd(
		LedgerOp{CreateAccount: &CreateAccountCommand{ID: "new", Code: 1, OwnerKey: client(1)}, Linked: true},
		tr("L1", "src", "new", 10, true),
		tr("L2", "new", "cash", 20, true),
		tr("L3", "cash", "dst", 15, false),
		tr("L4", "cash", "dst", 6, false), // 5 left
		tr("L5", "src", "dst", 1, false),
	))
	check("chain", r, CodeExceedsCredits, "ok@6 ok@7 ok@8 ok@9 exceeds_credits@0 ok@10", 6, 7, 8, 9, 10)
	b := balances(t, h.harness, "src", "new", "cash", "dst")
	wantBalance(t, b["new"], 0, 20, 0, 10)
	wantBalance(t, b["cash"], 0, 15, 0, 20)

	// A retried chain answers exists throughout, with the original positions.
	r = h.do(1, opsCmd(
		LedgerOp{CreateAccount: &CreateAccountCommand{ID: "new", Code: 1, OwnerKey: client(1)}, Linked: true},
		tr("L1", "src", "new", 10, true),
		tr("L2", "new", "cash", 20, true),
		tr("L3", "cash", "dst", 15, false),
	))
	check("retried chain", r, CodeExists, "exists@6 exists@7 exists@8 exists@9", 6, 7, 8, 9)
	// exists does not break a chain; the same id twice in one chain is ok then exists.
	r = h.do(1, opsCmd(tr("L1", "src", "new", 10, true), tr("L6", "src", "dst", 2, true), tr("L6", "src", "dst", 2, false)))
	check("exists in a chain", r, CodeOK, "exists@7 ok@11 exists@11", 7, 11, 11)

	// A chain left open fails: its last operation says so, an earlier
	// failure keeps its own code.
	r = h.do(1, opsCmd(tr("O1", "src", "dst", 1, false), tr("O2", "src", "dst", 1, true), tr("O3", "src", "dst", 1, true)))
	check("open chain", r, CodeLinkedEventChainOpen, "ok@12 linked_event_failed@0 linked_event_chain_open@0", 12)
	r = h.do(1, opsCmd(tr("O4", "src", "src", 1, true), tr("O5", "src", "dst", 1, true), tr("O6", "src", "dst", 1, true)))
	check("open chain with a failure", r, CodeSameAccount, "same_account@0 linked_event_failed@0 linked_event_chain_open@0")
	r = h.do(1, opsCmd(tr("O7", "src", "dst", 1, true)))
	check("open chain of one", r, CodeLinkedEventChainOpen, "linked_event_chain_open@0")
	// A pending transfer posted in the same chain.
	r = h.do(1, opsCmd(
		LedgerOp{Transfer: &TransferCommand{ID: "LP", DebitAccount: "src", CreditAccount: "dst", Amount: 9, Code: 1, Pending: true}, Linked: true},
		LedgerOp{PostPending: &PostPendingCommand{ID: "LS", PendingID: "LP", Amount: 4}},
	))
	check("reserve and post", r, CodeOK, "ok@13 ok@14", 13, 14)
	if h.log.LastPosition() != 14 {
		t.Fatalf("last position %d", h.log.LastPosition())
	}
	// Bad operations in a list are per operation.
	r = h.do(1, opsCmd(LedgerOp{}, tr("B1", "src", "dst", 1, false)))
	check("bad op in a list", r, CodeBadCommand, "bad_command@0 ok@15", 15)
}

func TestLedgerBounds(t *testing.T) {
	h := newLedgerHarness(t, Config{OpsPerCommandMax: 3, OpsPerBatchMax: 4})
	openAccounts(t, h)
	op := func(id string) LedgerOp {
		return LedgerOp{Transfer: &TransferCommand{ID: id, DebitAccount: "src", CreditAccount: "dst", Amount: 1, Code: 1}}
	}
	want(t, "too many ops", h.do(1, opsCmd(op("a"), op("b"), op("c"), op("d"))), CodeBadCommand)
	h.seq++
	rs := h.run(
		req(1, h.seq, opsCmd(op("a"), op("b"), op("c"))),
		req(1, h.seq+1, opsCmd(op("d"), op("e"))),
		req(1, h.seq+2, xferCmd(*op("f").Transfer)),
		req(1, h.seq+3, xferCmd(*op("g").Transfer)),
	)
	h.seq += 3
	want(t, "fits", rs[0], CodeOK, 6, 7, 8)
	want(t, "full", rs[1], CodeBatchFull)
	want(t, "last room", rs[2], CodeOK, 9)
	want(t, "no room", rs[3], CodeBatchFull)
	want(t, "next batch", h.do(1, opsCmd(op("d"), op("e"))), CodeOK, 10, 11)
}

// TestRebuild replays a log's events into a fresh state and requires the
// ledger state byte for byte.
func TestRebuild(t *testing.T) {
	h := newLedgerHarness(t, Config{ExpiriesPerBatchMax: 1})
	openAccounts(t, h)
	h.do(1, xferCmd(TransferCommand{ID: "fund", DebitAccount: "src", CreditAccount: "cash", Amount: 100, Code: 1}))
	h.do(1, xferCmd(TransferCommand{ID: "P1", DebitAccount: "cash", CreditAccount: "dst", Amount: 10, Code: 1, Pending: true, TimeoutMs: 1}))
	h.do(1, xferCmd(TransferCommand{ID: "P2", DebitAccount: "cash", CreditAccount: "dst", Amount: 20, Code: 1, Pending: true, TimeoutMs: 1}))
	h.do(1, xferCmd(TransferCommand{ID: "P3", DebitAccount: "cash", CreditAccount: "dst", Amount: 30, Code: 1, Pending: true, TimeoutMs: 1e9}))
	h.do(1, xferCmd(TransferCommand{ID: "P4", DebitAccount: "cash", CreditAccount: "dst", Amount: 5, Code: 1, Pending: true}))
	h.do(1, postCmd("S3", "P3", 7))
	h.do(1, voidCmd("V4", "P4"))
	h.do(1, appendCmd("other", ExpectedAny, ev(1)))
	// P2 is past its deadline but left for a later batch by the limit of 1,
	// so the state holds an overdue expiry key.
	got := rebuildAndCompare(t, h.harness)
	if got < 3 {
		t.Fatalf("only %d ledger keys compared", got)
	}
}

// rebuildAndCompare rebuilds h's ledger state from its events into a fresh
// log that also holds h's other state keys, and compares the two states key
// by key, byte for byte. (Their state digests differ: the digest chains the
// writes, and a rebuild writes in another order.) It returns how many ledger
// keys it compared.
func rebuildAndCompare(t tb, h *harness) int {
	t.Helper()
	var evs []eventlog.Event
	for from := uint64(0); ; {
		page, next, err := h.log.ReadAll(from, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		evs, from = append(evs, page...), next
	}
	orig := stateKeys(t, h)
	fresh := newHarness(t, DefaultConfig())
	_, err := fresh.log.Apply(eventlog.EntryHeader{Seq: 1}, func(tx *eventlog.Tx) ([][]byte, error) {
		for _, kv := range orig {
			if kv.key[0] != keyLedger {
				if err := tx.Set(kv.key, kv.value); err != nil {
					return nil, err
				}
			}
		}
		// In two calls, as a long log would be rebuilt a page at a time.
		half := len(evs) / 2
		if err := Rebuild(tx, evs[:half]); err != nil {
			return nil, err
		}
		return nil, Rebuild(tx, evs[half:])
	})
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := stateKeys(t, fresh)
	ledgerKeys := 0
	for i := 0; i < max(len(orig), len(rebuilt)); i++ {
		if i >= len(orig) || i >= len(rebuilt) || !bytes.Equal(orig[i].key, rebuilt[i].key) || !bytes.Equal(orig[i].value, rebuilt[i].value) {
			var o, r keyValue
			if i < len(orig) {
				o = orig[i]
			}
			if i < len(rebuilt) {
				r = rebuilt[i]
			}
			t.Fatalf("state key %d: executed %q=%x, rebuilt %q=%x", i, o.key, o.value, r.key, r.value)
		}
		if orig[i].key[0] == keyLedger {
			ledgerKeys++
		}
	}
	return ledgerKeys
}

type keyValue struct{ key, value []byte }

// stateKeys reads the whole replicated state of h's log, in key order.
func stateKeys(t tb, h *harness) []keyValue {
	t.Helper()
	var out []keyValue
	seq, _ := h.log.Applied()
	_, err := h.log.Apply(eventlog.EntryHeader{Seq: seq + 1}, func(tx *eventlog.Tx) ([][]byte, error) {
		for _, prefix := range []byte{keyClient, keyLedger, keyResult} {
			from := []byte{prefix}
			for {
				keys, err := tx.CommittedKeys([]byte{prefix}, from, 100)
				if err != nil {
					return nil, err
				}
				for _, k := range keys {
					v, _, err := tx.Get(k)
					if err != nil {
						return nil, err
					}
					out = append(out, keyValue{k, v})
				}
				if len(keys) < 100 {
					break
				}
				from = append(bytes.Clone(keys[len(keys)-1]), 0)
			}
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
