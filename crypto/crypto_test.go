package crypto

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

func testKey(t testing.TB, b byte) PrivateKey {
	t.Helper()
	k, err := NewKeyFromSeed(bytes.Repeat([]byte{b}, SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerifyDomainSeparation(t *testing.T) {
	k := testKey(t, 1)
	chainA, chainB := Hash([]byte("a")), Hash([]byte("b"))
	s := NewSigner(k, chainA)
	sig := s.Sign("prepare", []byte("body"))
	if !Verify(k.Public(), "prepare", chainA, []byte("body"), sig) {
		t.Fatal("valid signature rejected")
	}
	if Verify(k.Public(), "commit", chainA, []byte("body"), sig) {
		t.Fatal("signature of one kind accepted as another")
	}
	if Verify(k.Public(), "prepare", chainB, []byte("body"), sig) {
		t.Fatal("signature accepted on another chain")
	}
	if Verify(k.Public(), "prepare", chainA, []byte("bodY"), sig) {
		t.Fatal("signature accepted over other bytes")
	}
	if Verify(testKey(t, 2).Public(), "prepare", chainA, []byte("body"), sig) {
		t.Fatal("signature accepted under another key")
	}
	if Verify(k.Public(), "prepare", chainA, []byte("body"), sig[:10]) {
		t.Fatal("short signature accepted")
	}
}

// TestSmallBatchesAgreeWithSingle covers the sizes around batchVerifyMin,
// where Verify switches between single checks and a batch equation, with a
// bad signature in every position.
func TestSmallBatchesAgreeWithSingle(t *testing.T) {
	chain := Hash([]byte("chain"))
	for size := 1; size <= batchVerifyMin+1; size++ {
		for bad := -1; bad < size; bad++ {
			bv := NewBatchVerifier(chain, size)
			for i := 0; i < size; i++ {
				k := testKey(t, byte(i+1))
				body := []byte(fmt.Sprintf("m%d", i))
				sig := NewSigner(k, chain).Sign("req", body)
				if i == bad {
					body = append(body, '!')
				}
				bv.Add(k.Public(), "req", body, sig)
			}
			all, valid := bv.Verify()
			if all != (bad < 0) || len(valid) != size {
				t.Fatalf("size %d, bad %d: all %v, %d answers", size, bad, all, len(valid))
			}
			for i, v := range valid {
				if v != (i != bad) {
					t.Fatalf("size %d, bad %d: entry %d judged %v", size, bad, i, v)
				}
			}
		}
	}
}

func TestBatchAgreesWithSingle(t *testing.T) {
	chain := Hash([]byte("chain"))
	bv := NewBatchVerifier(chain, 8)
	var want []bool
	for i := 0; i < 8; i++ {
		k := testKey(t, byte(i+1))
		body := []byte(fmt.Sprintf("m%d", i))
		sig := NewSigner(k, chain).Sign("req", body)
		switch i {
		case 3:
			sig[0] ^= 1
		case 5:
			sig = sig[:12]
		}
		want = append(want, Verify(k.Public(), "req", chain, body, sig))
		bv.Add(k.Public(), "req", body, sig)
	}
	all, valid := bv.Verify()
	if all {
		t.Fatal("batch with bad signatures reported all valid")
	}
	for i := range want {
		if valid[i] != want[i] {
			t.Fatalf("entry %d: batch says %v, single says %v", i, valid[i], want[i])
		}
	}
	if want[3] || want[5] || !want[0] {
		t.Fatalf("unexpected single results %v", want)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.key")
	k := testKey(t, 9)
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	back, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Public() != k.Public() {
		t.Fatal("read a different key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("{nope"), 0o600)
	if _, err := ReadKeyFile(bad); err == nil || !strings.Contains(err.Error(), "not a key file") {
		t.Fatalf("malformed key file: %v", err)
	}
	mismatch := filepath.Join(dir, "mismatch.key")
	os.WriteFile(mismatch, []byte(`{"type":"ed25519","public_key":"`+testKey(t, 3).Public().String()+`","private_key":"CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="}`), 0o600)
	if _, err := ReadKeyFile(mismatch); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key file: %v", err)
	}
}

// largestPowerOfTwoBelow returns the largest power of two strictly less than n (n ≥ 2).
func largestPowerOfTwoBelow(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// referencePath is RFC 6962 §2.1.1's audit path, from its recursive definition.
func referencePath(leaves [][]byte, index int) []Digest {
	if len(leaves) <= 1 {
		return nil
	}
	k := largestPowerOfTwoBelow(len(leaves))
	if index < k {
		return append(referencePath(leaves[:k], index), referenceRoot(leaves[k:]))
	}
	return append(referencePath(leaves[k:], index-k), referenceRoot(leaves[:k]))
}

// referenceRoot is RFC 6962 §2.1 written directly from its recursive definition.
func referenceRoot(leaves [][]byte) Digest {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := largestPowerOfTwoBelow(len(leaves))
	l, r := referenceRoot(leaves[:k]), referenceRoot(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func TestMerkleRootAndProofs(t *testing.T) {
	for n := 0; n <= 70; n++ {
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = []byte(fmt.Sprintf("leaf-%d", i))
		}
		root := MerkleRoot(leaves)
		if root != referenceRoot(leaves) {
			t.Fatalf("n=%d: root differs from the RFC 6962 definition", n)
		}
		tree := NewMerkleTree(leaves)
		if tree.Root() != root || tree.Size() != n {
			t.Fatalf("n=%d: tree root %v size %d, want %v %d", n, tree.Root(), tree.Size(), root, n)
		}
		if _, err := tree.Proof(n); err == nil {
			t.Fatalf("n=%d: proof for index %d given", n, n)
		}
		for i := 0; i < n; i++ {
			proof, err := InclusionProof(leaves, i)
			if err != nil {
				t.Fatal(err)
			}
			if want := referencePath(leaves, i); !slices.Equal(proof, want) {
				t.Fatalf("n=%d i=%d: path %v, RFC 6962 says %v", n, i, proof, want)
			}
			if err := VerifyInclusion(leaves[i], uint64(i), uint64(n), proof, root); err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			if err := VerifyInclusion([]byte("other"), uint64(i), uint64(n), proof, root); err == nil {
				t.Fatalf("n=%d i=%d: proof accepted for another leaf", n, i)
			}
			if n > 1 {
				if err := VerifyInclusion(leaves[i], uint64((i+1)%n), uint64(n), proof, root); err == nil {
					t.Fatalf("n=%d i=%d: proof accepted at another index", n, i)
				}
			}
		}
	}
}

func FuzzVerifyInclusion(f *testing.F) {
	f.Add([]byte("x"), uint64(0), uint64(1), []byte{})
	f.Fuzz(func(t *testing.T, leaf []byte, index, size uint64, proofBytes []byte) {
		var proof []Digest
		for len(proofBytes) >= DigestSize {
			var d Digest
			copy(d[:], proofBytes)
			proof = append(proof, d)
			proofBytes = proofBytes[DigestSize:]
		}
		_ = VerifyInclusion(leaf, index, size, proof, Hash(leaf))
	})
}

func BenchmarkVerifySingle(b *testing.B) {
	k := testKey(b, 1)
	chain := Hash([]byte("c"))
	body := bytes.Repeat([]byte{7}, 200)
	sig := NewSigner(k, chain).Sign("req", body)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !Verify(k.Public(), "req", chain, body, sig) {
			b.Fatal("rejected")
		}
	}
}

// signedByMany is one body signed by n keys on chain.
func signedByMany(b *testing.B, chain Digest, body []byte, n int) ([]PrivateKey, [][]byte) {
	b.Helper()
	keys := make([]PrivateKey, n)
	sigs := make([][]byte, n)
	for i := range keys {
		keys[i] = testKey(b, byte(i+1))
		sigs[i] = NewSigner(keys[i], chain).Sign("req", body)
	}
	return keys, sigs
}

func BenchmarkVerifyBatch64(b *testing.B) {
	chain := Hash([]byte("c"))
	body := bytes.Repeat([]byte{7}, 200)
	keys, sigs := signedByMany(b, chain, body, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bv := NewBatchVerifier(chain, 64)
		for j := range keys {
			bv.Add(keys[j].Public(), "req", body, sigs[j])
		}
		if all, _ := bv.Verify(); !all {
			b.Fatal("rejected")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/sig")
}

func BenchmarkMerkleRoot1000(b *testing.B) {
	leaves := make([][]byte, 1000)
	for i := range leaves {
		leaves[i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	for i := 0; i < b.N; i++ {
		MerkleRoot(leaves)
	}
}

// BenchmarkMerkleProofs1000 is what a gateway does for a batch of 1,000
// waiting requests: one tree, then every proof.
func BenchmarkMerkleProofs1000(b *testing.B) {
	leaves := make([][]byte, 1000)
	for i := range leaves {
		leaves[i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	for i := 0; i < b.N; i++ {
		tree := NewMerkleTree(leaves)
		for j := range leaves {
			if _, err := tree.Proof(j); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestWeakKeys(t *testing.T) {
	if testKey(t, 1).Public().Weak() {
		t.Fatal("a generated key is judged weak")
	}
	// The identity point (y = 1) has order 1; y = -1 has order 2; 0xff…7f is
	// not a valid encoding of a field element's point.
	identity := PublicKey{1}
	var order2 PublicKey
	order2[0] = 0xec
	for i := 1; i < 31; i++ {
		order2[i] = 0xff
	}
	order2[31] = 0x7f
	for name, k := range map[string]PublicKey{"identity": identity, "order 2": order2} {
		if !k.Weak() {
			t.Errorf("%s (%v) not judged weak", name, k)
		}
	}
	// A forged "signature" verifies for the identity key under ZIP-215:
	// that is why such keys are refused.
	chain := Hash([]byte("c"))
	var sig [SignatureSize]byte
	sig[0] = 1 // R = identity, S = 0
	if !Verify(identity, "request", chain, []byte("anything"), sig[:]) {
		t.Fatal("expected ZIP-215 to accept a forgery for the identity key (the reason Weak exists)")
	}
}

// TestExpandedKeysAgreeWithPlainVerification checks the cached, expanded path
// of Verify and BatchVerifier against the library's plain verification, for
// good keys, weak keys, non-canonical encodings and bytes that are no point.
func TestExpandedKeysAgreeWithPlainVerification(t *testing.T) {
	chain := Hash([]byte("chain"))
	good := testKey(t, 7)
	body := []byte("body")
	goodSig := NewSigner(good, chain).Sign("req", body)
	forged := make([]byte, SignatureSize)
	forged[0] = 1 // R = identity, S = 0: accepted for small-order keys under ZIP-215
	notPoint := PublicKey{}
	for i := range notPoint {
		notPoint[i] = 0xff
	}
	notPoint[31] = 0x7f
	nonCanonical := PublicKey{0xee} // y = p+1 ≡ 1, the identity, encoded non-canonically
	for i := 1; i < 31; i++ {
		nonCanonical[i] = 0xff
	}
	nonCanonical[31] = 0x7f
	keys := map[string]PublicKey{
		"good": good.Public(), "identity": {1}, "not a point": notPoint, "non-canonical identity": nonCanonical,
		"other": testKey(t, 8).Public(),
	}
	for name, pub := range keys {
		for sname, sig := range map[string][]byte{"good": goodSig, "forged": forged} {
			want := ed25519.VerifyWithOptions(pub[:], SigningBytes("req", chain, body), sig, zip215)
			// Twice: the second answer comes from the cache.
			for round := 0; round < 2; round++ {
				if got := Verify(pub, "req", chain, body, sig); got != want {
					t.Errorf("%s key, %s signature, round %d: Verify %v, plain %v", name, sname, round, got, want)
				}
				// Alone with one good signature (verified one by one) and
				// among enough good ones to make a batch equation.
				for _, goods := range []int{1, batchVerifyMin} {
					bv := NewBatchVerifier(chain, goods+1)
					for range goods {
						bv.Add(good.Public(), "req", body, goodSig)
					}
					bv.Add(pub, "req", body, sig)
					all, valid := bv.Verify()
					if all != want || !valid[0] || valid[goods] != want {
						t.Errorf("%s key, %s signature, round %d, %d good beside: batch %v %v, plain %v", name, sname, round, goods, all, valid, want)
					}
				}
			}
		}
	}
}

func TestExpandedKeyCacheIsBounded(t *testing.T) {
	for i := 0; i < expandedKeysMax+10; i++ {
		var seed [32]byte
		seed[0], seed[1], seed[2] = byte(i), byte(i>>8), 0xa5
		k, err := NewKeyFromSeed(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		if expand(k.Public()) == nil {
			t.Fatalf("key %d did not expand", i)
		}
		expandedKeys.Lock()
		n := len(expandedKeys.m)
		expandedKeys.Unlock()
		if n > expandedKeysMax {
			t.Fatalf("cache holds %d keys, bound %d", n, expandedKeysMax)
		}
	}
}

// BenchmarkVerifyBatchSizes is the per-signature cost of a batch of each size,
// the small sizes a replica's protocol traffic makes most of.
func BenchmarkVerifyBatchSizes(b *testing.B) {
	chain := Hash([]byte("c"))
	body := bytes.Repeat([]byte{7}, 200)
	keys, sigs := signedByMany(b, chain, body, 64)
	for _, size := range []int{1, 2, 3, 4, 6, 8, 12, 16, 32, 64} {
		b.Run(fmt.Sprintf("n=%d", size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				bv := NewBatchVerifier(chain, size)
				for j := 0; j < size; j++ {
					bv.Add(keys[j].Public(), "req", body, sigs[j])
				}
				if all, _ := bv.Verify(); !all {
					b.Fatal("rejected")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/sig")
		})
	}
}
