package client

import (
	"sync"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// StatementsMax bounds a StatementCache.
const StatementsMax = 4096

// StatementCache remembers the EXECUTED statements that decoded and whose
// signatures verified. Every request of a batch is answered with the same f+1
// statements, so clients that share a cache decode and check each
// validator's statement once per batch instead of once per request. An entry
// is keyed by the digest of the chain, the validator set and the statement's
// exact bytes, so a cache only vouches for what it saw verify under the same
// keys. When full it is emptied. Safe for concurrent use.
type StatementCache struct {
	mu sync.Mutex
	m  map[crypto.Digest]*pbft.Executed
}

// NewStatementCache returns an empty cache.
func NewStatementCache() *StatementCache {
	return &StatementCache{m: make(map[crypto.Digest]*pbft.Executed)}
}

func statementKey(chain crypto.Digest, validators []crypto.PublicKey, raw []byte) crypto.Digest {
	parts := make([][]byte, 0, len(validators)+2)
	parts = append(parts, chain[:])
	for i := range validators {
		parts = append(parts, validators[i][:])
	}
	return crypto.Hash(append(parts, raw)...)
}

// get returns the statement cached under d, or nil. The statement is shared:
// read-only.
func (s *StatementCache) get(d crypto.Digest) *pbft.Executed {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[d]
}

func (s *StatementCache) add(d crypto.Digest, ex *pbft.Executed) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= StatementsMax {
		clear(s.m)
	}
	s.m[d] = ex
}
