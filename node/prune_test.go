package node

import (
	"slices"
	"testing"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// One round deletes at most pruneDeletesMax envelopes; the next rounds carry
// on at once until none are left, and only then are passes paced again.
func TestPruneIsBounded(t *testing.T) {
	const extra = 5
	n := &Node{keys: make([]crypto.PublicKey, 4), persisted: map[string]*pbft.Envelope{}}
	n.status.Store(&pbft.Status{})
	// Envelopes that do not open are released at once.
	garbage := func() *pbft.Envelope { return &pbft.Envelope{Kind: pbft.KindPrepare, Body: []byte{0xff}} }
	for i := range 2*pruneDeletesMax + extra {
		n.persisted[envKey(uint64(i))] = garbage()
	}
	var rounds []int
	for len(n.persisted) > 0 && len(rounds) < 10 {
		del := n.prunable(0)
		for _, k := range del {
			delete(n.persisted, k)
		}
		rounds = append(rounds, len(del))
	}
	if want := []int{pruneDeletesMax, pruneDeletesMax, extra}; !slices.Equal(rounds, want) {
		t.Fatalf("deletes per round %v, want %v", rounds, want)
	}
	n.persisted[envKey(1<<40)] = garbage()
	if del := n.prunable(0); len(del) != 0 {
		t.Fatalf("a pass right after the last one deleted %d envelopes; passes are paced by pruneInterval", len(del))
	}
}
