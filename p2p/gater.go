package p2p

import (
	"log/slog"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// validatorGater admits only the genesis validators' peer IDs, in both
// directions. An inbound connection is judged once its Noise handshake has
// authenticated the remote identity, before a muxer is negotiated, so an
// outsider never gets a stream.
type validatorGater struct {
	validators map[peer.ID]uint32 // immutable after construction
	refused    *atomic.Uint64
	log        *slog.Logger
}

func (g *validatorGater) allowed(p peer.ID, dir network.Direction) bool {
	if _, ok := g.validators[p]; ok {
		return true
	}
	if n := g.refused.Add(1); worthLogging(n) {
		g.log.Warn("p2p: refused a connection with a peer outside the validator set",
			"peer", p, "direction", dir, "refused_total", n)
	}
	return false
}

func (g *validatorGater) InterceptPeerDial(p peer.ID) bool {
	return g.allowed(p, network.DirOutbound)
}

func (g *validatorGater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept admits every socket: the remote identity is not known until
// the handshake, and InterceptSecured judges it then.
func (g *validatorGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *validatorGater) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p, dir)
}

func (g *validatorGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// worthLogging reports whether the n-th occurrence of a repeated fault should
// be logged: the 1st, 2nd, 4th, 8th… so that a peer repeating it cannot
// flood the log, while the counters still see every one.
func worthLogging(n uint64) bool { return n&(n-1) == 0 }
