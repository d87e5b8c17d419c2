package cqrs

import (
	"fmt"
	"math/rand/v2"
)

// ordersSpec is a declarative projection over the workload's orders.
var ordersSpec = Spec{
	Name: "orders-by-customer", Version: 1, StreamPrefix: "order-", EventTypes: []string{"OrderPlaced"},
	Key: "/customer",
	Reduce: []Reduce{
		{Op: OpCount, As: "orders"},
		{Op: OpSum, Field: "/total", As: "total"},
		{Op: OpLast, Field: "/status", As: "status"},
		{Op: OpMin, Field: "/total", As: "min_total"},
		{Op: OpMax, Field: "/total", As: "max_total"},
		{Op: OpSet, Field: "/sku", As: "skus"},
	},
}

// workload appends a deterministic mix of order events and consistent ledger
// events: accounts, posted and pending transfers, posts, voids and expiries.
type workload struct {
	l        *testLog
	rng      *rand.Rand
	accounts int
	pending  []string
	next     int
}

func newWorkload(l *testLog, seed uint64) *workload {
	return &workload{l: l, rng: rand.New(rand.NewPCG(seed, 7))}
}

// run appends n entries.
func (w *workload) run(n int) {
	for range n {
		w.next++
		switch k := w.rng.IntN(10); {
		case w.accounts < 2 || k == 0:
			id := fmt.Sprintf("a%d", w.accounts)
			w.accounts++
			w.l.append("account-"+id, ev{"AccountCreated", fmt.Sprintf(`{"id":%q,"code":%d,"owner_key":"00","flags":[]}`, id, 10+w.accounts%3), false})
		case k <= 2:
			id := fmt.Sprintf("t%d", w.next)
			debit, credit := w.twoAccounts()
			pending := w.rng.IntN(3) == 0
			if pending {
				w.pending = append(w.pending, id+" "+debit+" "+credit)
			}
			w.l.append("transfer-"+id, ev{"TransferCreated", fmt.Sprintf(`{"id":%q,"debit_account":%q,"credit_account":%q,"amount":%d,"code":1,"pending":%t,"timeout_ms":0}`,
				id, debit, credit, 1+w.rng.IntN(1000), pending), false})
		case k == 3 && len(w.pending) > 0:
			var id, debit, credit string
			fmt.Sscan(w.pending[0], &id, &debit, &credit)
			w.pending = w.pending[1:]
			typ := []string{"PendingPosted", "PendingVoided", "PendingExpired"}[w.rng.IntN(3)]
			w.l.append("transfer-"+id, ev{typ, fmt.Sprintf(`{"pending_id":%q,"amount":%d,"debit_account":%q,"credit_account":%q}`, id, w.rng.IntN(2), debit, credit), false})
		default:
			stream := fmt.Sprintf("order-%d", w.rng.IntN(40))
			evs := make([]ev, 1+w.rng.IntN(3))
			for i := range evs {
				evs[i] = ev{"OrderPlaced", fmt.Sprintf(`{"customer":"c%d","total":%d,"status":%q,"sku":"s%d"}`,
					w.rng.IntN(15), w.rng.IntN(500)-100, []string{"new", "paid"}[w.rng.IntN(2)], w.rng.IntN(6)), false}
				switch w.rng.IntN(10) {
				case 0:
					evs[i] = ev{"OrderPlaced", `{"total":5,"note":"no customer: skipped"}`, false}
				case 1:
					evs[i] = ev{"OrderNote", `{"customer":"c1","note":"not an OrderPlaced"}`, false}
				}
			}
			w.l.append(stream, evs...)
		}
	}
}

func (w *workload) twoAccounts() (string, string) {
	d := w.rng.IntN(w.accounts)
	c := (d + 1 + w.rng.IntN(w.accounts-1)) % w.accounts
	return fmt.Sprintf("a%d", d), fmt.Sprintf("a%d", c)
}
