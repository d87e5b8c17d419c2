//go:build byzantine

package node

import (
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/pbft"
)

// byzantineBuild: this binary was built with -tags byzantine, for tests that
// need a lying validator. Release builds never contain this file.
const byzantineBuild = true

// misbehave rewrites the messages a round is about to send, per the node's
// Byzantine mode. It runs after the honest persist, so the node's own disk
// still holds what an honest replica would have signed.
func (n *Node) misbehave(acts []pbft.Action) []pbft.Action {
	out := make([]pbft.Action, 0, len(acts))
	for _, a := range acts {
		b, isBroadcast := a.(pbft.Broadcast)
		switch {
		case n.cfg.Byzantine == ByzantineSilent:
			if _, isSend := a.(pbft.Send); isSend || isBroadcast {
				continue
			}
		case n.cfg.Byzantine == ByzantineEquivocate && isBroadcast && b.Env.Kind == pbft.KindPrePrepare:
			out = append(out, n.equivocate(b.Env)...)
			continue
		case n.cfg.Byzantine == ByzantineWrongDigest && isBroadcast && (b.Env.Kind == pbft.KindPrepare || b.Env.Kind == pbft.KindCommit):
			out = append(out, pbft.Broadcast{Env: n.wrongDigest(b.Env)})
			continue
		}
		out = append(out, a)
	}
	return out
}

// equivocate sends the honest PRE-PREPARE to the lower half of the other
// replicas and a conflicting one (same batch, another timestamp, so another
// digest) to the upper half.
func (n *Node) equivocate(env *pbft.Envelope) []pbft.Action {
	m, err := env.Open(len(n.keys))
	if err != nil {
		return []pbft.Action{pbft.Broadcast{Env: env}}
	}
	pp := *m.PrePrepare
	pp.Timestamp++
	pp.Digest = pbft.BatchDigest(pp.Timestamp, env.Batch)
	other := pbft.Seal(n.signer, pbft.KindPrePrepare, &pp)
	other.Batch = env.Batch
	var acts []pbft.Action
	for i := range n.keys {
		to := uint32(i)
		if to == n.self {
			continue
		}
		if i < len(n.keys)/2 {
			acts = append(acts, pbft.Send{To: to, Env: env})
		} else {
			acts = append(acts, pbft.Send{To: to, Env: other})
		}
	}
	return acts
}

// wrongDigest re-signs a PREPARE or COMMIT with a digest nobody proposed.
func (n *Node) wrongDigest(env *pbft.Envelope) *pbft.Envelope {
	m, err := env.Open(len(n.keys))
	if err != nil {
		return env
	}
	switch {
	case m.Prepare != nil:
		p := *m.Prepare
		p.Digest = crypto.Hash(p.Digest[:])
		return pbft.Seal(n.signer, pbft.KindPrepare, &p)
	case m.Commit != nil:
		c := *m.Commit
		c.Digest = crypto.Hash(c.Digest[:])
		return pbft.Seal(n.signer, pbft.KindCommit, &c)
	}
	return env
}
