package client

import (
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// benchBatchSize is the requests per batch ordo bench sees at 64 clients
// (ordo_requests_executed_total / ordo_batches_executed_total, BENCHMARKS.md).
const benchBatchSize = 21

// batchBundle is the bundle of req as a gateway sends it under ordo bench:
// one of benchBatchSize one-event appends, vouched for by f+1 replicas.
func (tn *testNet) batchBundle(tb testing.TB, req []byte) *pbft.ReplyBundle {
	tb.Helper()
	const index = benchBatchSize / 2
	leaves := make([][]byte, benchBatchSize)
	for i := range leaves {
		r := ledger.Result{RequestHash: crypto.Hash([]byte{byte(i)}), Code: ledger.CodeOK, Positions: []uint64{uint64(1000 + i)}, StreamVersion: 1, EntrySeq: testEntrySeq}
		if i == index {
			r.RequestHash = crypto.Hash(req)
		}
		leaves[i] = codec.MustMarshal(&r)
	}
	proof, err := crypto.InclusionProof(leaves, index)
	if err != nil {
		tb.Fatal(err)
	}
	root := crypto.MerkleRoot(leaves)
	return &pbft.ReplyBundle{
		EntrySeq: testEntrySeq, Result: leaves[index], ResultIndex: index, ResultCount: benchBatchSize, Proof: proof,
		Executed: [][]byte{tn.executed(0, 0, testEntrySeq, root), tn.executed(2, 2, testEntrySeq, root)},
	}
}

// BenchmarkVerifyBundle is the client's work on one reply bundle under ordo
// bench, as JSON (a node of an older build) and as CBOR: decode the body and
// check it, with a statement cache that already holds the batch's statements
// (every request of a batch after the first).
func BenchmarkVerifyBundle(b *testing.B) {
	tn := newTestNet(b, 4)
	req := pbft.SignRequest(crypto.NewSigner(tn.client, tn.chain), 1, []byte("cmd"))
	bundle := tn.batchBundle(b, req)
	for _, f := range wireFormats() {
		b.Run(f.name, func(b *testing.B) {
			body := f.encode(b, bundle)
			checker := tn.checker(NewStatementCache())
			if _, err := checker.verifyBundle(f.contentType, body, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := checker.verifyBundle(f.contentType, body, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
