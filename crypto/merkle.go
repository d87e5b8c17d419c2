package crypto

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// MaxProofLen bounds an inclusion proof: a tree of 2^64 leaves has 64 levels.
const MaxProofLen = 64

// LeafHash is RFC 6962's hash of one leaf: SHA-256(0x00 ‖ data).
func LeafHash(data []byte) Digest {
	return Hash([]byte{0}, data)
}

func nodeHash(left, right Digest) Digest {
	var buf [1 + 2*DigestSize]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[1+DigestSize:], right[:])
	return sha256.Sum256(buf[:])
}

// MerkleRoot is RFC 6962's Merkle Tree Hash of the leaves (SHA-256 of nothing
// for no leaves).
func MerkleRoot(leaves [][]byte) Digest {
	hashes := make([]Digest, len(leaves))
	for i, l := range leaves {
		hashes[i] = LeafHash(l)
	}
	return MerkleRootOfLeafHashes(hashes)
}

// MerkleRootOfLeafHashes is MerkleRoot for leaves already hashed with LeafHash.
func MerkleRootOfLeafHashes(hashes []Digest) Digest {
	if len(hashes) == 0 {
		return Hash()
	}
	level := append([]Digest(nil), hashes...)
	// Pairing left to right and carrying an odd last node up unchanged yields
	// exactly RFC 6962's split at the largest power of two below n.
	for len(level) > 1 {
		next := level[:0]
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, nodeHash(level[i], level[i+1]))
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		level = next
	}
	return level[0]
}

// InclusionProof returns the RFC 6962 audit path for leaf index in leaves.
// For more than one proof over the same leaves, build a MerkleTree once.
func InclusionProof(leaves [][]byte, index int) ([]Digest, error) {
	return NewMerkleTree(leaves).Proof(index)
}

// MerkleTree keeps every level of an RFC 6962 tree, so that each inclusion
// proof costs O(log n) instead of rehashing the tree.
type MerkleTree struct {
	levels [][]Digest // levels[0] are the leaf hashes; the last level is the root
}

// NewMerkleTree hashes leaves into a tree.
func NewMerkleTree(leaves [][]byte) *MerkleTree {
	level := make([]Digest, len(leaves))
	for i, l := range leaves {
		level[i] = LeafHash(l)
	}
	t := &MerkleTree{levels: [][]Digest{level}}
	// The same pairing as MerkleRootOfLeafHashes: an odd last node moves up
	// unchanged, which is RFC 6962's split at the largest power of two.
	for len(level) > 1 {
		next := make([]Digest, 0, (len(level)+1)/2)
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, nodeHash(level[i], level[i+1]))
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		t.levels = append(t.levels, next)
		level = next
	}
	return t
}

// Size is the number of leaves.
func (t *MerkleTree) Size() int { return len(t.levels[0]) }

// Root is the tree's Merkle Tree Hash (MerkleRoot of its leaves).
func (t *MerkleTree) Root() Digest {
	top := t.levels[len(t.levels)-1]
	if len(top) == 0 {
		return Hash()
	}
	return top[0]
}

// Proof returns the audit path of leaf index, leaf to root.
func (t *MerkleTree) Proof(index int) ([]Digest, error) {
	if index < 0 || index >= t.Size() {
		return nil, fmt.Errorf("inclusion proof: index %d outside %d leaves", index, t.Size())
	}
	proof := make([]Digest, 0, len(t.levels)-1)
	for _, level := range t.levels[:len(t.levels)-1] {
		// A node without a right sibling moves up unchanged: no proof step.
		if sib := index ^ 1; sib < len(level) {
			proof = append(proof, level[sib])
		}
		index >>= 1
	}
	return proof, nil
}

// ErrBadProof is returned when an inclusion proof does not lead to the root.
var ErrBadProof = errors.New("merkle inclusion proof does not match the root")

// VerifyInclusion checks that leaf is at index in a tree of size leaves whose
// root is root, following RFC 9162 §2.1.3.2.
func VerifyInclusion(leaf []byte, index, size uint64, proof []Digest, root Digest) error {
	if index >= size {
		return fmt.Errorf("inclusion proof: index %d outside tree of %d: %w", index, size, ErrBadProof)
	}
	if len(proof) > MaxProofLen {
		return fmt.Errorf("inclusion proof of %d hashes: %w", len(proof), ErrBadProof)
	}
	fn, sn := index, size-1
	r := LeafHash(leaf)
	for _, p := range proof {
		if sn == 0 {
			return fmt.Errorf("inclusion proof longer than the tree: %w", ErrBadProof)
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || r != root {
		return ErrBadProof
	}
	return nil
}
