package node

import (
	"testing"

	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// A new primary fills gaps with null batches: an empty batch applies as an
// entry with no requests, at its log time.
func TestNullBatchApplies(t *testing.T) {
	store, err := eventlog.Open(eventlog.Options{InMemory: true, Genesis: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := ledger.NewMachine(ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cert := pbft.Certificate{Seq: 1, View: 1, Digest: pbft.BatchDigest(0, nil)}
	e, err := applyBatch(store, m, &cert, nil, 5)
	if err != nil {
		t.Fatalf("null batch: %v", err)
	}
	if e.Seq != 1 || len(e.Requests) != 0 || e.Timestamp != 5 || e.EventCount != 0 {
		t.Fatalf("entry %+v", e)
	}
}
