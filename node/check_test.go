package node

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// certified builds a batch and a genuine commit certificate for it at seq,
// signed by the given replicas.
func certified(t *testing.T, keys []crypto.PrivateKey, chain crypto.Digest, seq uint64, signers []int) ([][]byte, *pbft.Certificate) {
	t.Helper()
	client, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{0x77}, crypto.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	batch := [][]byte{pbft.SignRequest(crypto.NewSigner(client, chain), seq, []byte("cmd"))}
	const ts = 1_700_000_000_000_000_000
	cert := &pbft.Certificate{View: 0, Seq: seq, Digest: pbft.BatchDigest(ts, batch), Timestamp: ts}
	for _, i := range signers {
		env := pbft.Seal(crypto.NewSigner(keys[i], chain), pbft.KindCommit, &pbft.Commit{View: 0, Seq: seq, Digest: cert.Digest, Replica: uint32(i)})
		cert.Commits = append(cert.Commits, *env)
	}
	return batch, cert
}

// A replica catching up trusts no single peer: every fetched entry must carry
// 2f+1 valid COMMITs for exactly the next seq, and its batch must hash to the
// certified digest.
func TestFetchedEntriesAreChecked(t *testing.T) {
	var keys []crypto.PrivateKey
	var pubs []crypto.PublicKey
	for i := 0; i < 4; i++ {
		k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, crypto.SeedSize))
		if err != nil {
			t.Fatal(err)
		}
		keys, pubs = append(keys, k), append(pubs, k.Public())
	}
	chain := crypto.Hash([]byte("chain"))

	batch, cert := certified(t, keys, chain, 7, []int{0, 1, 2})
	if err := checkCommitted(cert, batch, 7, pubs, chain); err != nil {
		t.Fatalf("a genuine entry was refused: %v", err)
	}

	tooFew := *cert
	tooFew.Commits = cert.Commits[:2]
	otherBatch := [][]byte{append([]byte(nil), batch[0]...)}
	otherBatch[0][len(otherBatch[0])-1] ^= 1
	stale, staleCert := certified(t, keys, chain, 6, []int{0, 1, 2})
	forged := *cert
	forged.Commits = append([]pbft.Envelope(nil), cert.Commits...)
	forged.Commits[1].Sig = append([]byte(nil), forged.Commits[1].Sig...)
	forged.Commits[1].Sig[0] ^= 1
	otherChain := crypto.Hash([]byte("another chain"))
	_, foreign := certified(t, keys, otherChain, 7, []int{0, 1, 2})
	twice := *cert
	twice.Commits = []pbft.Envelope{cert.Commits[0], cert.Commits[0], cert.Commits[1]}

	cases := []struct {
		name  string
		cert  *pbft.Certificate
		batch [][]byte
		want  string
	}{
		{"too few commits", &tooFew, batch, "need 3"},
		{"batch swapped under the certificate", cert, otherBatch, "does not match"},
		{"stale entry for an earlier seq", staleCert, stale, "is for seq 6"},
		{"forged signature", &forged, batch, "bad signature"},
		{"certificate from another chain", foreign, batch, "bad signature"},
		{"one replica counted twice", &twice, batch, "counted twice"},
	}
	for _, tc := range cases {
		err := checkCommitted(tc.cert, tc.batch, 7, pubs, chain)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
