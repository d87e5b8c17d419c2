package node

import (
	"context"
	"fmt"
	"time"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/pbft"
)

const fetchRequestTimeout = 5 * time.Second

// fetchRequest asks a peer for committed entries from seq From on.
type fetchRequest struct {
	From  uint64 `cbor:"1,keyasint"`
	Limit uint32 `cbor:"2,keyasint"`
}

// fetchedEntry is what catching up needs of an entry: the batch and its commit
// certificate. Results are not taken from the peer: the fetcher re-executes.
type fetchedEntry struct {
	Requests    [][]byte `cbor:"1,keyasint"`
	Certificate []byte   `cbor:"2,keyasint"`
}

type fetchResponse struct {
	Entries []fetchedEntry `cbor:"1,keyasint"`
}

// serveFetch answers a peer's fetch request from the event log.
func (n *Node) serveFetch(from uint32, req []byte) []byte {
	var fr fetchRequest
	if err := codec.Unmarshal(req, &fr); err != nil {
		n.metrics.refused("malformed_fetch")
		return codec.MustMarshal(&fetchResponse{})
	}
	limit := int(fr.Limit)
	if limit > fetchEntriesMax || limit <= 0 {
		limit = fetchEntriesMax
	}
	entries, err := n.store.Entries(fr.From, limit)
	if err != nil {
		n.log.Warn("serving fetch failed", "peer", from, "from", fr.From, "err", err)
		return codec.MustMarshal(&fetchResponse{})
	}
	var resp fetchResponse
	size := 0
	for _, e := range entries {
		for _, r := range e.Requests {
			size += len(r)
		}
		size += len(e.Certificate)
		if size > fetchBytesMax && len(resp.Entries) > 0 {
			break
		}
		resp.Entries = append(resp.Entries, fetchedEntry{Requests: e.Requests, Certificate: e.Certificate})
	}
	return codec.MustMarshal(&resp)
}

func (n *Node) runFetcher() {
	defer n.wg.Done()
	next := (n.self + 1) % uint32(len(n.keys))
	for {
		select {
		case <-n.stop:
			return
		case <-n.fetchKick:
			next = n.catchUp(next)
		}
	}
}

// catchUp fetches entries past the applied head from peers in turn until one
// has nothing more to give. Every entry must carry a valid certificate for
// exactly the next seq and a batch matching its digest; a peer that serves
// anything else is counted and skipped. It returns the peer to ask first next time.
func (n *Node) catchUp(next uint32) uint32 {
	peers := len(n.keys)
	failures := 0
	for failures < peers-1 {
		if next == n.self {
			next = (next + 1) % uint32(peers)
			continue
		}
		got, err := n.fetchFrom(next)
		if err != nil {
			n.log.Debug("fetch failed", "peer", next, "err", err)
		}
		if err != nil || got == 0 {
			failures++
			next = (next + 1) % uint32(peers)
			continue
		}
		n.metrics.fetched.Add(float64(got))
		failures = 0
		select {
		case <-n.stop:
			return next
		default:
		}
	}
	return next
}

// fetchFrom asks one peer for the entries after the applied head, queues the
// verified ones for execution and waits until they are applied.
func (n *Node) fetchFrom(peer uint32) (int, error) {
	applied, _ := n.store.Applied()
	ctx, cancel := context.WithTimeout(context.Background(), fetchRequestTimeout)
	defer cancel()
	raw, err := n.host.Request(ctx, peer, codec.MustMarshal(&fetchRequest{From: applied + 1, Limit: fetchEntriesMax}))
	if err != nil {
		return 0, err
	}
	var resp fetchResponse
	if err := codec.Unmarshal(raw, &resp); err != nil {
		n.metrics.refused("malformed_fetch_response")
		return 0, fmt.Errorf("peer %d: %w", peer, err)
	}
	want := applied + 1
	for _, fe := range resp.Entries {
		var cert pbft.Certificate
		if err := codec.Unmarshal(fe.Certificate, &cert); err != nil {
			n.metrics.refused("bad_fetched_entry")
			return int(want - applied - 1), fmt.Errorf("peer %d: entry %d: certificate: %w", peer, want, err)
		}
		if err := checkCommitted(&cert, fe.Requests, want, n.keys, n.chain); err != nil {
			n.metrics.refused("bad_fetched_entry")
			return int(want - applied - 1), fmt.Errorf("peer %d: %w", peer, err)
		}
		it := execItem{seq: cert.Seq, batch: fe.Requests, cert: cert, fetched: true}
		select {
		case n.execCh <- it:
		case <-n.stop:
			return 0, nil
		}
		want++
	}
	if want == applied+1 {
		return 0, nil
	}
	if err := n.store.WaitSeq(ctx, want-1); err != nil {
		return int(want - applied - 1), fmt.Errorf("waiting for fetched entries to apply: %w", err)
	}
	return int(want - applied - 1), nil
}
