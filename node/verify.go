package node

import (
	"sync"
	"time"

	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/p2p"
	"github.com/ordoledger/ordo/pbft"
)

// requestCache remembers the hashes of client requests whose signatures this
// node has verified, so a request forwarded to it and later proposed in a
// PRE-PREPARE is verified once, not twice. Bounded FIFO.
type requestCache struct {
	mu   sync.Mutex
	max  int
	set  map[crypto.Digest]struct{}
	ring []crypto.Digest
	next int
}

func newRequestCache(max int) *requestCache {
	return &requestCache{max: max, set: make(map[crypto.Digest]struct{}, max)}
}

func (c *requestCache) has(h crypto.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.set[h]
	return ok
}

func (c *requestCache) add(h crypto.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[h]; ok {
		return
	}
	if len(c.ring) < c.max {
		c.ring = append(c.ring, h)
	} else {
		delete(c.set, c.ring[c.next])
		c.ring[c.next] = h
		c.next = (c.next + 1) % c.max
	}
	c.set[h] = struct{}{}
}

// inboundItem is one frame being verified: its decoded message or request and
// the range of signatures in the batch verifier that must all hold.
type inboundItem struct {
	msg      *pbft.Message
	request  []byte
	sigFirst int
	sigCount int
	hashes   []crypto.Digest // requests verified by this item's signatures
}

// runVerifier decodes and batch-verifies inbound frames, then routes them.
// Protocol messages go first, in small batches: a PREPARE must not wait
// behind a batch of forwarded client requests, whose signatures are most of
// the work and none of the latency. Frames taken off the transport wait in
// two bounded local queues.
func (n *Node) runVerifier() {
	defer n.wg.Done()
	in := n.host.Inbound()
	var proto, reqs []p2p.Inbound
	take := func(f p2p.Inbound) {
		if len(f.Frame) > 0 && f.Frame[0] == tagRequest {
			reqs = append(reqs, f)
		} else {
			proto = append(proto, f)
		}
	}
	for {
		if len(proto) == 0 && len(reqs) == 0 {
			select {
			case <-n.stop:
				return
			case f, ok := <-in:
				if !ok {
					return
				}
				take(f)
			}
		}
	drain:
		for len(proto)+len(reqs) < verifyQueueMax {
			select {
			case f, ok := <-in:
				if !ok {
					break drain
				}
				take(f)
			default:
				break drain
			}
		}
		var chunk []p2p.Inbound
		if len(proto) > 0 {
			k := min(len(proto), verifyBatchMax)
			chunk, proto = proto[:k], proto[k:]
		} else {
			k := min(len(reqs), verifyBatchMax)
			chunk, reqs = reqs[:k], reqs[k:]
		}
		if !n.verifyAndRoute(chunk) {
			return
		}
	}
}

// verifyAndRoute returns false when the node is stopping.
func (n *Node) verifyAndRoute(frames []p2p.Inbound) bool {
	start := time.Now()
	bv := crypto.NewBatchVerifier(n.chain, len(frames))
	items := make([]inboundItem, 0, len(frames))
	for _, f := range frames {
		it, ok := n.decodeFrame(f, bv)
		if ok {
			items = append(items, it)
		}
	}
	_, valid := bv.Verify()
	n.metrics.verifyChunkSigs.Observe(float64(bv.Len()))
	since(n.metrics.verifySeconds, start)
	for _, it := range items {
		good := true
		for i := it.sigFirst; i < it.sigFirst+it.sigCount; i++ {
			good = good && valid[i]
		}
		if !good {
			n.metrics.refused("bad_signature")
			continue
		}
		for _, h := range it.hashes {
			n.verified.add(h)
		}
		if !n.route(it) {
			return false
		}
	}
	return true
}

// decodeFrame decodes one frame and queues its unverified signatures.
func (n *Node) decodeFrame(f p2p.Inbound, bv *crypto.BatchVerifier) (inboundItem, bool) {
	if len(f.Frame) < 1 {
		n.metrics.refused("empty_frame")
		return inboundItem{}, false
	}
	it := inboundItem{sigFirst: bv.Len()}
	switch f.Frame[0] {
	case tagRequest:
		raw := f.Frame[1:]
		if !n.queueRequest(raw, bv, &it) {
			return it, false
		}
		it.request = raw
	case tagEnvelope:
		env, err := pbft.DecodeEnvelope(f.Frame[1:])
		if err != nil {
			n.metrics.refused("malformed")
			return it, false
		}
		m, err := env.Open(len(n.keys))
		if err != nil {
			n.metrics.refused("malformed")
			return it, false
		}
		if m.From != f.From {
			// Replicas only send their own messages; one that relays or
			// impersonates another is refused.
			n.metrics.refused("wrong_sender")
			return it, false
		}
		bv.Add(n.keys[m.From], env.Kind.String(), env.Body, env.Sig)
		for _, raw := range env.Batch {
			if !n.queueRequest(raw, bv, &it) {
				n.metrics.refused("bad_request_in_pre_prepare")
				return it, false
			}
		}
		it.msg = &m
	default:
		n.metrics.refused("unknown_frame")
		return it, false
	}
	it.sigCount = bv.Len() - it.sigFirst
	return it, true
}

// queueRequest checks a client request's size, encoding and admission and
// queues its signature unless this node verified it before.
func (n *Node) queueRequest(raw []byte, bv *crypto.BatchVerifier, it *inboundItem) bool {
	if len(raw) > n.genesis.Params.RequestBytesMax {
		n.metrics.refused("request_too_large")
		return false
	}
	h := crypto.Hash(raw)
	if n.verified.has(h) {
		return true
	}
	sr, req, err := pbft.DecodeRequest(raw)
	if err != nil {
		n.metrics.refused("malformed_request")
		return false
	}
	if !n.admits(req.Client) {
		n.metrics.refused("client_not_admitted")
		return false
	}
	bv.Add(req.Client, pbft.KindRequest.String(), sr.Body, sr.Sig)
	it.hashes = append(it.hashes, h)
	return true
}

func (n *Node) route(it inboundItem) bool {
	if n.halted.Load() != nil && (it.request != nil || it.msg.Executed == nil) {
		n.metrics.refused("halted")
		return true
	}
	switch {
	case it.request != nil:
		select {
		case n.submitCh <- submission{raw: it.request}:
		case <-n.stop:
			return false
		}
	case it.msg.Executed != nil:
		n.replies.addExecuted(it.msg.Executed, it.msg.Env)
	default:
		select {
		case n.stepCh <- *it.msg:
		case <-n.stop:
			return false
		}
	}
	return true
}

// admittedKeys remembers the admission answer for client keys: checking a key
// for small order decompresses a curve point, too slow to repeat per request.
// Bounded: it starts afresh when full.
type admittedKeys struct {
	mu  sync.Mutex
	ans map[crypto.PublicKey]bool
}

// admits reports whether a client key may submit: admitted by genesis and a
// usable key (under ZIP-215 anyone can sign for a small-order key).
func (n *Node) admits(k crypto.PublicKey) bool {
	c := &n.admitted
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok, seen := c.ans[k]; seen {
		return ok
	}
	if len(c.ans) >= admittedKeysMax || c.ans == nil {
		c.ans = make(map[crypto.PublicKey]bool)
	}
	ok := n.genesis.Admits(k) && !k.Weak()
	c.ans[k] = ok
	return ok
}
