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

// executedSealer returns a maker of replica r's signed EXECUTED statement for
// seq and root, among four replicas.
func executedSealer(t *testing.T) func(r uint32, seq uint64, root crypto.Digest) (*pbft.Executed, *pbft.Envelope) {
	t.Helper()
	signers := make([]*crypto.Signer, 4)
	for i := range signers {
		k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, crypto.SeedSize))
		if err != nil {
			t.Fatal(err)
		}
		signers[i] = crypto.NewSigner(k, crypto.Hash([]byte("c")))
	}
	return func(r uint32, seq uint64, root crypto.Digest) (*pbft.Executed, *pbft.Envelope) {
		ex := &pbft.Executed{Seq: seq, ResultsRoot: root, Replica: r}
		return ex, pbft.Seal(signers[r], pbft.KindExecuted, ex)
	}
}

func TestReplyTracker(t *testing.T) {
	executed := executedSealer(t)
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
	// Now the tracker cannot answer a retry of it. (Nor may anything else:
	// a seq more than the cap behind with the core still ignoring its
	// request takes that many seqs of almost no requests, null batches.)
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
	// A tracker whose first seq is far up the log (a restart) skips to the
	// cap instead of stepping through every seq below it (2^40 of them would
	// outlast the test's timeout).
	far := newReplyTracker(2, 0)
	_, env = executed(0, 1<<40, root)
	far.executedLocal(&eventlog.Entry{Seq: 1 << 40, Requests: [][]byte{req}, Results: results, ResultsRoot: root}, env)
	if want := uint64(1<<40 - executedKeepSeqs + 1); far.pruned != want || len(far.seqs) != 1 {
		t.Fatalf("pruned to %d with %d seqs, want %d with 1", far.pruned, len(far.seqs), want)
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

// The tracker against retries: answered with their own result in a batch of
// many; answered from a seq kept past executedKeepSeqs once its EXECUTED
// statements come late; not piling up when they give up on a seq that never
// completes; and a request executed again in later seqs neither counted twice
// nor forgotten before the core forgets it.
func TestReplyTrackerRetries(t *testing.T) {
	executed := executedSealer(t)
	localSeq := func(tr *replyTracker, seq uint64, reqs ...[]byte) crypto.Digest {
		results := make([][]byte, len(reqs))
		for i, r := range reqs {
			results[i] = append([]byte("result of "), r...)
		}
		root := crypto.MerkleRoot(results)
		_, own := executed(0, seq, root)
		tr.executedLocal(&eventlog.Entry{Seq: seq, Requests: reqs, Results: results, ResultsRoot: root}, own)
		return root
	}

	t.Run("its own result in a batch of many", func(t *testing.T) {
		tr := newReplyTracker(2, 0)
		reqs := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
		root := localSeq(tr, 1, reqs...)
		tr.addExecuted(executed(1, 1, root))
		b := <-tr.register(crypto.Hash(reqs[1])).ch
		if b.ResultIndex != 1 || !bytes.Equal(b.Result, []byte("result of b")) {
			t.Fatalf("retry of request 1 answered with result %d %q", b.ResultIndex, b.Result)
		}
		if err := crypto.VerifyInclusion(b.Result, b.ResultIndex, b.ResultCount, b.Proof, root); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("late statements for a seq kept past the window", func(t *testing.T) {
		tr := newReplyTracker(2, 0)
		a := []byte("a")
		root := localSeq(tr, 1, a)
		for s := uint64(2); s <= 2*executedKeepSeqs; s++ {
			localSeq(tr, s, []byte(fmt.Sprintf("r%d", s)))
		}
		w := tr.register(crypto.Hash(a))
		tr.addExecuted(executed(1, 1, root))
		select {
		case b := <-w.ch:
			if b.EntrySeq != 1 {
				t.Fatalf("bundle for seq %d", b.EntrySeq)
			}
		default:
			t.Fatal("an EXECUTED for a kept seq past executedKeepSeqs was refused")
		}
	})

	t.Run("retries that give up", func(t *testing.T) {
		tr := newReplyTracker(2, 0)
		a, b := []byte("a"), []byte("b")
		before := tr.register(crypto.Hash(b)) // waits from before b executes
		localSeq(tr, 1, a, b)                 // and no other replica vouches for seq 1
		for range 1000 {
			tr.cancel(tr.register(crypto.Hash(a)))
		}
		tr.cancel(before)
		if n := len(tr.seqs[1].waiting); n != 0 {
			t.Fatalf("%d waiters that gave up still wait on seq 1", n)
		}
	})

	t.Run("a request executed again", func(t *testing.T) {
		tr := newReplyTracker(2, 0)
		a, b := []byte("a"), []byte("b")
		root := localSeq(tr, 1, a)
		tr.addExecuted(executed(1, 1, root))
		// A primary may propose a copy of a delivered request in later
		// batches: the core counts it once among its delivered, so the
		// tracker must still know a, which the core still ignores.
		for s := uint64(2); s <= 1+pbft.RecentDeliveredMax; s++ {
			localSeq(tr, s, b)
		}
		if tr.executed != 2 {
			t.Fatalf("%d requests counted, 2 distinct executed", tr.executed)
		}
		select {
		case got := <-tr.register(crypto.Hash(a)).ch:
			if got.EntrySeq != 1 {
				t.Fatalf("answered from seq %d", got.EntrySeq)
			}
		default:
			t.Fatal("a retry of a request the core still ignores is not answered")
		}
	})
}
