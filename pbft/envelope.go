package pbft

import (
	"errors"
	"fmt"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Message is an Envelope whose body has been decoded. Exactly one of the body
// pointers is set, matching Env.Kind. From is the replica index the body names;
// it is the signer once Verify has succeeded.
type Message struct {
	Env        *Envelope
	From       uint32
	PrePrepare *PrePrepare
	Prepare    *Prepare
	Commit     *Commit
	Executed   *Executed
	Checkpoint *Checkpoint
	ViewChange *ViewChange
	NewView    *NewView
}

// ErrBadMessage wraps every reason a message is refused at decoding.
var ErrBadMessage = errors.New("bad protocol message")

// DecodeEnvelope decodes an envelope from untrusted bytes.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	var e Envelope
	if err := codec.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	return &e, nil
}

// Open decodes the envelope's body strictly: it must be the canonical encoding
// of the kind's body, so one signed value has exactly one byte string. n is the
// number of replicas; a body naming a replica outside 0..n-1 is refused.
func (e *Envelope) Open(n int) (Message, error) {
	m := Message{Env: e}
	var err error
	switch e.Kind {
	case KindPrePrepare:
		m.PrePrepare, err = openBody[PrePrepare](e.Body)
		if err == nil {
			m.From = m.PrePrepare.Replica
		}
	case KindPrepare:
		m.Prepare, err = openBody[Prepare](e.Body)
		if err == nil {
			m.From = m.Prepare.Replica
		}
	case KindCommit:
		m.Commit, err = openBody[Commit](e.Body)
		if err == nil {
			m.From = m.Commit.Replica
		}
	case KindExecuted:
		m.Executed, err = openBody[Executed](e.Body)
		if err == nil {
			m.From = m.Executed.Replica
		}
	case KindCheckpoint:
		m.Checkpoint, err = openBody[Checkpoint](e.Body)
		if err == nil {
			m.From = m.Checkpoint.Replica
		}
	case KindViewChange:
		m.ViewChange, err = openBody[ViewChange](e.Body)
		if err == nil {
			m.From = m.ViewChange.Replica
		}
	case KindNewView:
		m.NewView, err = openBody[NewView](e.Body)
		if err == nil {
			m.From = m.NewView.Replica
		}
	default:
		return m, fmt.Errorf("%w: unknown kind %v", ErrBadMessage, e.Kind)
	}
	if err != nil {
		return m, fmt.Errorf("%w: %v body: %v", ErrBadMessage, e.Kind, err)
	}
	if int(m.From) >= n {
		return m, fmt.Errorf("%w: %v from replica %d of %d", ErrBadMessage, e.Kind, m.From, n)
	}
	if e.Kind != KindPrePrepare && len(e.Batch) != 0 {
		return m, fmt.Errorf("%w: %v carries a batch", ErrBadMessage, e.Kind)
	}
	return m, nil
}

func openBody[T any](b []byte) (*T, error) {
	v, err := codec.Canonical[T](b)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// Signer signs a body in a kind's domain; *crypto.Signer is the real one, and
// the simulator may pass a cheaper one.
type Signer interface {
	Sign(kind string, body []byte) []byte
}

// Verifier checks a signature over body in a kind's domain. The core uses it
// for the envelopes nested inside VIEW-CHANGE and NEW-VIEW messages (the node
// verifies outer envelopes before Step). Its answer must be a function of its
// arguments alone, the same on every replica; ChainVerifier is the real one.
type Verifier interface {
	Verify(pub crypto.PublicKey, kind string, body, sig []byte) bool
}

// ChainVerifier verifies Ed25519 signatures on one chain with crypto.Verify.
type ChainVerifier struct{ Chain crypto.Digest }

// Verify implements Verifier.
func (v ChainVerifier) Verify(pub crypto.PublicKey, kind string, body, sig []byte) bool {
	return crypto.Verify(pub, kind, v.Chain, body, sig)
}

// Seal encodes body canonically and signs it as kind.
func Seal(s Signer, kind Kind, body any) *Envelope {
	b := codec.MustMarshal(body)
	return &Envelope{Kind: kind, Body: b, Sig: s.Sign(kind.String(), b)}
}

// VerifySignature checks the envelope signature against the key of the replica
// the body names.
func (m Message) VerifySignature(validators []crypto.PublicKey, chain crypto.Digest) bool {
	if int(m.From) >= len(validators) {
		return false
	}
	return crypto.Verify(validators[m.From], m.Env.Kind.String(), chain, m.Env.Body, m.Env.Sig)
}

// Quorum returns 2f+1 for n = 3f+1 replicas (n ≥ 1): the size of a quorum.
func Quorum(n int) int { return 2*MaxFaulty(n) + 1 }

// MaxFaulty returns f = ⌊(n-1)/3⌋.
func MaxFaulty(n int) int { return (n - 1) / 3 }

// VerifyCertificate checks that cert holds signed COMMITs for its
// (View, Seq, Digest) from at least 2f+1 distinct validators. It trusts nothing
// but the validator keys and the chain ID.
func VerifyCertificate(cert *Certificate, validators []crypto.PublicKey, chain crypto.Digest) error {
	n := len(validators)
	seen := make(map[uint32]bool, len(cert.Commits))
	for i := range cert.Commits {
		e := &cert.Commits[i]
		if e.Kind != KindCommit {
			return fmt.Errorf("certificate for seq %d: message %d is a %v, not a commit", cert.Seq, i, e.Kind)
		}
		m, err := e.Open(n)
		if err != nil {
			return fmt.Errorf("certificate for seq %d: commit %d: %w", cert.Seq, i, err)
		}
		c := m.Commit
		if c.View != cert.View || c.Seq != cert.Seq || c.Digest != cert.Digest {
			return fmt.Errorf("certificate for seq %d: commit %d from replica %d is for (view %d, seq %d, digest %v)", cert.Seq, i, c.Replica, c.View, c.Seq, c.Digest)
		}
		if seen[c.Replica] {
			return fmt.Errorf("certificate for seq %d: replica %d counted twice", cert.Seq, c.Replica)
		}
		if !m.VerifySignature(validators, chain) {
			return fmt.Errorf("certificate for seq %d: commit from replica %d has a bad signature", cert.Seq, c.Replica)
		}
		seen[c.Replica] = true
	}
	if len(seen) < Quorum(n) {
		return fmt.Errorf("certificate for seq %d: %d distinct commits, need %d", cert.Seq, len(seen), Quorum(n))
	}
	return nil
}

// DecodeRequest decodes a SignedRequest and its body from untrusted bytes. It
// does not check the signature; see VerifyRequest.
func DecodeRequest(b []byte) (*SignedRequest, *Request, error) {
	if sr, req, ok := decodeRequestFast(b); ok {
		return sr, req, nil
	}
	return decodeRequestGeneral(b)
}

// decodeRequestGeneral is DecodeRequest for any bytes, through the codec.
func decodeRequestGeneral(b []byte) (*SignedRequest, *Request, error) {
	var sr SignedRequest
	if err := codec.Unmarshal(b, &sr); err != nil {
		return nil, nil, fmt.Errorf("%w: request: %v", ErrBadMessage, err)
	}
	req, err := openBody[Request](sr.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: request body: %v", ErrBadMessage, err)
	}
	return &sr, req, nil
}

// SignRequest builds and signs a request; it returns the encoded SignedRequest.
func SignRequest(s *crypto.Signer, seq uint64, command []byte) []byte {
	body := codec.MustMarshal(&Request{Client: s.Public(), Seq: seq, Command: command})
	return codec.MustMarshal(&SignedRequest{Body: body, Sig: s.Sign(KindRequest.String(), body)})
}

// VerifyCheckpointProof checks that proof holds exactly 2f+1 CHECKPOINT
// envelopes from distinct validators, all for one (seq, state digest), each
// with a valid signature, and returns that seq and digest. State transfer uses
// it to trust a checkpoint without trusting the peer that served it.
func VerifyCheckpointProof(proof []Envelope, validators []crypto.PublicKey, v Verifier) (uint64, crypto.Digest, error) {
	n := len(validators)
	if len(proof) != Quorum(n) {
		return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof: %d envelopes, want %d", len(proof), Quorum(n))
	}
	var seq uint64
	var digest crypto.Digest
	seen := make([]bool, n)
	for i := range proof {
		e := &proof[i]
		if e.Kind != KindCheckpoint {
			return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof: message %d is a %v", i, e.Kind)
		}
		m, err := e.Open(n)
		if err != nil {
			return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof: message %d: %w", i, err)
		}
		c := m.Checkpoint
		if i == 0 {
			seq, digest = c.Seq, c.StateDigest
		}
		switch {
		case c.Seq != seq || c.StateDigest != digest:
			return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof: replica %d states (seq %d, %v), not (seq %d, %v)", c.Replica, c.Seq, c.StateDigest, seq, digest)
		case seen[c.Replica]:
			return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof: replica %d counted twice", c.Replica)
		case !v.Verify(validators[c.Replica], KindCheckpoint.String(), e.Body, e.Sig):
			return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof: replica %d has a bad signature", c.Replica)
		}
		seen[c.Replica] = true
	}
	if seq == 0 {
		return 0, crypto.Digest{}, fmt.Errorf("checkpoint proof for seq 0")
	}
	return seq, digest, nil
}
