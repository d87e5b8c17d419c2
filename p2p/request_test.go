package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

func TestRequestResponse(t *testing.T) {
	const respMax = 1 << 20
	hosts, _ := newCluster(t, 3, func(c *Config) {
		c.RequestTimeout = time.Second
		c.ResponseBytesMax = respMax
	})
	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) }) // runs before the hosts close
	hosts[1].SetRequestHandler(func(from uint32, req []byte) []byte {
		switch string(req) {
		case "block":
			<-unblock
			return nil
		case "huge":
			return make([]byte, respMax+1)
		case "big":
			return bytes.Repeat([]byte{5}, respMax)
		case "empty":
			return nil
		}
		return append([]byte{byte(from)}, req...)
	})
	startAll(hosts)
	waitMesh(t, hosts)
	ctx := context.Background()

	for _, from := range []uint32{0, 2} {
		resp, err := hosts[from].Request(ctx, 1, []byte("ping"))
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]byte{byte(from)}, "ping"...); !bytes.Equal(resp, want) {
			t.Fatalf("from %d: response %q, want %q", from, resp, want)
		}
	}
	if resp, err := hosts[0].Request(ctx, 1, []byte("big")); err != nil || len(resp) != respMax {
		t.Fatalf("max-size response: %d bytes, %v", len(resp), err)
	}
	if resp, err := hosts[0].Request(ctx, 1, []byte("empty")); err != nil || len(resp) != 0 {
		t.Fatalf("empty response: %q, %v", resp, err)
	}

	start := time.Now()
	_, err := hosts[0].Request(ctx, 1, []byte("block"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v, want a deadline error", err)
	}
	if took := time.Since(start); took > waitTimeout/2 {
		t.Fatalf("unanswered request took %s with a 1s timeout", took)
	}

	// The handler's oversized answer is refused by the responder.
	if _, err := hosts[0].Request(ctx, 1, []byte("huge")); err == nil {
		t.Fatal("oversized response delivered")
	}
	waitFor(t, "the responder to count the refused response", func() bool { return hosts[1].Stats().FramesRefused == 1 })

	if _, err := hosts[0].Request(ctx, 1, make([]byte, DefaultRequestBytesMax+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized request: %v", err)
	}
	if _, err := hosts[0].Request(ctx, 0, []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("request to self: %v", err)
	}
	if _, err := hosts[0].Request(ctx, 7, []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("request to an unknown index: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := hosts[0].Request(cctx, 1, []byte("ping")); !errors.Is(err, context.Canceled) {
		t.Fatalf("request with a cancelled context: %v", err)
	}
	// Host 2 has no handler: its requests are reset, not hung.
	if _, err := hosts[0].Request(ctx, 2, []byte("ping")); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request to a host without handler: %v", err)
	}

	// Sent: ping, big, empty, block, huge, cancelled, no handler; the last
	// four failed. The oversized request never left: it is a refused frame.
	st := hosts[0].Stats()
	if st.RequestsSent != 7 || st.RequestsFailed != 4 || st.FramesRefused != 1 {
		t.Fatalf("requester stats %+v", st)
	}
	if got := hosts[1].Stats().RequestsServed; got != 4 {
		t.Fatalf("RequestsServed %d, want 4", got)
	}
}

// A responder that bypasses the handler bound: the requester must refuse the
// response from its length prefix alone.
func TestOversizedResponseRefusedByRequester(t *testing.T) {
	const respMax = 1 << 10
	hosts, _ := newCluster(t, 2, func(c *Config) { c.ResponseBytesMax = respMax })
	hosts[1].lh.SetStreamHandler(FetchProtocolID, func(s network.Stream) {
		defer s.Close()
		s.Write(binary.AppendUvarint(nil, 1<<30))
	})
	startAll(hosts)
	_, err := hosts[0].Request(context.Background(), 1, []byte("x"))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if st := hosts[0].Stats(); st.FramesRefused != 1 || st.RequestsFailed != 1 {
		t.Fatalf("stats %+v", st)
	}
}
