package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// The resource-manager budget. Only validators get past the gater, so these
// limits guard a node against one faulty validator, not against the open
// internet, and they are set so that a healthy mesh is never throttled
// (bursts of 100k frames a second between local nodes). The transient scope,
// which covers connections before their handshake, keeps libp2p's defaults.
//
//	conn memory   = connWindowsMax × yamuxWindowBytes       (yamux receive windows)
//	peer memory   = connsPerPeerMax × conn memory + 2 × largest frame bound
//	system memory = peer memory × other validators
//	stream memory = largest frame bound                      (one reserved frame at a time)
const (
	// yamuxWindowBytes is libp2p's yamux MaxStreamWindowSize: the most one
	// stream's receive window grows to.
	yamuxWindowBytes = 16 << 20
	// connWindowsMax is how many streams of one connection may have a fully
	// grown window: yamux only grows a window above half the conn budget when
	// the stream is busy, so this is generous for two pbft streams and
	// occasional fetches.
	connWindowsMax = 4
	// connsPerPeerMax allows a simultaneous dial from both sides plus a
	// replacement connection racing the dead one after a restart.
	connsPerPeerMax = 4
	// pbftStreamsPerPeerMax allows one stream per direction plus a new one
	// racing a stream whose death has not been noticed yet.
	pbftStreamsPerPeerMax = 4
	// fetchStreamsPerPeerMax bounds concurrent requests to and from one peer,
	// and so the request-handler goroutines one peer can start.
	fetchStreamsPerPeerMax = 32
	// libp2pStreamsPerPeer leaves room for libp2p's own short-lived streams
	// (identify) in the per-peer stream budget.
	libp2pStreamsPerPeer = 8
)

func newResourceManager(cfg Config) (network.ResourceManager, error) {
	frameMax := int64(max(cfg.FrameBytesMax, cfg.RequestBytesMax, cfg.ResponseBytesMax))
	others := int64(max(len(cfg.Peers)-1, 1))
	connMemory := int64(connWindowsMax * yamuxWindowBytes)
	peerMemory := connsPerPeerMax*connMemory + 2*frameMax
	streamsPerPeer := pbftStreamsPerPeerMax + fetchStreamsPerPeerMax + libp2pStreamsPerPeer

	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	defaults := scaling.AutoScale()

	perPeer := rcmgr.ResourceLimits{
		Streams:         rcmgr.LimitVal(2 * streamsPerPeer),
		StreamsInbound:  rcmgr.LimitVal(streamsPerPeer),
		StreamsOutbound: rcmgr.LimitVal(streamsPerPeer),
		Conns:           rcmgr.LimitVal(connsPerPeerMax),
		ConnsInbound:    rcmgr.LimitVal(connsPerPeerMax),
		ConnsOutbound:   rcmgr.LimitVal(connsPerPeerMax),
		Memory:          rcmgr.LimitVal64(peerMemory),
	}
	// Protocol and service scopes are not where the bound is: the peer and
	// system scopes are, so these only stop libp2p's defaults from throttling.
	open := rcmgr.ResourceLimits{
		Streams:         rcmgr.Unlimited,
		StreamsInbound:  rcmgr.Unlimited,
		StreamsOutbound: rcmgr.Unlimited,
		Memory:          rcmgr.Unlimited64,
	}
	perProtocolPeer := func(streams int) rcmgr.ResourceLimits {
		return rcmgr.ResourceLimits{
			Streams:         rcmgr.LimitVal(2 * streams),
			StreamsInbound:  rcmgr.LimitVal(streams),
			StreamsOutbound: rcmgr.LimitVal(streams),
			Memory:          rcmgr.Unlimited64,
		}
	}
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Streams:         rcmgr.LimitVal(2 * int64(streamsPerPeer) * others),
			StreamsInbound:  rcmgr.LimitVal(int64(streamsPerPeer) * others),
			StreamsOutbound: rcmgr.LimitVal(int64(streamsPerPeer) * others),
			Memory:          rcmgr.LimitVal64(peerMemory * others),
		},
		PeerDefault:        perPeer,
		ServiceDefault:     open,
		ServicePeerDefault: open,
		Service:            map[string]rcmgr.ResourceLimits{serviceName: open},
		ServicePeer:        map[string]rcmgr.ResourceLimits{serviceName: perPeer},
		Protocol: map[protocol.ID]rcmgr.ResourceLimits{
			PBFTProtocolID:  open,
			FetchProtocolID: open,
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			PBFTProtocolID:  perProtocolPeer(pbftStreamsPerPeerMax),
			FetchProtocolID: perProtocolPeer(fetchStreamsPerPeerMax),
		},
		Conn:   rcmgr.ResourceLimits{Memory: rcmgr.LimitVal64(connMemory)},
		Stream: rcmgr.ResourceLimits{Memory: rcmgr.LimitVal64(frameMax)},
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(defaults)))
	if err != nil {
		return nil, fmt.Errorf("p2p resource manager: %w", err)
	}
	return rm, nil
}
