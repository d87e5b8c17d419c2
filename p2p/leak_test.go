package p2p

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// exercise runs a small cluster through frames, a request and a restart of
// nothing in particular, then closes it.
func exercise(t *testing.T) {
	hosts, _ := newCluster(t, 3, nil)
	hosts[1].SetRequestHandler(func(_ uint32, req []byte) []byte { return req })
	startAll(hosts)
	waitMesh(t, hosts)
	hosts[0].Broadcast([]byte("x"))
	receive(t, hosts[1])
	receive(t, hosts[2])
	if _, err := hosts[0].Request(context.Background(), 1, []byte("r")); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if _, open := <-h.Inbound(); open {
			t.Fatal("Inbound still open after Close")
		}
		if h.Send(0, []byte("late")) || h.Send(1, []byte("late")) {
			t.Fatal("Send accepted a frame after Close")
		}
		if err := h.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// Close waits for the host's own goroutines: none may be left the moment
	// it returns (libp2p's internals get the deadline below).
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "p2p.(*Host)") {
		t.Fatalf("host goroutines still running after Close:\n%s", stacks)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	// libp2p starts a few process-wide goroutines on first use; let them
	// exist before taking the baseline.
	t.Run("warm up", exercise)
	base := runtime.NumGoroutine()
	t.Run("run", exercise)
	// goroutineSlack allows for runtime helpers that come and go.
	const goroutineSlack = 2
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > base+goroutineSlack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d; still running:\n%s",
				runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
