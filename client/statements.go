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
// is keyed by the digest of the chain and the validator set it verified
// under, and by the statement's exact bytes, so a cache only vouches for what
// it saw verify under the same keys. When full it is emptied; a verified
// statement is under 200 bytes, so a full cache holds about 1 MB. Safe for
// concurrent use.
type StatementCache struct {
	mu sync.Mutex
	m  map[statementKey]*pbft.Executed
}

// statementKey names a verified statement: the digest of the chain and
// validator keys it verified under (bundleChecker.set) and its bytes. A
// lookup compares the bytes themselves, so it costs no hashing beyond the
// map's own.
type statementKey struct {
	set crypto.Digest
	raw string
}

// NewStatementCache returns an empty cache.
func NewStatementCache() *StatementCache {
	return &StatementCache{m: make(map[statementKey]*pbft.Executed)}
}

// get returns the statement raw verified as under set, or nil. The statement
// is shared: read-only.
func (s *StatementCache) get(set crypto.Digest, raw []byte) *pbft.Executed {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[statementKey{set: set, raw: string(raw)}]
}

func (s *StatementCache) add(set crypto.Digest, raw []byte, ex *pbft.Executed) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= StatementsMax {
		clear(s.m)
	}
	s.m[statementKey{set: set, raw: string(raw)}] = ex
}
