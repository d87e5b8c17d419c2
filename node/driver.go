package node

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/pbft"
)

// Protocol-state keys in the event log's meta key space.
const (
	metaView         = "pbft/view"
	metaSignedPrefix = "pbft/signed/"
)

// Frame tags: the first byte of every p2p frame says what follows.
const (
	tagEnvelope byte = 1 // a replica-signed pbft.Envelope
	tagRequest  byte = 2 // a client's SignedRequest forwarded to every validator
)

func frameOf(tag byte, body []byte) []byte {
	f := make([]byte, 1+len(body))
	f[0] = tag
	copy(f[1:], body)
	return f
}

type submission struct {
	raw  []byte
	done chan error // nil for forwarded requests nobody waits on
}

// caughtUpNote is an entry the fetcher applied, for the driver to tell the core.
type caughtUpNote struct {
	seq       uint64
	timestamp int64
	batch     [][]byte
}

func signedKey(seq uint64, counter uint64) string {
	return fmt.Sprintf("%s%016x/%016x", metaSignedPrefix, seq, counter)
}

func parseSignedKey(k string) (seq, counter uint64, err error) {
	parts := strings.Split(strings.TrimPrefix(k, metaSignedPrefix), "/")
	if len(parts) != 2 {
		return 0, 0, fmt.Errorf("malformed protocol-state key %q", k)
	}
	if seq, err = strconv.ParseUint(parts[0], 16, 64); err != nil {
		return 0, 0, fmt.Errorf("protocol-state key %q: %w", k, err)
	}
	if counter, err = strconv.ParseUint(parts[1], 16, 64); err != nil {
		return 0, 0, fmt.Errorf("protocol-state key %q: %w", k, err)
	}
	return seq, counter, nil
}

// envelopeSeq returns the sequence number a signed protocol message is about.
func envelopeSeq(e *pbft.Envelope, n int) (uint64, error) {
	m, err := e.Open(n)
	if err != nil {
		return 0, err
	}
	switch {
	case m.PrePrepare != nil:
		return m.PrePrepare.Seq, nil
	case m.Prepare != nil:
		return m.Prepare.Seq, nil
	case m.Commit != nil:
		return m.Commit.Seq, nil
	case m.Executed != nil:
		return m.Executed.Seq, nil
	}
	return 0, fmt.Errorf("envelope of kind %v has no sequence number", e.Kind)
}

// restoreState rebuilds the core's State from the event log and the protocol
// state persisted before every vote this replica sent.
func (n *Node) restoreState() (pbft.State, error) {
	applied, _ := n.store.Applied()
	st := pbft.State{Delivered: applied}
	if applied > 0 {
		e, err := n.store.Entry(applied)
		if err != nil {
			return st, fmt.Errorf("node: restore: entry %d: %w", applied, err)
		}
		st.LastTimestamp = e.Timestamp
		n.lastTimestamp = e.Timestamp
	}
	v, ok, err := n.store.GetMeta(metaView)
	if err != nil {
		return st, fmt.Errorf("node: restore view: %w", err)
	}
	if ok {
		if len(v) != 8 {
			return st, fmt.Errorf("node: restore view: %d bytes, want 8", len(v))
		}
		st.View = binary.BigEndian.Uint64(v)
	}
	n.signedKeys = map[uint64][]string{}
	err = n.store.ScanMeta(metaSignedPrefix, func(key string, val []byte) error {
		seq, counter, err := parseSignedKey(key)
		if err != nil {
			return err
		}
		if counter >= n.signedCounter {
			n.signedCounter = counter + 1
		}
		n.signedKeys[seq] = append(n.signedKeys[seq], key)
		if seq <= applied {
			return nil
		}
		env, err := pbft.DecodeEnvelope(val)
		if err != nil {
			return fmt.Errorf("protocol-state %s: %w", key, err)
		}
		st.Signed = append(st.Signed, *env)
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("node: restore signed messages: %w", err)
	}
	n.appliedSeq.Store(applied)
	return st, nil
}

// runDriver owns the replica: every input goes through here, and the actions
// of a whole round are carried out together (one fsync for all its votes).
func (n *Node) runDriver() {
	defer n.wg.Done()
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	var acts []pbft.Action
	for {
		select {
		case <-n.stop:
			return
		case s := <-n.submitCh:
			acts = n.submit(acts, s)
		case m := <-n.stepCh:
			acts = append(acts, n.replica.Step(m)...)
		case now := <-ticker.C:
			acts = append(acts, n.replica.Tick(now)...)
		case <-n.caughtUpKick:
			acts = n.noteCaughtUp(acts)
		}
	drain:
		for i := 0; i < driverDrainMax; i++ {
			select {
			case s := <-n.submitCh:
				acts = n.submit(acts, s)
			case m := <-n.stepCh:
				acts = append(acts, n.replica.Step(m)...)
			default:
				break drain
			}
		}
		if !n.carry(acts) {
			return
		}
		acts = acts[:0]
		st := n.replica.Status()
		n.status.Store(&st)
	}
}

func (n *Node) submit(acts []pbft.Action, s submission) []pbft.Action {
	more, err := n.replica.Submit(s.raw)
	if s.done != nil {
		s.done <- err
	}
	return append(acts, more...)
}

// noteCaughtUp tells the core about entries the fetcher applied: their requests
// are no longer pending, and Delivered moves to the last of them.
func (n *Node) noteCaughtUp(acts []pbft.Action) []pbft.Action {
	n.fetchedMu.Lock()
	notes := n.fetched
	n.fetched = nil
	n.fetchedMu.Unlock()
	if len(notes) == 0 {
		return acts
	}
	for _, c := range notes {
		n.replica.Forget(c.batch)
	}
	last := notes[len(notes)-1]
	return append(acts, n.replica.CaughtUp(last.seq, last.timestamp)...)
}

// carry performs a round's actions: first one durable write of every envelope
// the round signed (and of the view), then sends and deliveries in order. It
// returns false when the node must stop voting because storage failed.
func (n *Node) carry(acts []pbft.Action) bool {
	set := map[string][]byte{}
	for _, a := range acts {
		p, ok := a.(pbft.Persist)
		if !ok {
			continue
		}
		var view [8]byte
		binary.BigEndian.PutUint64(view[:], p.View)
		set[metaView] = view[:]
		for _, e := range p.Envelopes {
			seq, err := envelopeSeq(e, len(n.keys))
			if err != nil {
				panic(fmt.Sprintf("node: the core asked to persist an envelope it cannot open: %v", err))
			}
			k := signedKey(seq, n.signedCounter)
			n.signedCounter++
			set[k] = codec.MustMarshal(e)
			n.signedKeys[seq] = append(n.signedKeys[seq], k)
		}
	}
	if len(set) > 0 {
		if err := n.store.PutMeta(set, n.prunableSignedKeys(), true); err != nil {
			n.log.Error("persisting protocol state failed; this replica stops voting", "err", err)
			n.metrics.halted.Set(1)
			return false
		}
		n.metrics.fsyncs.Inc()
	}
	for _, a := range acts {
		switch a := a.(type) {
		case pbft.Broadcast:
			n.host.Broadcast(frameOf(tagEnvelope, codec.MustMarshal(a.Env)))
		case pbft.Send:
			n.host.Send(a.To, frameOf(tagEnvelope, codec.MustMarshal(a.Env)))
		case pbft.Deliver:
			it := execItem{seq: a.Seq, batch: a.Batch, cert: a.Cert}
			select {
			case n.execCh <- it:
			case <-n.stop:
				return false
			}
		case pbft.Fetch:
			n.kickFetch(a.AfterSeq)
		}
	}
	return true
}

// prunableSignedKeys returns the keys of signed messages for seqs the event log
// has applied durably: those can never be needed to avoid a conflicting vote.
func (n *Node) prunableSignedKeys() []string {
	applied := n.appliedSeq.Load()
	var del []string
	for seq, keys := range n.signedKeys {
		if seq <= applied {
			del = append(del, keys...)
			delete(n.signedKeys, seq)
		}
	}
	return del
}

func (n *Node) kickFetch(after uint64) {
	select {
	case n.fetchKick <- after:
	default:
	}
}
