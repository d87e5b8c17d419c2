package node

import (
	"bytes"
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

	// Memory stays bounded: only the last executedKeepSeqs seqs are kept.
	for s := uint64(2); s <= 3*executedKeepSeqs; s++ {
		_, env := executed(0, s, root)
		tr.executedLocal(&eventlog.Entry{Seq: s, ResultsRoot: root}, env)
	}
	if len(tr.seqs) > executedKeepSeqs {
		t.Fatalf("%d seqs kept, bound %d", len(tr.seqs), executedKeepSeqs)
	}
	// Too old or too far ahead: not kept.
	tr.addExecuted(executed(1, 5, root))
	tr.addExecuted(executed(1, 10*executedKeepSeqs, root))
	if _, ok := tr.seqs[5]; ok {
		t.Fatal("kept an EXECUTED below the window")
	}
	if _, ok := tr.seqs[10*executedKeepSeqs]; ok {
		t.Fatal("kept an EXECUTED far above the window")
	}
}
