package p2p

import (
	"strings"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

func TestPeerIDFromPublicKey(t *testing.T) {
	k := testKey(t, 0)
	id, err := PeerIDFromPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "12D3KooW") {
		t.Fatalf("peer ID %q is not an Ed25519 identity", id)
	}
	if other, _ := PeerIDFromPublicKey(testKey(t, 1).Public()); other == id {
		t.Fatal("two keys share a peer ID")
	}
	// The running host's identity is the one derived from the public key
	// alone, which is what nodes.json and `ordo keygen` print.
	h := newTestHost(t, testConfig(t, []crypto.PrivateKey{k}, 0))
	if h.PeerID() != id {
		t.Fatalf("host runs as %s, key says %s", h.PeerID(), id)
	}
}

func TestConfigValidate(t *testing.T) {
	keys := []crypto.PrivateKey{testKey(t, 0), testKey(t, 1)}
	good := func() Config { return testConfig(t, keys, 0) }
	if err := good().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := []struct {
		name, want string
		edit       func(*Config)
	}{
		{"no key", "Key is not set", func(c *Config) { c.Key = crypto.PrivateKey{} }},
		{"no peers", "0 peers", func(c *Config) { c.Peers = nil }},
		{"self out of range", "Self 2", func(c *Config) { c.Self = 2 }},
		{"key of another peer", "not the key of peer 0", func(c *Config) { c.Key = keys[1] }},
		{"index mismatch", "has index 5", func(c *Config) { c.Peers[1].Index = 5 }},
		{"duplicate key", "share public key", func(c *Config) { c.Peers[1].PublicKey = keys[0].Public() }},
		{"bad peer addr", "address", func(c *Config) { c.Peers[1].Addrs = []string{"127.0.0.1:80"} }},
		{"addr naming another peer", "names peer", func(c *Config) {
			id, _ := PeerIDFromPublicKey(keys[0].Public())
			c.Peers[1].Addrs = []string{"/ip4/127.0.0.1/tcp/1/p2p/" + id}
		}},
		{"no listen addrs", "no ListenAddrs", func(c *Config) { c.ListenAddrs = nil }},
		{"bad listen addr", "listen address", func(c *Config) { c.ListenAddrs = []string{"nope"} }},
		{"negative frame max", "FrameBytesMax", func(c *Config) { c.FrameBytesMax = -1 }},
		{"huge frame max", "FrameBytesMax", func(c *Config) { c.FrameBytesMax = frameBytesCeiling + 1 }},
		{"huge queue", "SendQueueLen", func(c *Config) { c.SendQueueLen = queueLenCeiling + 1 }},
		{"negative timeout", "RequestTimeout", func(c *Config) { c.RequestTimeout = -time.Second }},
		{"backoff inverted", "below DialBackoffMin", func(c *Config) { c.DialBackoffMin, c.DialBackoffMax = time.Second, time.Millisecond }},
		{"backoff too long", "above", func(c *Config) { c.DialBackoffMax = time.Hour }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, err := New(c); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	id, _ := PeerIDFromPublicKey(keys[1].Public())
	c := good()
	c.Peers[1].Addrs = []string{"/ip4/127.0.0.1/tcp/1/p2p/" + id}
	if err := c.Validate(); err != nil {
		t.Fatalf("address with the peer's own ID refused: %v", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	h := &Host{cfg: Config{DialBackoffMin: 10 * time.Millisecond, DialBackoffMax: 300 * time.Millisecond}}
	for failures := 1; failures <= 64; failures++ {
		ceiling := min(10*time.Millisecond<<min(failures-1, 10), 300*time.Millisecond)
		var top time.Duration
		for range 200 {
			d := h.backoff(failures)
			if d < 0 || d > ceiling {
				t.Fatalf("failures %d: backoff %s outside [0, %s]", failures, d, ceiling)
			}
			top = max(top, d)
		}
		if top < ceiling/2 {
			t.Fatalf("failures %d: 200 draws all below %s: not full jitter up to %s", failures, top, ceiling)
		}
	}
}
