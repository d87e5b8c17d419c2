package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// Protocol IDs. A change to either wire format gets a new version.
const (
	PBFTProtocolID  = "/ordo/pbft/1.0.0"
	FetchProtocolID = "/ordo/fetch/1.0.0"
	// serviceName is the resource-manager service every ordo stream joins.
	serviceName = "ordo.p2p"
	// streamBufferBytes sizes the bufio reader and writer of a pbft stream:
	// large enough to carry hundreds of small consensus messages per write.
	streamBufferBytes = 64 << 10
	userAgent         = "ordo"
)

var (
	// ErrUnknownPeer reports a validator index outside the set, or Self.
	ErrUnknownPeer = errors.New("not a peer validator index")
	// ErrClosed reports use of a closed Host.
	ErrClosed = errors.New("p2p host closed")
)

// Inbound is one frame received from a validator. From is the sender's
// replica index as authenticated by the connection, never read from the frame.
type Inbound struct {
	From  uint32
	Frame []byte
}

// Stats are cumulative counters since New.
type Stats struct {
	// FramesSent counts frames flushed to a peer's stream.
	FramesSent uint64
	// FramesReceived counts frames handed to Inbound.
	FramesReceived uint64
	// FramesDropped counts frames refused by Send because the peer's queue was
	// full (or the host closed).
	FramesDropped uint64
	// FramesRefused counts frames above FrameBytesMax (on send or receive),
	// frames sent to an unknown index or to Self, inbound frames the resource
	// manager had no memory for, and oversized requests and responses.
	FramesRefused uint64
	// FramesLost counts frames written to a stream that failed before they
	// were flushed: they may or may not have arrived.
	FramesLost uint64
	// Reconnects counts pbft streams re-established after one failed.
	Reconnects uint64
	// StreamsUp is a gauge, not a counter: how many peers this host has an
	// outbound pbft stream open to right now.
	StreamsUp uint64
	// ConnsRefused counts connections the gater refused: peers outside the
	// validator set.
	ConnsRefused uint64
	// RequestsSent, RequestsFailed and RequestsServed count the fetch protocol.
	RequestsSent, RequestsFailed, RequestsServed uint64
}

type counters struct {
	framesSent, framesReceived, framesDropped, framesRefused, framesLost atomic.Uint64
	reconnects, connsRefused                                             atomic.Uint64
	requestsSent, requestsFailed, requestsServed                         atomic.Uint64
}

// RequestHandler answers one fetch request from validator from. Its result is
// the response frame; a result above ResponseBytesMax is refused and the
// requester sees the stream reset.
type RequestHandler func(from uint32, req []byte) []byte

// Host is a validator's libp2p endpoint. All methods are safe for concurrent
// use.
type Host struct {
	cfg   Config
	log   *slog.Logger
	lh    host.Host
	ids   []peer.ID          // by replica index
	index map[peer.ID]uint32 // peer ID → replica index, immutable
	links []*link            // by replica index; nil at Self
	inbox chan Inbound       // closed by Close once no reader is left
	reqFn atomic.Pointer[RequestHandler]
	stats counters

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex // guards started and closed, and wg.Add against Close
	started bool
	closed  bool
	wg      sync.WaitGroup
}

// New builds the host and starts listening. It does not dial: see Start.
func New(cfg Config) (*Host, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := libp2pKey(cfg.Key)
	if err != nil {
		return nil, err
	}
	h := &Host{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "p2p", "self", cfg.Self),
		ids:   make([]peer.ID, len(cfg.Peers)),
		index: make(map[peer.ID]uint32, len(cfg.Peers)),
		links: make([]*link, len(cfg.Peers)),
		inbox: make(chan Inbound, cfg.InboundQueueLen),
	}
	for i, p := range cfg.Peers {
		id, err := peerIDFromPublicKey(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("p2p: peer %d: %w", i, err)
		}
		h.ids[i] = id
		h.index[id] = uint32(i)
		if uint32(i) != cfg.Self {
			h.links[i] = &link{index: uint32(i), id: id, queue: make(chan []byte, cfg.SendQueueLen)}
		}
	}
	rm, err := newResourceManager(cfg)
	if err != nil {
		return nil, err
	}
	gater := &validatorGater{validators: h.index, refused: &h.stats.connsRefused, log: h.log}
	lh, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		// Dialing from the listen port (reuseport) only helps NAT traversal,
		// and two validators dialing each other at once from their listen
		// ports can meet in one TCP simultaneous open where both sides act
		// as the Noise initiator and the handshake fails.
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionGater(gater),
		libp2p.ResourceManager(rm),
		// The validator set is fixed and gated: nothing to trim.
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.DisableRelay(),
		libp2p.Ping(false),
		libp2p.DisableMetrics(),
		// Validators know each other's addresses from genesis; addresses
		// observed by peers would only add noise.
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.UserAgent(userAgent),
	)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: start libp2p host: %w", err)
	}
	h.lh = lh
	h.ctx, h.cancel = context.WithCancel(context.Background())
	for i, p := range cfg.Peers {
		if uint32(i) == cfg.Self {
			continue
		}
		if err := h.SetPeerAddrs(uint32(i), p.Addrs); err != nil {
			h.cancel()
			lh.Close()
			return nil, err
		}
	}
	lh.SetStreamHandler(PBFTProtocolID, h.handlePBFT)
	lh.SetStreamHandler(FetchProtocolID, h.handleFetch)
	h.log.Info("p2p: listening", "peer_id", lh.ID(), "addrs", h.Addrs())
	return h, nil
}

// SetPeerAddrs replaces the multiaddrs the host dials for validator index.
// Tests use it after peers listened on port 0; a node may use it when an
// operator moves a validator.
func (h *Host) SetPeerAddrs(index uint32, addrs []string) error {
	if index == h.cfg.Self || int(index) >= len(h.ids) {
		return fmt.Errorf("p2p: set addresses of %d: %w", index, ErrUnknownPeer)
	}
	parsed, err := parseAddrs(index, h.cfg.Peers[index].PublicKey, addrs)
	if err != nil {
		return fmt.Errorf("p2p: set addresses: %w", err)
	}
	ps := h.lh.Peerstore()
	id := h.ids[index]
	ps.ClearAddrs(id)
	ps.AddAddrs(id, parsed, peerstore.PermanentAddrTTL)
	return nil
}

// SetRequestHandler installs the fetch protocol's handler. Call it before
// Start; until a handler is set, inbound requests are reset. Close waits for
// running handlers to return, so a handler must bound its own work.
func (h *Host) SetRequestHandler(fn func(from uint32, req []byte) []byte) {
	rh := RequestHandler(fn)
	h.reqFn.Store(&rh)
}

// Start begins dialing every peer and keeps one pbft stream to each up. It is
// idempotent, and a no-op after Close.
func (h *Host) Start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started || h.closed {
		return
	}
	h.started = true
	for _, l := range h.links {
		if l == nil {
			continue
		}
		h.wg.Add(1)
		go h.runLink(l)
	}
}

// Send queues frame for validator to without blocking. It reports false when
// the frame is dropped: the peer's queue is full (SendQueueLen frames or
// SendQueueBytesMax bytes), the frame is above FrameBytesMax, to is not a
// peer, or the host is closed; every drop is counted. The frame must not be
// modified after Send.
func (h *Host) Send(to uint32, frame []byte) bool {
	if int(to) >= len(h.links) || h.links[to] == nil || len(frame) > h.cfg.FrameBytesMax {
		h.stats.framesRefused.Add(1)
		return false
	}
	l := h.links[to]
	size := int64(len(frame))
	if h.ctx.Err() != nil || l.queuedBytes.Add(size) > int64(h.cfg.SendQueueBytesMax) {
		l.queuedBytes.Add(-size)
		h.stats.framesDropped.Add(1)
		return false
	}
	select {
	case l.queue <- frame:
		return true
	default:
		l.queuedBytes.Add(-size)
		h.stats.framesDropped.Add(1)
		return false
	}
}

// Broadcast queues frame for every peer but Self, as Send does for each.
func (h *Host) Broadcast(frame []byte) {
	for _, l := range h.links {
		if l != nil {
			h.Send(l.index, frame)
		}
	}
}

// Inbound delivers frames from all peers. Frames from one peer arrive in the
// order they were sent. The channel is closed when Close returns.
func (h *Host) Inbound() <-chan Inbound { return h.inbox }

// PeerID returns this host's libp2p peer ID.
func (h *Host) PeerID() string { return h.lh.ID().String() }

// Addrs returns the multiaddrs the host actually listens on (with the real
// port when it was asked for port 0).
func (h *Host) Addrs() []string {
	addrs := h.lh.Addrs()
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Connected returns how many other validators this host has a connection to.
func (h *Host) Connected() int {
	n := 0
	for i, id := range h.ids {
		if uint32(i) != h.cfg.Self && h.lh.Network().Connectedness(id) == network.Connected {
			n++
		}
	}
	return n
}

// Stats returns a snapshot of the counters.
func (h *Host) Stats() Stats {
	c := &h.stats
	return Stats{
		FramesSent:     c.framesSent.Load(),
		FramesReceived: c.framesReceived.Load(),
		FramesDropped:  c.framesDropped.Load(),
		FramesRefused:  c.framesRefused.Load(),
		FramesLost:     c.framesLost.Load(),
		Reconnects:     c.reconnects.Load(),
		StreamsUp:      h.streamsUp(),
		ConnsRefused:   c.connsRefused.Load(),
		RequestsSent:   c.requestsSent.Load(),
		RequestsFailed: c.requestsFailed.Load(),
		RequestsServed: c.requestsServed.Load(),
	}
}

func (h *Host) streamsUp() uint64 {
	n := uint64(0)
	for _, l := range h.links {
		if l != nil && l.up.Load() {
			n++
		}
	}
	return n
}

// Close stops dialing, closes every stream and connection, waits for all the
// host's goroutines to exit and then closes the Inbound channel. Frames still
// queued are discarded. It is idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()

	h.cancel()
	err := h.lh.Close()
	h.wg.Wait()
	close(h.inbox)
	if err != nil {
		return fmt.Errorf("p2p: close libp2p host: %w", err)
	}
	return nil
}

// enter registers a goroutine that Close must wait for. It fails once Close
// has begun, so that wg.Add never races wg.Wait.
func (h *Host) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// remoteIndex is the validator index of a stream's authenticated remote peer.
func (h *Host) remoteIndex(s network.Stream) (uint32, bool) {
	i, ok := h.index[s.Conn().RemotePeer()]
	return i, ok && i != h.cfg.Self
}

// handlePBFT reads frames from one inbound pbft stream until it ends. It
// blocks on the Inbound channel when that is full, so a slow consumer pushes
// back through yamux and TCP flow control instead of growing a buffer.
func (h *Host) handlePBFT(s network.Stream) {
	if !h.enter() {
		s.Reset()
		return
	}
	defer h.wg.Done()
	from, ok := h.remoteIndex(s)
	if !ok {
		// The gater admits only validators; getting here means it was bypassed.
		h.log.Error("p2p: pbft stream from a peer outside the validator set", "peer", s.Conn().RemotePeer())
		s.Reset()
		return
	}
	if err := s.Scope().SetService(serviceName); err != nil {
		h.log.Warn("p2p: pbft stream refused by the resource manager", "peer", from, "err", err)
		s.Reset()
		return
	}
	br := bufio.NewReaderSize(s, streamBufferBytes)
	for {
		frame, release, err := readStreamFrame(s, br, h.cfg.FrameBytesMax, h.cfg.WriteTimeout)
		if err != nil {
			h.endInbound(s, from, err)
			return
		}
		select {
		case h.inbox <- Inbound{From: from, Frame: frame}:
			release()
			h.stats.framesReceived.Add(1)
		case <-h.ctx.Done():
			release()
			s.Reset()
			return
		}
	}
}

// endInbound closes an inbound pbft stream after a read error: cleanly at a
// frame boundary, with a reset (and a count) otherwise.
func (h *Host) endInbound(s network.Stream, from uint32, err error) {
	switch {
	case errors.Is(err, io.EOF):
		s.Close()
		return
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, errFrameMemory):
		if n := h.stats.framesRefused.Add(1); worthLogging(n) {
			h.log.Warn("p2p: refused an inbound frame; resetting the stream", "peer", from, "err", err, "refused_total", n)
		}
	case h.ctx.Err() == nil:
		h.log.Debug("p2p: inbound pbft stream ended", "peer", from, "err", err)
	}
	s.Reset()
}
