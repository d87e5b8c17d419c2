package client

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// Media types of the node API.
const (
	mediaJSON = "application/json"
	mediaCBOR = "application/cbor"
	// acceptBundle is the Accept header of a submit: a node of this build
	// answers the reply bundle as CBOR, one of an older build as JSON.
	acceptBundle = mediaCBOR + ", " + mediaJSON + ";q=0.5"
)

// isCBOR reports whether a Content-Type names application/cbor, with or
// without parameters.
func isCBOR(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), mediaCBOR)
}

// decodeBundle decodes the body of a submit's answer, which is untrusted:
// the canonical CBOR of a pbft.ReplyBundle if contentType says
// application/cbor, otherwise the JSON answer (a node of an older build, or
// one that was not asked for CBOR). It checks only the form; checkBundle
// decides whether to believe it.
func decodeBundle(contentType string, body []byte) (*pbft.ReplyBundle, error) {
	if len(body) > bundleBytesMax {
		return nil, fmt.Errorf("%w: bundle of %d bytes, at most %d", ErrBadReply, len(body), bundleBytesMax)
	}
	var b pbft.ReplyBundle
	var err error
	if isCBOR(contentType) {
		b, err = codec.Canonical[pbft.ReplyBundle](body)
	} else {
		err = json.Unmarshal(body, &b)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: malformed bundle: %v", ErrBadReply, err)
	}
	return &b, nil
}

// bundleChecker checks reply bundles against what a client trusts: the
// chain and the validator keys in genesis order. set is the digest of both,
// which names them in the statement cache.
type bundleChecker struct {
	chain      crypto.Digest
	validators []crypto.PublicKey
	set        crypto.Digest
	statements *StatementCache // nil: none
}

func newBundleChecker(chain crypto.Digest, validators []crypto.PublicKey, statements *StatementCache) *bundleChecker {
	parts := make([][]byte, 0, len(validators)+1)
	parts = append(parts, chain[:])
	for i := range validators {
		parts = append(parts, validators[i][:])
	}
	return &bundleChecker{chain: chain, validators: validators, set: crypto.Hash(parts...), statements: statements}
}

// openStatement decodes one EXECUTED statement and checks its signature,
// unless the statement cache holds it already under this checker's keys.
func (c *bundleChecker) openStatement(raw []byte) (*pbft.Executed, error) {
	if ex := c.statements.get(c.set, raw); ex != nil {
		return ex, nil
	}
	env, err := pbft.DecodeEnvelope(raw)
	if err != nil {
		return nil, err
	}
	if env.Kind != pbft.KindExecuted {
		return nil, fmt.Errorf("a %v, not EXECUTED", env.Kind)
	}
	m, err := env.Open(len(c.validators))
	if err != nil {
		return nil, err
	}
	if !m.VerifySignature(c.validators, c.chain) {
		return nil, fmt.Errorf("replica %d's statement has a bad signature", m.Executed.Replica)
	}
	c.statements.add(c.set, raw, m.Executed)
	return m.Executed, nil
}

// verifyBundle decodes and checks the body of a submit's answer.
func (c *bundleChecker) verifyBundle(contentType string, body, request []byte) (*Reply, error) {
	b, err := decodeBundle(contentType, body)
	if err != nil {
		return nil, err
	}
	return c.checkBundle(b, request)
}

// checkBundle checks a reply bundle for the request whose encoded
// SignedRequest is request, trusting nothing but the validator keys and the
// chain. It requires f+1 EXECUTED statements from distinct validators that all
// agree on (seq, results root), a result bound to this request,
// and a Merkle path from that result to the agreed root. The result's own
// EntrySeq may be older than the bundle's: a retry of an executed request is
// answered, in a later batch, with the original result. Statements found in
// the statement cache are not decoded or checked again; new good ones are
// added.
func (c *bundleChecker) checkBundle(b *pbft.ReplyBundle, request []byte) (*Reply, error) {
	n := len(c.validators)
	need := pbft.MaxFaulty(n) + 1
	if n == 0 {
		return nil, fmt.Errorf("%w: no validators to check against", ErrBadReply)
	}
	if len(b.Executed) < need {
		return nil, fmt.Errorf("%w: %d EXECUTED statements, need %d", ErrBadReply, len(b.Executed), need)
	}
	if len(b.Executed) > n {
		return nil, fmt.Errorf("%w: %d EXECUTED statements from %d validators", ErrBadReply, len(b.Executed), n)
	}
	var agreed *pbft.Executed
	seen := make(map[uint32]bool, len(b.Executed))
	for i, raw := range b.Executed {
		ex, err := c.openStatement(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: EXECUTED %d: %v", ErrBadReply, i, err)
		}
		if seen[ex.Replica] {
			return nil, fmt.Errorf("%w: replica %d appears twice", ErrBadReply, ex.Replica)
		}
		seen[ex.Replica] = true
		if ex.Seq != b.EntrySeq {
			return nil, fmt.Errorf("%w: replica %d executed seq %d, bundle says %d", ErrBadReply, ex.Replica, ex.Seq, b.EntrySeq)
		}
		// Only the results root is evidence here. EntryHash is not compared:
		// a gateway collects statements that match its own root, and one
		// faulty replica's odd EntryHash must not make honest bundles fail.
		if agreed == nil {
			agreed = ex
		} else if ex.ResultsRoot != agreed.ResultsRoot {
			return nil, fmt.Errorf("%w: replicas %d and %d disagree on the results of seq %d", ErrBadReply, agreed.Replica, ex.Replica, ex.Seq)
		}
	}
	result, err := codec.Canonical[ledger.Result](b.Result)
	if err != nil {
		return nil, fmt.Errorf("%w: result: %v", ErrBadReply, err)
	}
	if want := crypto.Hash(request); result.RequestHash != want {
		return nil, fmt.Errorf("%w: result is for request %v, not ours (%v)", ErrBadReply, result.RequestHash, want)
	}
	if err := crypto.VerifyInclusion(b.Result, b.ResultIndex, b.ResultCount, b.Proof, agreed.ResultsRoot); err != nil {
		return nil, fmt.Errorf("%w: result %d of %d: %v", ErrBadReply, b.ResultIndex, b.ResultCount, err)
	}
	return &Reply{
		EntrySeq: b.EntrySeq,
		Result:   result,
		Replies:  len(seen),
	}, nil
}
