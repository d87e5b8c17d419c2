package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/ordoledger/ordo/crypto"
)

func TestOutsiderCannotConnectOrDeliver(t *testing.T) {
	hosts, keys := newCluster(t, 2, nil)
	startAll(hosts)
	waitMesh(t, hosts)

	// The outsider believes it is validator 1 of a set whose validator 0 is
	// hosts[0]: it dials hosts[0] and tries to deliver frames.
	outsiderKey := testKey(t, 99)
	cfg := testConfig(t, []crypto.PrivateKey{keys[0], outsiderKey}, 1)
	outsider := newTestHost(t, cfg)
	if err := outsider.SetPeerAddrs(0, hosts[0].Addrs()); err != nil {
		t.Fatal(err)
	}
	outsider.Start()
	for i := range 10 {
		if !outsider.Send(0, testFrame(1, uint64(i))) {
			t.Fatal("outsider could not even queue a frame")
		}
	}
	waitFor(t, "hosts[0] to refuse the outsider", func() bool { return hosts[0].Stats().ConnsRefused > 0 })
	waitFor(t, "the outsider to retry", func() bool { return hosts[0].Stats().ConnsRefused > 2 })

	// Judged from the validator's side: the outsider's libp2p may believe,
	// for a moment, that its half of a refused connection is up.
	if st := hosts[0].Stats(); st.FramesReceived != 0 {
		t.Fatalf("hosts[0] received %d frames", st.FramesReceived)
	}
	if got := hosts[0].Connected(); got != 1 {
		t.Fatalf("hosts[0] has %d validator connections, want 1", got)
	}

	// Outbound gating: a validator never dials a peer outside its set.
	outsiderID, err := peerIDFromPublicKey(outsiderKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	refused := hosts[0].Stats().ConnsRefused
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := hosts[0].lh.Network().DialPeer(ctx, outsiderID); err == nil {
		t.Fatal("a validator dialed a peer outside its set")
	}
	if hosts[0].Stats().ConnsRefused <= refused {
		t.Fatal("refused dial not counted")
	}
}

func TestOversizedFramesRefused(t *testing.T) {
	const frameMax = 100 << 10 // above frameReserveBytesMin: reserved frames
	hosts, _ := newCluster(t, 2, func(c *Config) { c.FrameBytesMax = frameMax })
	startAll(hosts)
	waitMesh(t, hosts)

	if hosts[0].Send(1, make([]byte, frameMax+1)) {
		t.Fatal("oversized frame accepted by Send")
	}
	if got := hosts[0].Stats().FramesRefused; got != 1 {
		t.Fatalf("FramesRefused %d, want 1", got)
	}
	full := make([]byte, frameMax)
	full[frameMax-1] = 42
	if !hosts[0].Send(1, full) {
		t.Fatal("frame of exactly FrameBytesMax refused")
	}
	if in := receive(t, hosts[1]); len(in.Frame) != frameMax || in.Frame[frameMax-1] != 42 {
		t.Fatalf("max-size frame arrived as %d bytes", len(in.Frame))
	}

	// A peer that bypasses Send: a raw stream announcing a frame of 1 GiB.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := hosts[0].lh.NewStream(ctx, hosts[1].lh.ID(), PBFTProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write(binary.AppendUvarint(nil, 1<<30)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := s.Read(b[:]); err == nil || isTimeout(err) {
		t.Fatalf("stream with an oversized frame was not reset: %v", err)
	}
	waitFor(t, "the receiver to count the refused frame", func() bool { return hosts[1].Stats().FramesRefused == 1 })
	if got := hosts[1].Stats().FramesReceived; got > 1 {
		t.Fatalf("FramesReceived %d, want only the max-size frame", got)
	}

	// The host's own link is unaffected.
	if !hosts[0].Send(1, []byte("after")) {
		t.Fatal("send after refused frame dropped")
	}
	if in := receive(t, hosts[1]); string(in.Frame) != "after" {
		t.Fatalf("got %q", in.Frame)
	}
}

func TestRestartedPeerReconnects(t *testing.T) {
	const n = 4
	hosts, keys := newCluster(t, n, nil)
	if _, ok := hosts[0].lh.Network().(*swarm.Swarm); !ok {
		t.Fatal("libp2p's network is not a swarm: redials would wait out libp2p's own dial backoff")
	}
	startAll(hosts)
	waitMesh(t, hosts)

	// Kill validator 3 and start a new process for it: same key, same port.
	addrs := hosts[3].Addrs()
	if err := hosts[3].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the others to notice", func() bool {
		for _, h := range hosts[:3] {
			if h.Connected() != n-2 || h.Stats().StreamsUp != n-2 {
				return false
			}
		}
		return true
	})
	cfg := testConfig(t, keys, 3)
	cfg.ListenAddrs = addrs
	hosts[3] = newTestHost(t, cfg)
	linkAll(t, hosts)
	hosts[3].Start()
	waitMesh(t, hosts)
	// Each survivor's writer noticed the dead stream and opened a new one.
	for i, h := range hosts[:3] {
		waitFor(t, "a re-established stream", func() bool { return h.Stats().Reconnects >= 1 })
		if !h.Send(3, testFrame(uint32(i), 1)) {
			t.Fatalf("host %d: send to the restarted peer dropped", i)
		}
	}
	seen := map[uint32]bool{}
	for range 3 {
		in := receive(t, hosts[3])
		if binary.BigEndian.Uint32(in.Frame) != in.From || seen[in.From] {
			t.Fatalf("restarted peer got %+v", in)
		}
		seen[in.From] = true
	}
	hosts[3].Broadcast(testFrame(3, 1))
	for _, h := range hosts[:3] {
		if in := receive(t, h); in.From != 3 || binary.BigEndian.Uint32(in.Frame) != 3 {
			t.Fatalf("from the restarted peer got %+v", in)
		}
	}
}

func TestSlowConsumerBackpressure(t *testing.T) {
	const inboxLen, frames = 8, 2000
	hosts, _ := newCluster(t, 2, func(c *Config) { c.InboundQueueLen = inboxLen })
	startAll(hosts)
	for i := range frames {
		if !hosts[0].Send(1, testFrame(0, uint64(i))) {
			t.Fatalf("frame %d dropped", i)
		}
	}
	// Nobody reads hosts[1].Inbound(): the reader fills it and then blocks.
	waitFor(t, "a full inbound channel", func() bool {
		return len(hosts[1].Inbound()) == inboxLen && hosts[1].Stats().FramesReceived == inboxLen
	})
	// The reader blocks instead of buffering: the count stays at the
	// channel's capacity while the consumer is stalled.
	for range 100 {
		runtime.Gosched()
	}
	if got := hosts[1].Stats().FramesReceived; got != inboxLen {
		t.Fatalf("FramesReceived %d while the consumer is stalled, want %d", got, inboxLen)
	}
	for i := range frames {
		in := receive(t, hosts[1])
		if seq := binary.BigEndian.Uint64(in.Frame[4:]); seq != uint64(i) {
			t.Fatalf("got seq %d, want %d", seq, i)
		}
	}
	if st := hosts[0].Stats(); st.FramesDropped != 0 || st.FramesLost != 0 {
		t.Fatalf("backpressure lost frames: %+v", st)
	}
}

func TestSendRefusalsAndFullQueue(t *testing.T) {
	hosts, _ := newCluster(t, 2, func(c *Config) { c.SendQueueLen = 4 })
	h := hosts[0] // not started: nothing drains its queue
	for i := range 4 {
		if !h.Send(1, []byte{byte(i)}) {
			t.Fatalf("frame %d dropped with room in the queue", i)
		}
	}
	if h.Send(1, []byte{4}) {
		t.Fatal("frame accepted by a full queue")
	}
	if h.Send(0, []byte{1}) || h.Send(2, []byte{1}) {
		t.Fatal("frame to self or to an unknown index accepted")
	}
	st := h.Stats()
	if st.FramesDropped != 1 || st.FramesRefused != 2 {
		t.Fatalf("stats %+v, want 1 dropped and 2 refused", st)
	}
	// Once started, the queued frames go out in order.
	startAll(hosts)
	for i := range 4 {
		if in := receive(t, hosts[1]); in.Frame[0] != byte(i) {
			t.Fatalf("got frame %d, want %d", in.Frame[0], i)
		}
	}
}

func TestSendQueueBytesBound(t *testing.T) {
	const bytesMax = 16
	hosts, _ := newCluster(t, 2, func(c *Config) { c.FrameBytesMax, c.SendQueueBytesMax = bytesMax, bytesMax })
	h := hosts[0]
	if !h.Send(1, make([]byte, bytesMax)) {
		t.Fatal("a max-size frame did not fit an empty queue")
	}
	if h.Send(1, []byte{1}) {
		t.Fatal("a frame beyond SendQueueBytesMax was queued")
	}
	if st := h.Stats(); st.FramesDropped != 1 {
		t.Fatalf("FramesDropped %d, want 1", st.FramesDropped)
	}
	startAll(hosts)
	receive(t, hosts[1])
	// The writer gave the bytes back as it dequeued.
	if !h.Send(1, make([]byte, bytesMax)) {
		t.Fatal("queue bytes not released after the frame went out")
	}
	receive(t, hosts[1])
}

// A stream opened to a peer is judged by the connection, not the frame: even
// a raw stream from validator 0 is attributed to 0.
func TestAttributionFromConnection(t *testing.T) {
	hosts, _ := newCluster(t, 3, nil)
	startAll(hosts)
	waitMesh(t, hosts)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := hosts[2].lh.NewStream(ctx, hosts[0].lh.ID(), PBFTProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(s)
	if err := writeFrame(bw, testFrame(1, 0)); err != nil { // claims to come from 1
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if in := receive(t, hosts[0]); in.From != 2 {
		t.Fatalf("frame attributed to %d, want the connection's validator 2", in.From)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
