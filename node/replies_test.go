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
	keys := make([]crypto.PublicKey, len(signers))
	for i, sg := range signers {
		keys[i] = sg.Public()
	}
	var bad int
	tr := newReplyTracker(2, 0, crypto.Hash([]byte("c")), keys, func() { bad++ })
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
	if bad != 0 {
		t.Fatalf("%d bad signatures counted among good ones", bad)
	}
	if err := crypto.VerifyInclusion(b.Result, b.ResultIndex, b.ResultCount, b.Proof, root); err != nil {
		t.Fatal(err)
	}

	// A forged EXECUTED (replica 2's, with replica 1's signature) is not
	// checked while no bundle needs it; when one does, it is refused and
	// counted, the bundle waits for a good one, and carries only as many
	// statements as it needs.
	req2 := []byte("request 2")
	w2 := tr.register(crypto.Hash(req2))
	ex, _ := executed(2, 9, root)
	tr.addExecuted(ex, pbft.Seal(signers[1], pbft.KindExecuted, ex))
	tr.addExecuted(executed(2, 9, root)) // replica 2's real one comes too late: first wins
	if bad != 0 {
		t.Fatal("a signature was checked before a bundle needed it")
	}
	_, own9 := executed(0, 9, root)
	tr.executedLocal(&eventlog.Entry{Seq: 9, Requests: [][]byte{req2}, Results: results, ResultsRoot: root}, own9)
	if bad != 1 {
		t.Fatalf("%d bad signatures counted, want the forgery's one", bad)
	}
	select {
	case b := <-w2.ch:
		t.Fatalf("bundle with a forged statement: %+v", b)
	default:
	}
	tr.addExecuted(executed(3, 9, root))
	b = <-w2.ch
	if len(b.Executed) != 2 || bad != 1 {
		t.Fatalf("bundle of %d statements, %d bad signatures counted", len(b.Executed), bad)
	}
	for _, raw := range b.Executed {
		env, err := pbft.DecodeEnvelope(raw)
		if err != nil {
			t.Fatal(err)
		}
		m, err := env.Open(len(keys))
		if err != nil {
			t.Fatal(err)
		}
		if good := crypto.Verify(keys[m.From], env.Kind.String(), crypto.Hash([]byte("c")), env.Body, env.Sig); m.From == 2 || !good {
			t.Fatalf("bundle carries replica %d's statement, signature good: %v", m.From, good)
		}
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
