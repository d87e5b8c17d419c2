package client

import (
	"sync"

	"github.com/ordoledger/ordo/crypto"
)

// StatementsMax bounds a StatementCache.
const StatementsMax = 4096

// StatementCache remembers the EXECUTED statements whose signatures have
// verified. Every request of a batch is answered with the same f+1
// statements, so clients that share a cache check each validator's signature
// once per batch instead of once per request. An entry is the digest of the
// chain, the validator key and the statement's exact bytes, so a cache can
// only vouch for what it saw verify under the same key and chain. When full it
// is emptied. Safe for concurrent use.
type StatementCache struct {
	mu sync.Mutex
	m  map[crypto.Digest]struct{}
}

// NewStatementCache returns an empty cache.
func NewStatementCache() *StatementCache {
	return &StatementCache{m: make(map[crypto.Digest]struct{})}
}

func statementKey(chain crypto.Digest, key crypto.PublicKey, raw []byte) crypto.Digest {
	return crypto.Hash(chain[:], key[:], raw)
}

func (s *StatementCache) has(d crypto.Digest) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[d]
	return ok
}

func (s *StatementCache) add(d crypto.Digest) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= StatementsMax {
		clear(s.m)
	}
	s.m[d] = struct{}{}
}
