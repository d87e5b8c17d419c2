package pbft

import (
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// noReplica excludes no replica from a vote count.
const noReplica = ^uint32(0)

// slotKey names a slot. The view is part of the key so that votes of a view
// are never counted in another.
type slotKey struct {
	view, seq uint64
}

// vote is one replica's PREPARE or COMMIT for a slot; env is nil when the
// replica has not voted.
type vote struct {
	digest crypto.Digest
	env    *Envelope
}

// slot is the agreement state of one (view, seq).
type slot struct {
	view, seq uint64
	// accepted: digest is the one this replica accepted (or proposed, or
	// signed before a restart) for (view, seq); it never signs another.
	accepted bool
	digest   crypto.Digest
	// prePrepare is the accepted PRE-PREPARE (the primary's, this replica's
	// own, or the one a NEW-VIEW re-issued); nil when the digest is known
	// only from this replica's own restored vote. timestamp is its body's.
	prePrepare *Envelope
	timestamp  int64
	// The batch, once known: from a PRE-PREPARE carrying it, from this
	// replica's prepared certificate of an earlier view, or empty for a null
	// batch. A replica that accepted a re-issued PRE-PREPARE may lack it.
	hasBatch  bool
	batch     [][]byte
	reqHashes []crypto.Digest
	// reqs are the batch's entries in the pending queue, as markBatched or
	// cut returned them, so that delivery removes them without lookups; nil
	// when the batch was not marked (a restored slot).
	reqs []*pendingReq
	// Votes indexed by replica: the first vote of each replica wins.
	prepares []vote
	commits  []vote
	// This replica's own signed envelopes, for retransmission.
	ownPrePrepare *Envelope
	ownPrepare    *Envelope
	ownCommit     *Envelope
	progressAt    time.Time
	retransmitAt  time.Time
}

func newSlot(view, seq uint64, n int, now time.Time) *slot {
	votes := make([]vote, 2*n)
	return &slot{view: view, seq: seq, prepares: votes[:n:n], commits: votes[n:], progressAt: now}
}

func (sl *slot) setBatch(batch [][]byte, timestamp int64, hashes []crypto.Digest) {
	sl.hasBatch = true
	sl.batch = batch
	sl.timestamp = timestamp
	sl.reqHashes = hashes
	sl.reqs = nil
}

// matching counts the distinct replicas, other than except, whose vote
// matches the accepted digest. Votes are indexed by replica, so a replica is
// counted once however often its message arrives.
func (sl *slot) matching(votes []vote, except uint32) int {
	c := 0
	for i, v := range votes {
		if v.env != nil && uint32(i) != except && v.digest == sl.digest {
			c++
		}
	}
	return c
}

// certificate collects every matching COMMIT, in replica order.
func (sl *slot) certificate() Certificate {
	cert := Certificate{View: sl.view, Seq: sl.seq, Digest: sl.digest, Timestamp: sl.timestamp}
	for _, v := range sl.commits {
		if v.env != nil && v.digest == sl.digest {
			cert.Commits = append(cert.Commits, *v.env)
		}
	}
	return cert
}

// preparedCert is this replica's proof that digest prepared at (view, seq),
// with the batch when this replica holds it.
type preparedCert struct {
	view, seq  uint64
	digest     crypto.Digest
	timestamp  int64
	prePrepare *Envelope
	prepares   []*Envelope
	hasBatch   bool
	batch      [][]byte
	reqHashes  []crypto.Digest
}

func (c *preparedCert) setBatch(batch [][]byte, hashes []crypto.Digest) {
	c.hasBatch = true
	c.batch = batch
	c.reqHashes = hashes
}

// wire returns the certificate as a VIEW-CHANGE carries it: no batch.
func (c *preparedCert) wire() PreparedCert {
	pc := PreparedCert{PrePrepare: withoutBatch(c.prePrepare), Prepares: make([]Envelope, len(c.prepares))}
	for i, p := range c.prepares {
		pc.Prepares[i] = *p
	}
	return pc
}

// withoutBatch copies an envelope without its batch.
func withoutBatch(e *Envelope) Envelope {
	return Envelope{Kind: e.Kind, Body: e.Body, Sig: e.Sig}
}

// storedBatch is a batch this replica accepted for (view, seq), kept past the
// view: any digest a backup PREPAREd may be re-issued by a later NEW-VIEW
// (its PREPARE can be part of a certificate although this replica never
// prepared), and the replicas that PREPAREd it are the ones holding its batch.
type storedBatch struct {
	digest    crypto.Digest
	batch     [][]byte
	reqHashes []crypto.Digest
}
