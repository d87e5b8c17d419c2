package cqrs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/eventlog"
)

// ledgerEvents applies events to the balances projection over a memTx.
type ledgerEvents struct {
	t   *testing.T
	tx  *memTx
	pos uint64
}

func (l *ledgerEvents) apply(stream, typ, data string) error {
	l.pos++
	e := &eventlog.Event{Position: l.pos, Stream: stream, Type: typ, ContentType: contentJSON, Data: []byte(data)}
	p := balancesProjection{}
	if !p.Wants(e) {
		return fmt.Errorf("not wanted")
	}
	return p.Apply(l.tx, e)
}

func (l *ledgerEvents) must(stream, typ, data string) {
	l.t.Helper()
	if err := l.apply(stream, typ, data); err != nil {
		l.t.Fatalf("%s %s: %v", stream, typ, err)
	}
}

func (l *ledgerEvents) account(id string) string {
	l.t.Helper()
	return string(l.tx.rows[id])
}

func account(id string, code int) (string, string, string) {
	return "account-" + id, "AccountCreated", fmt.Sprintf(`{"id":%q,"code":%d,"owner_key":"ab","flags":["debits_must_not_exceed_credits"]}`, id, code)
}

func transfer(id, debit, credit string, amount uint64, pending bool) (string, string, string) {
	return "transfer-" + id, "TransferCreated", fmt.Sprintf(`{"id":%q,"debit_account":%q,"credit_account":%q,"amount":%d,"code":7,"pending":%t,"timeout_ms":1000}`,
		id, debit, credit, amount, pending)
}

func resolve(typ, id, debit, credit string, amount uint64) (string, string, string) {
	return "transfer-" + id, typ, fmt.Sprintf(`{"pending_id":%q,"amount":%d,"debit_account":%q,"credit_account":%q}`, id, amount, debit, credit)
}

func TestBalances(t *testing.T) {
	l := &ledgerEvents{t: t, tx: newMemTx()}
	l.must(account("A", 1))
	l.must(account("B", 2))
	if got := l.account("A"); got != `{"account":"A","code":1,"debits_posted":0,"credits_posted":0,"debits_pending":0,"credits_pending":0,"balance":0,"last_transfer":""}` {
		t.Errorf("new account: %s", got)
	}
	l.must(transfer("T1", "A", "B", 100, false))
	l.must(transfer("T2", "B", "A", 30, true))
	l.must(transfer("T3", "A", "B", 5, true))
	if got := l.account("A"); got != `{"account":"A","code":1,"debits_posted":100,"credits_posted":0,"debits_pending":5,"credits_pending":30,"balance":-100,"last_transfer":"T3"}` {
		t.Errorf("A after transfers: %s", got)
	}
	// Posting 20 of 30 releases all 30 and posts 20.
	l.must(resolve("PendingPosted", "T2", "B", "A", 20))
	l.must(resolve("PendingVoided", "T3", "A", "B", 5))
	if got := l.account("A"); got != `{"account":"A","code":1,"debits_posted":100,"credits_posted":20,"debits_pending":0,"credits_pending":0,"balance":-80,"last_transfer":"T3"}` {
		t.Errorf("A after post and void: %s", got)
	}
	if got := l.account("B"); got != `{"account":"B","code":2,"debits_posted":20,"credits_posted":100,"debits_pending":0,"credits_pending":0,"balance":80,"last_transfer":"T3"}` {
		t.Errorf("B after post and void: %s", got)
	}
	l.must(transfer("T4", "A", "B", 9, true))
	l.must(resolve("PendingExpired", "T4", "A", "B", 9))
	if len(l.tx.state) != 0 {
		t.Errorf("reservations left: %v", l.tx.state)
	}

	for _, c := range []struct {
		name              string
		stream, typ, data string
		wantErr           string
	}{
		{"unknown account", "transfer-T5", "TransferCreated", `{"id":"T5","debit_account":"A","credit_account":"Z","amount":1}`, `account "Z" does not exist`},
		{"account twice", "account-A", "AccountCreated", `{"id":"A","code":1}`, "created twice"},
		{"wrong stream", "account-X", "AccountCreated", `{"id":"A","code":1}`, "on stream"},
		{"resolved twice", "transfer-T2", "PendingVoided", `{"pending_id":"T2","amount":1,"debit_account":"B","credit_account":"A"}`, "unknown or already resolved"},
		{"bad data", "transfer-T6", "TransferCreated", `{"id":"T6","amount":-1}`, "data:"},
		{"overflow", "transfer-T7", "TransferCreated", `{"id":"T7","debit_account":"A","credit_account":"B","amount":18446744073709551615}`, "overflows"},
	} {
		err := l.apply(c.stream, c.typ, c.data)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.wantErr)
		}
	}

	// Posting more than was reserved is refused.
	l.must(transfer("T8", "A", "B", 10, true))
	if err := l.apply(resolve("PendingPosted", "T8", "A", "B", 11)); err == nil || !strings.Contains(err.Error(), "posts 11 of 10") {
		t.Errorf("over-posting: %v", err)
	}
	// A transfer between an account and itself moves nothing but counts both ways.
	l.must(transfer("T9", "B", "B", 3, false))
	if got := l.account("B"); !strings.Contains(got, `"debits_posted":23,"credits_posted":103`) {
		t.Errorf("self transfer: %s", got)
	}
}

func TestBalanceBeyondInt64(t *testing.T) {
	l := &ledgerEvents{t: t, tx: newMemTx()}
	l.must(account("A", 1))
	l.must(account("B", 1))
	l.must(transfer("T1", "A", "B", 1<<63+5, false))
	if got := l.account("A"); !strings.Contains(got, `"balance":-9223372036854775813`) {
		t.Errorf("A: %s", got)
	}
	if got := l.account("B"); !strings.Contains(got, `"balance":9223372036854775813`) {
		t.Errorf("B: %s", got)
	}
}

// TestBalancesOverflowStopsVisibly: in the engine, an overflow stops the
// balances projection at that event; the others carry on.
func TestBalancesOverflowStopsVisibly(t *testing.T) {
	tl := newTestLog(t)
	e := openEngine(t, tl, Options{})
	e.Start()
	for _, id := range []string{"A", "B"} {
		s, typ, d := account(id, 1)
		tl.append(s, ev{typ, d, false})
	}
	s, typ, d := transfer("T1", "A", "B", 1<<63, false)
	tl.append(s, ev{typ, d, false})
	s, typ, d = transfer("T2", "A", "B", 1<<63, false)
	bad := tl.append(s, ev{typ, d, false})[0]
	tl.append("other", ev{"X", `{}`, false})
	waitAt(t, e, StreamsProjection, tl.last())
	waitState(t, e, BalancesProjection, "failure", func(s runnerState) bool { return s.active.failure != nil })
	st := statusOf(e, BalancesProjection)
	if st.Status != StatusFailed || st.FailedPosition != bad || st.Position != bad-1 || !strings.Contains(st.Error, "overflows") {
		t.Errorf("balances after an overflow: %+v", st)
	}
}
