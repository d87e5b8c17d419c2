package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordoledger/ordo/ledger"
)

// A client's burst of appends of many tiny events, one batch's worth of
// bytes, used to make a batch too big for a badger transaction and halt
// every replica. Now what does not fit is refused with batch_full, the
// client signs it again under a new seq, and every event lands on every node.
func TestClusterTakesABatchOfTinyEvents(t *testing.T) {
	c := newTestCluster(t, 4, func(p *Params) { p.BatchDelayMs = 1000 })
	cl := c.newClient(0, 1, 2, 3)
	// 22 appends are 66,022 writes, past the budget of 65,536; -short (with
	// -race in CI) stops there, the full test sends a whole batch's bytes.
	appends, perAppend := 60, 1000
	if testing.Short() {
		appends = 22
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	full := 0
	for i := range appends {
		evs := make([]ledger.EventData, perAppend)
		for j := range evs {
			evs[j].ID[0] = 0x30
			binary.BigEndian.PutUint64(evs[j].ID[8:], uint64(i*perAppend+j))
			evs[j].Type = "t"
		}
		cmd := ledger.Command{Append: &ledger.AppendCommand{Stream: fmt.Sprintf("tiny-%d", i%4), ExpectedVersion: ledger.ExpectedAny, Events: evs}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The client signs a batch_full command again by itself.
			r, err := cl.Submit(ctx, cmd)
			if err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
			if r.Result.Code != ledger.CodeOK {
				t.Errorf("append %d after %d resubmits: %s %q", i, r.Resubmits, r.Result.Code, r.Result.Message)
			}
			mu.Lock()
			full += r.Resubmits
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seq, _ := c.converged(30 * time.Second)
	for i, nd := range c.nodes {
		if st := nd.statusJSON(); st.Halted != "" {
			t.Fatalf("node %d halted: %s", i, st.Halted)
		}
		e, err := nd.store.Entry(seq)
		if err != nil {
			t.Fatal(err)
		}
		if last := e.FirstPosition + e.EventCount - 1; last != uint64(appends*perAppend) {
			t.Fatalf("node %d ends at position %d, want %d", i, last, appends*perAppend)
		}
	}
	// Sixty of them arrive within the batch delay and cannot fit one batch's
	// budget; the 22 of -short (slower under -race) may spread over batches
	// that each fit.
	if !testing.Short() && full == 0 {
		t.Fatalf("no append was refused as batch_full in %d entries", seq)
	}
	t.Logf("%d appends refused as batch_full and resubmitted; %d entries", full, seq)
}
