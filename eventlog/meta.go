package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/ordoledger/ordo/crypto"
)

// The meta key space held the node's protocol state until it moved into a
// file of its own (node/protostore.go); nodes now only read it, with ScanMeta,
// to move an older store's keys over. PutMeta and GetMeta remain for the
// tests that build such stores and for the benchmark that compares the two.

// MetaChange returns the keys a change sets and the keys it deletes, each in
// sorted order; a key both set and deleted is refused.
func MetaChange(set map[string][]byte, del []string) (keys, dels []string, err error) {
	keys = make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dels = slices.Clone(del)
	slices.Sort(dels)
	for _, k := range dels {
		if _, both := set[k]; both {
			return nil, nil, fmt.Errorf("key %q both set and deleted", k)
		}
	}
	return keys, dels, nil
}

// PutMeta writes and deletes keys of the meta key space in one transaction,
// keys in sorted order. With sync the change is on disk when PutMeta returns
// (a log opened with SyncWrites syncs every commit anyway). A key both set
// and deleted is refused.
func (l *Log) PutMeta(set map[string][]byte, del []string, sync bool) error {
	keys, dels, err := MetaChange(set, del)
	if err != nil {
		return fmt.Errorf("put meta: %w", err)
	}
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	for _, k := range keys {
		mk, err := metaKey(k)
		if err != nil {
			return fmt.Errorf("put meta: %w", err)
		}
		if err := txn.Set(mk, slices.Clone(set[k])); err != nil {
			return fmt.Errorf("put meta %q: %w", k, tooBig(err))
		}
	}
	for _, k := range dels {
		mk, err := metaKey(k)
		if err != nil {
			return fmt.Errorf("put meta: %w", err)
		}
		if err := txn.Delete(mk); err != nil {
			return fmt.Errorf("delete meta %q: %w", k, tooBig(err))
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("put meta: commit: %w", tooBig(err))
	}
	if sync && !l.opts.SyncWrites && !l.opts.InMemory {
		if err := l.db.Sync(); err != nil {
			return fmt.Errorf("put meta: sync: %w", err)
		}
	}
	return nil
}

// GetMeta reads one meta key.
func (l *Log) GetMeta(key string) ([]byte, bool, error) {
	mk, err := metaKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("get meta: %w", err)
	}
	var (
		v     []byte
		found bool
	)
	err = l.db.View(func(txn *badger.Txn) error {
		v, found, err = get(txn, mk)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("get meta %q: %w", key, err)
	}
	return v, found, nil
}

// ScanMeta calls fn for every meta key starting with prefix, in key order,
// with a copy of its value; it stops at fn's first error.
func (l *Log) ScanMeta(prefix string, fn func(key string, val []byte) error) error {
	p := append([]byte{prefixMeta}, prefix...)
	return l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		defer it.Close()
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			item := it.Item()
			key := string(item.Key()[1:])
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("scan meta %q: %w", key, err)
			}
			if err := fn(key, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// stateDomain separates state digests from every other SHA-256 in ordo.
const stateDomain = "ordo/state"

// Tags of the writes stateWrites hashes.
const (
	stateWriteSet    byte = 1
	stateWriteDelete byte = 2
)

// stateWrites hashes one batch's state writes in the order the executor made
// them, each tagged and length-prefixed, so that no two different sequences
// of writes share a byte string. The zero value is a batch that wrote
// nothing.
type stateWrites struct {
	h   hash.Hash
	hdr [9]byte // tag and length, kept here so that hashing allocates nothing per write
}

func (s *stateWrites) add(tag byte, key, val []byte) {
	if s.h == nil {
		s.h = sha256.New()
	}
	s.hdr[0] = tag
	binary.BigEndian.PutUint64(s.hdr[1:], uint64(len(key)))
	s.h.Write(s.hdr[:])
	s.h.Write(key)
	if tag == stateWriteSet {
		binary.BigEndian.PutUint64(s.hdr[1:], uint64(len(val)))
		s.h.Write(s.hdr[1:])
		s.h.Write(val)
	}
}

// next is the state digest after entry seq, whose state digest before was
// prev: a batch that wrote no state leaves it as it was.
func (s *stateWrites) next(prev crypto.Digest, seq uint64) crypto.Digest {
	if s.h == nil {
		return prev
	}
	var writes crypto.Digest
	s.h.Sum(writes[:0])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], seq)
	return crypto.Hash([]byte(stateDomain), prev[:], n[:], writes[:])
}

// Sync makes every commit so far durable. With SyncWrites off it is how a
// caller group-commits: many Apply calls, then one fsync before anything that
// promises they are on disk.
func (l *Log) Sync() error {
	if l.opts.SyncWrites || l.opts.InMemory {
		return nil
	}
	if err := l.db.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}
