package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultFrameBytesMax     = codec.MaxMessageBytes
	DefaultSendQueueLen      = 4096
	DefaultSendQueueBytesMax = 64 << 20
	DefaultInboundQueueLen   = 8192
	DefaultDialBackoffMin    = 50 * time.Millisecond
	DefaultDialBackoffMax    = 5 * time.Second
	DefaultRequestTimeout    = 5 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultRequestBytesMax   = 64 << 10
	DefaultResponseBytesMax  = 32 << 20
)

// Hard ceilings on configurable bounds. They keep a configuration typo from
// turning into a resource-manager budget or a queue that cannot be honoured.
const (
	frameBytesCeiling = 256 << 20
	queueLenCeiling   = 1 << 20
	queueBytesCeiling = 1 << 30
	validatorsMax     = 1024
	addrsPerPeerMax   = 16
	// dialBackoffCeiling bounds DialBackoffMax: a validator that waits longer
	// than this to redial a peer is effectively partitioned from it.
	dialBackoffCeiling = 10 * time.Minute
)

// Peer is one validator as the genesis file lists it.
type Peer struct {
	// Index is the validator's replica index; it must equal its position in
	// Config.Peers.
	Index     uint32
	PublicKey crypto.PublicKey
	// Addrs are multiaddrs such as /ip4/127.0.0.1/tcp/7800. They may be empty
	// for a peer that only dials in, and may be replaced with SetPeerAddrs.
	Addrs []string
}

// Config configures a Host. Zero-valued bounds take the defaults above.
type Config struct {
	// Key is the validator key; the libp2p identity derives from its seed.
	Key  crypto.PrivateKey
	Self uint32
	// Peers lists all validators in replica order, Self included.
	Peers       []Peer
	ListenAddrs []string
	// FrameBytesMax bounds a pbft frame on send and on receive.
	FrameBytesMax int
	// SendQueueLen is the per-peer outbound queue, in frames. A full queue
	// drops the new frame and counts it.
	SendQueueLen int
	// SendQueueBytesMax bounds the bytes queued for one peer, so that a peer
	// that cannot keep up holds at most this much memory; at least
	// FrameBytesMax. A frame that does not fit is dropped and counted.
	SendQueueBytesMax int
	// InboundQueueLen is the capacity of the channel Inbound returns. When it
	// is full, stream readers block, and yamux/TCP flow control pushes back.
	InboundQueueLen int
	// DialBackoffMin and DialBackoffMax bound the exponential backoff (with
	// full jitter) between attempts to (re)establish a peer's stream.
	DialBackoffMin, DialBackoffMax time.Duration
	// RequestTimeout bounds one Request, and one served request.
	RequestTimeout time.Duration
	// WriteTimeout bounds one batch write to a peer's stream; a peer that
	// stops reading for longer gets its stream reset and redialled.
	WriteTimeout time.Duration
	// RequestBytesMax and ResponseBytesMax bound the fetch protocol's frames.
	RequestBytesMax, ResponseBytesMax int
	// Logger receives the transport's logs; nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&c.FrameBytesMax, DefaultFrameBytesMax)
	setInt(&c.SendQueueLen, DefaultSendQueueLen)
	setInt(&c.SendQueueBytesMax, DefaultSendQueueBytesMax)
	setInt(&c.InboundQueueLen, DefaultInboundQueueLen)
	setInt(&c.RequestBytesMax, DefaultRequestBytesMax)
	setInt(&c.ResponseBytesMax, DefaultResponseBytesMax)
	setDur(&c.DialBackoffMin, DefaultDialBackoffMin)
	setDur(&c.DialBackoffMax, DefaultDialBackoffMax)
	setDur(&c.RequestTimeout, DefaultRequestTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first problem with c, treating zero-valued bounds as
// their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Key.IsZero() {
		return errors.New("p2p config: Key is not set")
	}
	if len(c.Peers) == 0 || len(c.Peers) > validatorsMax {
		return fmt.Errorf("p2p config: %d peers, want 1..%d", len(c.Peers), validatorsMax)
	}
	if int(c.Self) >= len(c.Peers) {
		return fmt.Errorf("p2p config: Self %d is not an index of the %d peers", c.Self, len(c.Peers))
	}
	if c.Peers[c.Self].PublicKey != c.Key.Public() {
		return fmt.Errorf("p2p config: Key is not the key of peer %d", c.Self)
	}
	seen := make(map[crypto.PublicKey]uint32, len(c.Peers))
	for i, p := range c.Peers {
		if p.Index != uint32(i) {
			return fmt.Errorf("p2p config: peer at position %d has index %d", i, p.Index)
		}
		if j, dup := seen[p.PublicKey]; dup {
			return fmt.Errorf("p2p config: peers %d and %d share public key %s", j, i, p.PublicKey)
		}
		seen[p.PublicKey] = p.Index
		if _, err := parseAddrs(p.Index, p.PublicKey, p.Addrs); err != nil {
			return fmt.Errorf("p2p config: %w", err)
		}
	}
	if len(c.ListenAddrs) == 0 {
		return errors.New("p2p config: no ListenAddrs")
	}
	for _, a := range c.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("p2p config: listen address %q: %w", a, err)
		}
	}
	bounds := []struct {
		name   string
		v, max int
	}{
		{"FrameBytesMax", c.FrameBytesMax, frameBytesCeiling},
		{"RequestBytesMax", c.RequestBytesMax, frameBytesCeiling},
		{"ResponseBytesMax", c.ResponseBytesMax, frameBytesCeiling},
		{"SendQueueLen", c.SendQueueLen, queueLenCeiling},
		{"SendQueueBytesMax", c.SendQueueBytesMax, queueBytesCeiling},
		{"InboundQueueLen", c.InboundQueueLen, queueLenCeiling},
	}
	for _, b := range bounds {
		if b.v < 1 || b.v > b.max {
			return fmt.Errorf("p2p config: %s is %d, want 1..%d", b.name, b.v, b.max)
		}
	}
	if c.SendQueueBytesMax < c.FrameBytesMax {
		return fmt.Errorf("p2p config: SendQueueBytesMax %d is below FrameBytesMax %d: a largest frame could never be sent", c.SendQueueBytesMax, c.FrameBytesMax)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialBackoffMin", c.DialBackoffMin},
		{"DialBackoffMax", c.DialBackoffMax},
		{"RequestTimeout", c.RequestTimeout},
		{"WriteTimeout", c.WriteTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("p2p config: %s is negative (%s)", d.name, d.v)
		}
	}
	if c.DialBackoffMax > dialBackoffCeiling {
		return fmt.Errorf("p2p config: DialBackoffMax %s is above %s", c.DialBackoffMax, dialBackoffCeiling)
	}
	if c.DialBackoffMax < c.DialBackoffMin {
		return fmt.Errorf("p2p config: DialBackoffMax %s is below DialBackoffMin %s", c.DialBackoffMax, c.DialBackoffMin)
	}
	return nil
}

// parseAddrs parses a peer's multiaddrs. An address may end in /p2p/<id>, but
// only with that peer's own ID: a genesis file naming another identity there
// is a mistake worth stopping for.
func parseAddrs(index uint32, pub crypto.PublicKey, addrs []string) ([]ma.Multiaddr, error) {
	if len(addrs) > addrsPerPeerMax {
		return nil, fmt.Errorf("peer %d: %d addresses, at most %d", index, len(addrs), addrsPerPeerMax)
	}
	want, err := peerIDFromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("peer %d: %w", index, err)
	}
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("peer %d: address %q: %w", index, s, err)
		}
		transport, id := peer.SplitAddr(a)
		if transport == nil {
			return nil, fmt.Errorf("peer %d: address %q has no transport part", index, s)
		}
		if id != "" && id != want {
			return nil, fmt.Errorf("peer %d: address %q names peer %s, but the key's peer ID is %s", index, s, id, want)
		}
		out = append(out, transport)
	}
	return out, nil
}
