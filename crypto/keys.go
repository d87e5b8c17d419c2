package crypto

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Sizes of keys and signatures, in bytes.
const (
	PublicKeySize = ed25519.PublicKeySize
	SeedSize      = ed25519.SeedSize
	SignatureSize = ed25519.SignatureSize
	// keyFileBytesMax bounds how much of a key file is read.
	keyFileBytesMax = 4096
)

// PublicKey is an Ed25519 public key. Its text form is lower-case hex.
type PublicKey [PublicKeySize]byte

func (p PublicKey) String() string { return hex.EncodeToString(p[:]) }

// MarshalText implements encoding.TextMarshaler (hex).
func (p PublicKey) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (p *PublicKey) UnmarshalText(b []byte) error {
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*p = k
	return nil
}

// ParsePublicKey parses the hex text form of a public key.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	b, err := hex.DecodeString(s)
	if err != nil {
		return p, fmt.Errorf("public key %q: not hex: %w", s, err)
	}
	if len(b) != PublicKeySize {
		return p, fmt.Errorf("public key %q: %d bytes, want %d", s, len(b), PublicKeySize)
	}
	copy(p[:], b)
	return p, nil
}

// PrivateKey is an Ed25519 private key.
type PrivateKey struct {
	key ed25519.PrivateKey
	pub PublicKey
}

// GenerateKey makes a new key from r (crypto/rand.Reader when r is nil).
func GenerateKey(r io.Reader) (PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return PrivateKey{}, fmt.Errorf("generate key: %w", err)
	}
	return NewKeyFromSeed(seed)
}

// NewKeyFromSeed derives the key for a 32-byte seed.
func NewKeyFromSeed(seed []byte) (PrivateKey, error) {
	if len(seed) != SeedSize {
		return PrivateKey{}, fmt.Errorf("key seed is %d bytes, want %d", len(seed), SeedSize)
	}
	k := ed25519.NewKeyFromSeed(seed)
	var pub PublicKey
	copy(pub[:], k[SeedSize:])
	return PrivateKey{key: k, pub: pub}, nil
}

// Public returns the public half.
func (k PrivateKey) Public() PublicKey { return k.pub }

// Seed returns the 32-byte seed; with it the key can be rebuilt (libp2p uses the
// same seed, so a validator's peer ID derives from its consensus key).
func (k PrivateKey) Seed() []byte { return k.key.Seed() }

// IsZero reports whether k was never set.
func (k PrivateKey) IsZero() bool { return k.key == nil }

type keyFile struct {
	Type       string    `json:"type"`
	PublicKey  PublicKey `json:"public_key"`
	PrivateKey string    `json:"private_key"`
}

// WriteKeyFile writes k to path with mode 0600, refusing to overwrite a file.
func WriteKeyFile(path string, k PrivateKey) error {
	body, err := json.MarshalIndent(keyFile{
		Type:       "ed25519",
		PublicKey:  k.pub,
		PrivateKey: base64.StdEncoding.EncodeToString(k.Seed()),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(append(body, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return f.Close()
}

// ReadKeyFile reads a key written by WriteKeyFile. A file readable by group or
// others, a malformed file, or one whose public key does not match its seed is
// refused with a reason.
func ReadKeyFile(path string) (PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read key file %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("read key file %s: mode %#o lets others read it; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, keyFileBytesMax+1))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(raw) > keyFileBytesMax {
		return PrivateKey{}, fmt.Errorf("read key file %s: larger than %d bytes, not a key file", path, keyFileBytesMax)
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil {
		return PrivateKey{}, fmt.Errorf("read key file %s: not a key file: %w", path, err)
	}
	if kf.Type != "ed25519" {
		return PrivateKey{}, fmt.Errorf("read key file %s: key type %q, want ed25519", path, kf.Type)
	}
	seed, err := base64.StdEncoding.DecodeString(kf.PrivateKey)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read key file %s: private_key is not base64: %w", path, err)
	}
	k, err := NewKeyFromSeed(seed)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read key file %s: %w", path, err)
	}
	if k.pub != kf.PublicKey {
		return PrivateKey{}, fmt.Errorf("read key file %s: %w", path, errKeyMismatch)
	}
	return k, nil
}

var errKeyMismatch = errors.New("public_key does not match private_key")

// Weak reports whether p is not a usable public key: not a valid curve point,
// or a point of small order. Under ZIP-215 anyone can make signatures that
// verify for a small-order key, so such a key must never identify a client or
// a validator.
func (p PublicKey) Weak() bool {
	var y curve.CompressedEdwardsY
	if _, err := y.SetBytes(p[:]); err != nil {
		return true
	}
	var pt curve.EdwardsPoint
	if _, err := pt.SetCompressedY(&y); err != nil {
		return true
	}
	return pt.IsSmallOrder()
}
