package crypto

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// DigestSize is the size of a SHA-256 digest.
const DigestSize = sha256.Size

// Digest is a SHA-256 digest. Its text form is lower-case hex.
type Digest [DigestSize]byte

// Hash returns the SHA-256 of the concatenation of parts.
func Hash(parts ...[]byte) Digest {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is all zero bytes.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler (hex).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (d *Digest) UnmarshalText(b []byte) error {
	raw, err := hex.DecodeString(string(b))
	if err != nil || len(raw) != DigestSize {
		return fmt.Errorf("digest %q: want %d hex bytes", b, DigestSize)
	}
	copy(d[:], raw)
	return nil
}

// zip215 is the one verification rule, used for single and batch verification.
var zip215 = &ed25519.Options{Verify: ed25519.VerifyOptionsZIP_215}

// SigningBytes is what a signature covers: "ordo/v1/" + kind + 0x00 + chain +
// body. kind names the message kind; chain is the genesis hash.
func SigningBytes(kind string, chain Digest, body []byte) []byte {
	b := make([]byte, 0, len("ordo/v1/")+len(kind)+1+DigestSize+len(body))
	b = append(b, "ordo/v1/"...)
	b = append(b, kind...)
	b = append(b, 0)
	b = append(b, chain[:]...)
	return append(b, body...)
}

// Signer signs bodies in one chain's domain.
type Signer struct {
	key   PrivateKey
	chain Digest
}

// NewSigner returns a signer for key on chain.
func NewSigner(key PrivateKey, chain Digest) *Signer { return &Signer{key: key, chain: chain} }

// Sign signs body as a message of the given kind.
func (s *Signer) Sign(kind string, body []byte) []byte {
	return ed25519.Sign(s.key.key, SigningBytes(kind, s.chain, body))
}

// Public returns the signer's public key.
func (s *Signer) Public() PublicKey { return s.key.pub }

// Chain returns the chain the signer signs for.
func (s *Signer) Chain() Digest { return s.chain }

// Verify checks sig over body as a message of kind on chain, with ZIP-215 rules.
func Verify(pub PublicKey, kind string, chain Digest, body, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	x := expand(pub)
	if x == nil {
		return false
	}
	return ed25519.VerifyExpandedWithOptions(x, SigningBytes(kind, chain, body), sig, zip215)
}

// batchVerifyMin is the smallest number of signatures verified as a batch; a
// lone one is verified by itself. A batch equation of one signature costs
// about 1.5 times a single verification (no precomputed table for the base
// point, and a random scalar to draw); from two on the batch is no worse
// (BenchmarkVerifyBatchSizes). Most of a replica's protocol messages arrive
// alone.
const batchVerifyMin = 2

// BatchVerifier verifies many signatures at once, with the same ZIP-215 rules as
// Verify: the batch answer for each signature equals Verify's answer.
type BatchVerifier struct {
	chain   Digest
	entries []batchEntry
}

// batchEntry is one queued signature: key (nil if it is no curve point, which
// verifies nothing), signed bytes and signature (nil if of the wrong length).
type batchEntry struct {
	key *ed25519.ExpandedPublicKey
	msg []byte
	sig []byte
}

// NewBatchVerifier returns an empty batch for chain with room for n entries.
func NewBatchVerifier(chain Digest, n int) *BatchVerifier {
	return &BatchVerifier{chain: chain, entries: make([]batchEntry, 0, n)}
}

// Add queues one signature.
func (b *BatchVerifier) Add(pub PublicKey, kind string, body, sig []byte) {
	e := batchEntry{key: expand(pub), msg: SigningBytes(kind, b.chain, body)}
	if len(sig) == SignatureSize {
		e.sig = sig
	}
	b.entries = append(b.entries, e)
}

// Len returns the number of queued signatures.
func (b *BatchVerifier) Len() int { return len(b.entries) }

// Verify checks every queued signature and reports whether all are valid and,
// per entry in Add order, which are.
func (b *BatchVerifier) Verify() (bool, []bool) {
	if len(b.entries) == 0 {
		return true, nil
	}
	valid := make([]bool, len(b.entries))
	// Entries that cannot be valid stay out (and false): one of them in the
	// batch would only send it down the library's slow path of single checks.
	var usable []int
	for i, e := range b.entries {
		if e.key != nil && e.sig != nil {
			usable = append(usable, i)
		}
	}
	if len(usable) < batchVerifyMin {
		for _, i := range usable {
			e := &b.entries[i]
			valid[i] = ed25519.VerifyExpandedWithOptions(e.key, e.msg, e.sig, zip215)
		}
	} else {
		bv := ed25519.NewBatchVerifierWithCapacity(len(usable))
		for _, i := range usable {
			e := &b.entries[i]
			bv.AddExpandedWithOptions(e.key, e.msg, e.sig, zip215)
		}
		_, ok := bv.Verify(rand.Reader)
		for j, i := range usable {
			valid[i] = ok[j]
		}
	}
	all := true
	for _, v := range valid {
		all = all && v
	}
	return all, valid
}
