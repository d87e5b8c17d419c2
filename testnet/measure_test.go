package testnet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/node"
)

// The measurements of the issue notes. They take minutes, so they run only
// with ORDO_MEASURE=1:
//
//	ORDO_MEASURE=1 go test -run TestMeasure -v -timeout 30m ./testnet/
func measuring(t *testing.T) {
	if os.Getenv("ORDO_MEASURE") == "" {
		t.Skip("a measurement, minutes long: set ORDO_MEASURE=1")
	}
}

// TestMeasureViewChange kills the current primary with SIGKILL ten times and
// times each first commit in the new view, as a client sees it.
func TestMeasureViewChange(t *testing.T) {
	measuring(t)
	const trials = 10
	e := upNetwork(t)
	e.appendEvent(0, "m", 0)
	var took []time.Duration
	for trial := 1; trial <= trials; trial++ {
		st := e.converged(4, 60*time.Second)
		var primary struct {
			Primary int `json:"primary"`
		}
		out, err := e.ordoCmd("status", "--node", e.api(0))
		if err != nil || json.Unmarshal(out, &primary) != nil {
			t.Fatalf("status: %v", err)
		}
		others := slices.DeleteFunc([]int{0, 1, 2, 3}, func(i int) bool { return i == primary.Primary })
		e.script("kill", fmt.Sprint(primary.Primary))
		t0 := time.Now()
		e.appendVia(others, "m", trial)
		took = append(took, time.Since(t0))
		e.script("start", fmt.Sprint(primary.Primary))
		t.Logf("trial %d: primary %d killed at view %d, first commit after %v", trial, primary.Primary, st.View, took[len(took)-1])
	}
	slices.Sort(took)
	t.Logf("primary crash → first commit in the new view: median %v, min %v, max %v over %d trials", took[len(took)/2], took[0], took[len(took)-1], trials)
}

// TestMeasureWipeCatchUp fills the log with 10,000 entries, wipes one node's
// data and times its rebuild from its peers.
func TestMeasureWipeCatchUp(t *testing.T) {
	measuring(t)
	const entries = 10000
	e := upNetwork(t)
	g, err := node.LoadGenesis(filepath.Join(e.dir, "genesis.json"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.ReadKeyFile(filepath.Join(e.dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	// Few concurrent clients keep batches small, so the log gets many entries.
	const writers = 4
	var done atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		cl, err := client.New(client.Config{Nodes: []string{e.api(w)}, Key: key, Chain: g.Hash(), Validators: g.Keys()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !done.Load(); i++ {
				var id [16]byte
				copy(id[:], fmt.Sprintf("w%d-%013d", w, i))
				cmd := ledger.Command{Append: &ledger.AppendCommand{Stream: fmt.Sprintf("fill-%d", w), ExpectedVersion: ledger.ExpectedAny,
					Events: []ledger.EventData{{ID: id, Type: "fill", ContentType: ledger.ContentJSON, Data: []byte(`{"pad":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`)}}}}
				if _, err := cl.Submit(context.Background(), cmd); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	fillStart := time.Now()
	for {
		st, err := e.status(0)
		if err == nil && st.ExecutedSeq >= entries {
			break
		}
		if time.Since(fillStart) > 15*time.Minute {
			t.Fatalf("the log did not reach %d entries in 15 minutes", entries)
		}
		time.Sleep(200 * time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
	target := e.converged(4, 60*time.Second)
	t.Logf("filled %d entries in %v", target.ExecutedSeq, time.Since(fillStart))

	e.script("wipe", "3")
	t0 := time.Now()
	e.script("start", "3")
	for {
		st, err := e.status(3)
		if err == nil && st.ExecutedSeq >= target.ExecutedSeq {
			if st.HeadHash != target.HeadHash {
				t.Fatalf("rebuilt node has head %s, the others %s", st.HeadHash, target.HeadHash)
			}
			break
		}
		if time.Since(t0) > 15*time.Minute {
			t.Fatalf("the wiped node did not catch up in 15 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("wiped node rebuilt %d entries from its peers in %v (process start included)", target.ExecutedSeq, time.Since(t0))
}
