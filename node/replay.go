package node

import (
	"fmt"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/eventlog"
	"github.com/ordoledger/ordo/ledger"
	"github.com/ordoledger/ordo/pbft"
)

// logTimeAfter is the log time of a batch proposed at proposed after a batch
// at prev: strictly increasing, and a function of the log alone.
func logTimeAfter(prev, proposed int64) int64 {
	if proposed <= prev {
		return prev + 1
	}
	return proposed
}

// applyBatch executes one committed batch into store: the one code path for
// batches the core delivers, batches fetched from peers, and verify's replay.
func applyBatch(store *eventlog.Log, m *ledger.Machine, cert *pbft.Certificate, batch [][]byte, logTime int64) (*eventlog.Entry, error) {
	reqs := make([]ledger.Request, len(batch))
	for i, raw := range batch {
		reqs[i].Hash = crypto.Hash(raw)
		// A request that does not decode executes as an empty command and
		// fails deterministically on every replica.
		if _, r, err := pbft.DecodeRequest(raw); err == nil {
			reqs[i].Client, reqs[i].ClientSeq, reqs[i].Command = r.Client, r.Seq, r.Command
		}
	}
	return store.Apply(eventlog.EntryHeader{
		Seq:         cert.Seq,
		View:        cert.View,
		Timestamp:   logTime,
		Digest:      cert.Digest,
		Requests:    batch,
		Certificate: codec.MustMarshal(cert),
	}, func(tx *eventlog.Tx) ([][]byte, error) {
		return m.Execute(tx, reqs)
	})
}

// Replayer checks a log entry by entry against nothing but the genesis: every
// certificate, every batch digest, the hash chain, and the state, by executing
// every batch again into a fresh in-memory log and comparing results and hashes.
type Replayer struct {
	keys    []crypto.PublicKey
	chain   crypto.Digest
	store   *eventlog.Log
	machine *ledger.Machine
	prev    crypto.Digest
	lastTs  int64
	seq     uint64
	events  uint64
}

// NewReplayer starts an empty replay for genesis g. The replayed state lives in
// dir (a fresh directory, so a long log need not fit in memory), or in memory
// when dir is "".
func NewReplayer(g *Genesis, dir string) (*Replayer, error) {
	store, err := eventlog.Open(eventlog.Options{Dir: dir, InMemory: dir == "", Genesis: g.Hash()})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	m, err := ledger.NewMachine(ledger.Config{})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("replay: %w", err)
	}
	return &Replayer{keys: g.Keys(), chain: g.Hash(), store: store, machine: m, prev: g.Hash()}, nil
}

// Check verifies the next entry; entries must come in seq order from 1.
func (r *Replayer) Check(e *eventlog.Entry) error {
	want := r.seq + 1
	if e.Seq != want {
		return fmt.Errorf("entry %d: expected entry %d next", e.Seq, want)
	}
	var cert pbft.Certificate
	if err := codec.Unmarshal(e.Certificate, &cert); err != nil {
		return fmt.Errorf("entry %d: certificate does not decode: %w", e.Seq, err)
	}
	if err := checkCommitted(&cert, e.Requests, e.Seq, r.keys, r.chain); err != nil {
		return err
	}
	if cert.Digest != e.Digest || cert.View != e.View {
		return fmt.Errorf("entry %d: stored (view %d, digest %v) differ from the certified (view %d, digest %v)", e.Seq, e.View, e.Digest, cert.View, cert.Digest)
	}
	if e.PrevHash != r.prev {
		return fmt.Errorf("entry %d: prev_hash %v does not link to the previous entry's hash %v", e.Seq, e.PrevHash, r.prev)
	}
	logTime := logTimeAfter(r.lastTs, cert.Timestamp)
	if e.Timestamp != logTime {
		return fmt.Errorf("entry %d: timestamp %d, but the certified proposal gives log time %d", e.Seq, e.Timestamp, logTime)
	}
	got, err := applyBatch(r.store, r.machine, &cert, e.Requests, logTime)
	if err != nil {
		return fmt.Errorf("entry %d: replay: %w", e.Seq, err)
	}
	if got.ResultsRoot != e.ResultsRoot {
		return fmt.Errorf("entry %d: replayed results root %v differs from the stored %v", e.Seq, got.ResultsRoot, e.ResultsRoot)
	}
	if got.Hash != e.Hash {
		return fmt.Errorf("entry %d: replayed hash %v differs from the stored %v", e.Seq, got.Hash, e.Hash)
	}
	r.seq, r.prev, r.lastTs = e.Seq, e.Hash, logTime
	r.events += got.EventCount
	return nil
}

// Summary reports what has been checked so far.
func (r *Replayer) Summary() (entries, events uint64, head crypto.Digest) {
	return r.seq, r.events, r.prev
}

// Close releases the replay's in-memory log.
func (r *Replayer) Close() error { return r.store.Close() }
