package p2p

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"

	"github.com/ordoledger/ordo/crypto"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 15 * time.Second

func testKey(t testing.TB, i int) crypto.PrivateKey {
	t.Helper()
	k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, crypto.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testConfig is validator self's config in a set of len(keys) validators,
// listening on a free loopback port, with test-sized backoff.
func testConfig(t testing.TB, keys []crypto.PrivateKey, self int) Config {
	peers := make([]Peer, len(keys))
	for i, k := range keys {
		peers[i] = Peer{Index: uint32(i), PublicKey: k.Public()}
	}
	return Config{
		Key:            keys[self],
		Self:           uint32(self),
		Peers:          peers,
		ListenAddrs:    []string{"/ip4/127.0.0.1/tcp/0"},
		DialBackoffMin: 10 * time.Millisecond,
		DialBackoffMax: 200 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
		Logger:         testLogger(t),
	}
}

func newTestHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// linkAll tells every host where every other one listens.
func linkAll(t testing.TB, hosts []*Host) {
	t.Helper()
	for i, h := range hosts {
		for j, o := range hosts {
			if i != j && h != nil && o != nil {
				if err := h.SetPeerAddrs(uint32(j), o.Addrs()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// newCluster builds n validators that know each other's addresses; the
// caller starts them.
func newCluster(t testing.TB, n int, tweak func(*Config)) ([]*Host, []crypto.PrivateKey) {
	t.Helper()
	keys := make([]crypto.PrivateKey, n)
	for i := range keys {
		keys[i] = testKey(t, i)
	}
	hosts := make([]*Host, n)
	for i := range hosts {
		cfg := testConfig(t, keys, i)
		if tweak != nil {
			tweak(&cfg)
		}
		hosts[i] = newTestHost(t, cfg)
	}
	linkAll(t, hosts)
	return hosts, keys
}

func startAll(hosts []*Host) {
	for _, h := range hosts {
		h.Start()
	}
}

func waitMesh(t testing.TB, hosts []*Host) {
	t.Helper()
	waitFor(t, "full mesh", func() bool {
		for _, h := range hosts {
			if h.Connected() != len(hosts)-1 || h.Stats().StreamsUp != uint64(len(hosts)-1) {
				return false
			}
		}
		return true
	})
}

// receive waits for the next inbound frame of h.
func receive(t testing.TB, h *Host) Inbound {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case in, ok := <-h.Inbound():
		if !ok {
			t.Fatal("inbound channel closed")
		}
		return in
	case <-timer.C:
	}
	t.Fatalf("no frame within %s", waitTimeout)
	return Inbound{}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testFrame encodes (sender, seq) so a receiver can check attribution and
// order.
func testFrame(sender uint32, seq uint64) []byte {
	f := binary.BigEndian.AppendUint32(nil, sender)
	return binary.BigEndian.AppendUint64(f, seq)
}

func TestMeshExchangesFramesInOrder(t *testing.T) {
	const n, perPeer = 4, 500
	hosts, _ := newCluster(t, n, nil)
	startAll(hosts)
	waitMesh(t, hosts)
	for seq := uint64(0); seq < perPeer; seq++ {
		for i, h := range hosts {
			for j := range hosts {
				if i != j && !h.Send(uint32(j), testFrame(uint32(i), seq)) {
					t.Fatalf("send %d→%d seq %d dropped", i, j, seq)
				}
			}
		}
	}
	for j, h := range hosts {
		next := make([]uint64, n)
		got := 0
		timeout := time.After(waitTimeout)
		for got < (n-1)*perPeer {
			select {
			case in := <-h.Inbound():
				sender := binary.BigEndian.Uint32(in.Frame)
				seq := binary.BigEndian.Uint64(in.Frame[4:])
				if sender != in.From {
					t.Fatalf("host %d: frame from %d attributed to %d", j, sender, in.From)
				}
				if seq != next[in.From] {
					t.Fatalf("host %d: from %d got seq %d, want %d", j, in.From, seq, next[in.From])
				}
				next[in.From]++
				got++
			case <-timeout:
				t.Fatalf("host %d: received %d of %d frames", j, got, (n-1)*perPeer)
			}
		}
		waitFor(t, "received counters", func() bool { return h.Stats().FramesReceived == uint64((n-1)*perPeer) })
	}
	for i, h := range hosts {
		waitFor(t, "sent counters", func() bool { return h.Stats().FramesSent == uint64((n-1)*perPeer) })
		if st := h.Stats(); st.FramesDropped != 0 || st.FramesRefused != 0 || st.FramesLost != 0 {
			t.Fatalf("host %d: unexpected losses %+v", i, st)
		}
	}

	hosts[0].Broadcast([]byte("hello"))
	for j := 1; j < n; j++ {
		if in := receive(t, hosts[j]); in.From != 0 || string(in.Frame) != "hello" {
			t.Fatalf("host %d: broadcast arrived as %+v", j, in)
		}
	}
}
