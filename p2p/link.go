package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

const (
	// streamOpenTimeout bounds one attempt to dial a peer and open its pbft
	// stream.
	streamOpenTimeout = 10 * time.Second
	// writeBatchFramesMax bounds how many frames go out between two flushes,
	// so that a producer who keeps the queue non-empty still sees frames
	// flushed (and counted) and the write deadline renewed.
	writeBatchFramesMax = 1024
)

var errPeerEndedStream = errors.New("peer ended our outbound pbft stream")

// link is the outbound half of the connection to one peer: its queue, drained
// by one writer goroutine (runLink) onto one long-lived pbft stream.
type link struct {
	index uint32
	id    peer.ID
	queue chan []byte
	// queuedBytes is the size of the frames in queue, bounded by
	// SendQueueBytesMax: Send adds, the writer subtracts as it dequeues.
	queuedBytes atomic.Int64
	up          atomic.Bool // a pbft stream is open and being written
}

// dequeued accounts for a frame taken off the queue.
func (l *link) dequeued(frame []byte) {
	l.queuedBytes.Add(-int64(len(frame)))
}

// runLink keeps a pbft stream to l's peer open and drains l's queue onto it,
// until Close. After a stream fails it waits (exponential backoff with full
// jitter) and opens a new one; frames queued meanwhile wait in the queue.
func (h *Host) runLink(l *link) {
	defer h.wg.Done()
	log := h.log.With("peer", l.index)
	failures := 0
	established := false
	for h.ctx.Err() == nil {
		if failures > 0 && !h.sleep(h.backoff(failures)) {
			return
		}
		s, err := h.openPBFT(l.id)
		if err != nil {
			failures++
			if h.ctx.Err() == nil {
				log.Debug("p2p: cannot open pbft stream", "attempt", failures, "err", err)
			}
			continue
		}
		if established {
			h.stats.reconnects.Add(1)
			log.Info("p2p: pbft stream re-established")
		} else {
			log.Debug("p2p: pbft stream established")
		}
		established = true
		l.up.Store(true)
		flushed, err := h.pump(l, s)
		l.up.Store(false)
		if h.ctx.Err() != nil {
			return
		}
		log.Info("p2p: pbft stream failed; reconnecting", "err", err)
		// A stream that carried frames was healthy: start the backoff over.
		// One that failed before its first flush keeps backing off, so a peer
		// that accepts and drops streams cannot make us spin.
		if flushed {
			failures = 1
		} else {
			failures++
		}
	}
}

// openPBFT dials the peer if needed and opens a pbft stream to it.
func (h *Host) openPBFT(id peer.ID) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(h.ctx, streamOpenTimeout)
	defer cancel()
	// Our own backoff paces redials; libp2p's per-address dial backoff would
	// otherwise hold off a restarted peer for seconds longer. (Not
	// network.WithForceDirectDial: in libp2p v0.51 that path dereferences a
	// nil transport when a dial races the host's Close.)
	if sw, ok := h.lh.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(id)
	}
	s, err := h.lh.NewStream(ctx, id, PBFTProtocolID)
	if err != nil {
		return nil, fmt.Errorf("open pbft stream: %w", err)
	}
	if err := s.Scope().SetService(serviceName); err != nil {
		s.Reset()
		return nil, fmt.Errorf("pbft stream service scope: %w", err)
	}
	return s, nil
}

// pump writes l's queued frames to s in batches, flushing whenever the queue
// runs empty, until s fails or the host closes. It reports whether any batch
// was flushed. On return s is closed or reset and its watcher has exited.
func (h *Host) pump(l *link, s network.Stream) (flushed bool, err error) {
	// The peer never writes on this stream, so a read returns only when the
	// stream or its connection dies: that wakes an idle writer at once
	// instead of at its next frame.
	dead := make(chan struct{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(dead)
		var b [1]byte
		s.Read(b[:])
	}()
	defer func() {
		if err != nil && h.ctx.Err() == nil {
			s.Reset()
		} else {
			s.Close()
		}
		<-dead
	}()

	bw := bufio.NewWriterSize(s, streamBufferBytes)
	for {
		var frame []byte
		select {
		case <-h.ctx.Done():
			return flushed, ErrClosed
		case <-dead:
			return flushed, errPeerEndedStream
		case frame = <-l.queue:
			l.dequeued(frame)
		}
		if err := s.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout)); err != nil {
			h.stats.framesLost.Add(1)
			return flushed, fmt.Errorf("set write deadline: %w", err)
		}
		batch, err := writeBatch(bw, frame, l)
		if err != nil {
			h.stats.framesLost.Add(batch)
			return flushed, err
		}
		if err := bw.Flush(); err != nil {
			h.stats.framesLost.Add(batch)
			return flushed, fmt.Errorf("flush %d frames: %w", batch, err)
		}
		h.stats.framesSent.Add(batch)
		flushed = true
	}
}

// writeBatch writes first and then whatever else is queued, up to
// writeBatchFramesMax frames, without blocking on the queue. It returns how
// many frames it wrote, including one that failed.
func writeBatch(bw *bufio.Writer, first []byte, l *link) (uint64, error) {
	frame := first
	for n := uint64(1); ; n++ {
		if err := writeFrame(bw, frame); err != nil {
			return n, err
		}
		if n == writeBatchFramesMax {
			return n, nil
		}
		select {
		case frame = <-l.queue:
			l.dequeued(frame)
		default:
			return n, nil
		}
	}
}

// backoff returns the wait before attempt number failures: uniformly random
// in [0, min(DialBackoffMax, DialBackoffMin·2^(failures-1))] ("full jitter"),
// so that validators restarting together do not redial in lockstep.
func (h *Host) backoff(failures int) time.Duration {
	// DialBackoffMax is at most dialBackoffCeiling, so doubling below it
	// cannot overflow.
	ceiling := h.cfg.DialBackoffMin
	for i := 1; i < failures && ceiling < h.cfg.DialBackoffMax; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, h.cfg.DialBackoffMax)
	return rand.N(ceiling + 1)
}

// sleep waits for d or until Close; it reports false on Close.
func (h *Host) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-h.ctx.Done():
		return false
	}
}
