package client

import (
	"encoding/json"
	"fmt"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// Bundle is the JSON answer of POST /v1/requests: the result of one request
// and the evidence that the validators executed it. Only ResultBytes,
// ResultIndex, ResultCount, Proof and Executed are evidence; Result is the
// node's rendering of ResultBytes for humans and is never trusted.
type Bundle struct {
	EntrySeq    uint64          `json:"entry_seq"`
	Result      json.RawMessage `json:"result,omitempty"`
	ResultBytes []byte          `json:"result_b64"` // the encoded ledger.Result (a results-tree leaf)
	ResultIndex uint64          `json:"result_index"`
	ResultCount uint64          `json:"result_count"`
	Proof       []crypto.Digest `json:"proof"`    // RFC 6962 audit path, leaf to root
	Executed    [][]byte        `json:"executed"` // encoded pbft.Envelopes of kind EXECUTED
}

// openStatement decodes one EXECUTED statement and checks its signature,
// unless verified already holds it.
func openStatement(raw []byte, validators []crypto.PublicKey, chain crypto.Digest, verified *StatementCache) (*pbft.Executed, error) {
	key := statementKey(chain, validators, raw)
	if ex := verified.get(key); ex != nil {
		return ex, nil
	}
	env, err := pbft.DecodeEnvelope(raw)
	if err != nil {
		return nil, err
	}
	if env.Kind != pbft.KindExecuted {
		return nil, fmt.Errorf("a %v, not EXECUTED", env.Kind)
	}
	m, err := env.Open(len(validators))
	if err != nil {
		return nil, err
	}
	if !m.VerifySignature(validators, chain) {
		return nil, fmt.Errorf("replica %d's statement has a bad signature", m.Executed.Replica)
	}
	verified.add(key, m.Executed)
	return m.Executed, nil
}

// verifyBundle checks a reply bundle for the request whose encoded
// SignedRequest is request, trusting nothing but the validator keys and the
// chain. It requires f+1 EXECUTED statements from distinct validators that all
// agree on (seq, results root), a result bound to this request,
// and a Merkle path from that result to the agreed root. The result's own
// EntrySeq may be older than the bundle's: a retry of an executed request is
// answered, in a later batch, with the original result. Statements found in
// verified (which may be nil) are not decoded or checked again; new good ones
// are added.
func verifyBundle(body, request []byte, validators []crypto.PublicKey, chain crypto.Digest, verified *StatementCache) (*Reply, error) {
	var b Bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("%w: malformed bundle: %v", ErrBadReply, err)
	}
	n := len(validators)
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
		ex, err := openStatement(raw, validators, chain, verified)
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
	result, err := codec.Canonical[ledger.Result](b.ResultBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: result: %v", ErrBadReply, err)
	}
	if want := crypto.Hash(request); result.RequestHash != want {
		return nil, fmt.Errorf("%w: result is for request %v, not ours (%v)", ErrBadReply, result.RequestHash, want)
	}
	if err := crypto.VerifyInclusion(b.ResultBytes, b.ResultIndex, b.ResultCount, b.Proof, agreed.ResultsRoot); err != nil {
		return nil, fmt.Errorf("%w: result %d of %d: %v", ErrBadReply, b.ResultIndex, b.ResultCount, err)
	}
	return &Reply{
		EntrySeq: b.EntrySeq,
		Result:   result,
		Replies:  len(seen),
	}, nil
}
