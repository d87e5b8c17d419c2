package node

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/pbft"
)

func TestReplyTracker(t *testing.T) {
	signers := make([]*crypto.Signer, 4)
	for i := range signers {
		k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, crypto.SeedSize))
		if err != nil {
			t.Fatal(err)
		}
		signers[i] = crypto.NewSigner(k, crypto.Hash([]byte("c")))
	}
	executed := func(r uint32, seq uint64, root crypto.Digest) (*pbft.Executed, *pbft.Envelope) {
		ex := &pbft.Executed{Seq: seq, ResultsRoot: root, Replica: r}
		return ex, pbft.Seal(signers[r], pbft.KindExecuted, ex)
	}
	tr := newReplyTracker(2, 0)
	req := []byte("request")
	results := [][]byte{[]byte("result")}
	root := crypto.MerkleRoot(results)
	w := tr.register(crypto.Hash(req))

	// Another replica's EXECUTED arrives first, for a different root: a lie.
	tr.addExecuted(executed(1, 1, crypto.Hash([]byte("other root"))))
	_, own := executed(0, 1, root)
	tr.executedLocal(&eventlog.Entry{Seq: 1, Requests: [][]byte{req}, Results: results, ResultsRoot: root}, own)
	// A duplicate from replica 1, now with the right root, is ignored: first wins.
	tr.addExecuted(executed(1, 1, root))
	select {
	case b := <-w.ch:
		t.Fatalf("bundle with only one matching EXECUTED: %+v", b)
	default:
	}
	tr.addExecuted(executed(2, 1, root))
	b := <-w.ch
	if b.EntrySeq != 1 || len(b.Executed) != 2 || !bytes.Equal(b.Result, results[0]) {
		t.Fatalf("bundle %+v", b)
	}
	if err := crypto.VerifyInclusion(b.Result, b.ResultIndex, b.ResultCount, b.Proof, root); err != nil {
		t.Fatal(err)
	}

	// A retry of the executed request, the same bytes through this node
	// again, is answered at once from the seq that executed it: the core
	// does not propose it again.
	again := tr.register(crypto.Hash(req))
	select {
	case b := <-again.ch:
		if b.EntrySeq != 1 || len(b.Executed) != 2 || !bytes.Equal(b.Result, results[0]) {
			t.Fatalf("retry's bundle %+v", b)
		}
	default:
		t.Fatal("a retry of an executed request waits for a seq that will not come")
	}

	// Seqs without requests: kept until executedKeepSeqs+RecentDeliveredMax
	// behind, as the core still ignores seq 1's request.
	top := uint64(executedKeepSeqs + pbft.RecentDeliveredMax)
	for s := uint64(2); s <= top; s++ {
		_, env := executed(0, s, root)
		tr.executedLocal(&eventlog.Entry{Seq: s, ResultsRoot: root}, env)
	}
	if _, ok := tr.seqs[1]; !ok {
		t.Fatal("forgot a seq whose request the core still ignores")
	}
	_, env := executed(0, top+1, root)
	tr.executedLocal(&eventlog.Entry{Seq: top + 1, ResultsRoot: root}, env)
	if len(tr.seqs) > executedKeepSeqs+pbft.RecentDeliveredMax {
		t.Fatalf("%d seqs kept, bound %d", len(tr.seqs), executedKeepSeqs+pbft.RecentDeliveredMax)
	}
	if _, ok := tr.seqs[1]; ok {
		t.Fatal("kept a seq past the bound")
	}
	// Now nothing answers a retry of it until a seq executes it again.
	late := tr.register(crypto.Hash(req))
	select {
	case b := <-late.ch:
		t.Fatalf("answered from a forgotten seq: %+v", b)
	default:
	}

	// With a request in each seq, seqs go once executedKeepSeqs behind and
	// RecentDeliveredMax requests after them.
	base := top + 1
	for s := base + 1; s <= base+2*pbft.RecentDeliveredMax; s++ {
		_, env := executed(0, s, root)
		r := []byte(fmt.Sprintf("request %d", s))
		tr.executedLocal(&eventlog.Entry{Seq: s, Requests: [][]byte{r}, Results: results, ResultsRoot: root}, env)
	}
	if want := max(executedKeepSeqs, pbft.RecentDeliveredMax); len(tr.seqs) != want || len(tr.executedAt) != want {
		t.Fatalf("%d seqs and %d requests kept, want %d", len(tr.seqs), len(tr.executedAt), want)
	}
	// With eight requests a seq, seqs go once executedKeepSeqs behind, and
	// the index holds the latest RecentDeliveredMax requests.
	base = base + 2*pbft.RecentDeliveredMax
	eight := make([][]byte, 8)
	for s := base + 1; s <= base+2*executedKeepSeqs; s++ {
		_, env := executed(0, s, root)
		for i := range eight {
			eight[i] = []byte(fmt.Sprintf("request %d.%d", s, i))
		}
		tr.executedLocal(&eventlog.Entry{Seq: s, Requests: eight, Results: slices.Repeat(results, 8), ResultsRoot: root}, env)
	}
	if len(tr.seqs) != executedKeepSeqs || len(tr.executedAt) != pbft.RecentDeliveredMax {
		t.Fatalf("%d seqs and %d requests kept, want %d and %d", len(tr.seqs), len(tr.executedAt), executedKeepSeqs, pbft.RecentDeliveredMax)
	}
	// Too old or too far ahead: not kept.
	tr.addExecuted(executed(1, 5, root))
	tr.addExecuted(executed(1, 10*top, root))
	if _, ok := tr.seqs[5]; ok {
		t.Fatal("kept an EXECUTED below the window")
	}
	if _, ok := tr.seqs[10*top]; ok {
		t.Fatal("kept an EXECUTED far above the window")
	}
}
