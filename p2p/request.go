package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// Request sends req to validator to on the fetch protocol and returns its
// response. It fails after RequestTimeout (or when ctx ends first), for a
// request above RequestBytesMax, and for a response above ResponseBytesMax
// (the stream is reset without reading it; errors.Is(err, ErrFrameTooLarge)).
func (h *Host) Request(ctx context.Context, to uint32, req []byte) ([]byte, error) {
	if int(to) >= len(h.links) || h.links[to] == nil {
		return nil, fmt.Errorf("p2p: request to %d: %w", to, ErrUnknownPeer)
	}
	if len(req) > h.cfg.RequestBytesMax {
		h.stats.framesRefused.Add(1)
		return nil, fmt.Errorf("p2p: request to %d: %w: %d bytes, max %d", to, ErrFrameTooLarge, len(req), h.cfg.RequestBytesMax)
	}
	if h.ctx.Err() != nil {
		return nil, fmt.Errorf("p2p: request to %d: %w", to, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	h.stats.requestsSent.Add(1)
	resp, err := h.request(ctx, to, req)
	if err != nil {
		h.stats.requestsFailed.Add(1)
		if errors.Is(err, ErrFrameTooLarge) {
			h.stats.framesRefused.Add(1)
		}
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		case isTimeout(err):
			// The stream's deadline is the context's, and may fire first.
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return nil, fmt.Errorf("p2p: request to %d: %w", to, err)
	}
	return resp, nil
}

func (h *Host) request(ctx context.Context, to uint32, req []byte) ([]byte, error) {
	s, err := h.lh.NewStream(ctx, h.ids[to], FetchProtocolID)
	if err != nil {
		return nil, fmt.Errorf("open fetch stream: %w", err)
	}
	if err := s.Scope().SetService(serviceName); err != nil {
		s.Reset()
		return nil, fmt.Errorf("fetch stream service scope: %w", err)
	}
	// The deadline bounds every read and write; the AfterFunc also unblocks
	// them at once when the caller cancels or the host closes.
	if deadline, ok := ctx.Deadline(); ok {
		if err := s.SetDeadline(deadline); err != nil {
			s.Reset()
			return nil, fmt.Errorf("set fetch deadline: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	msg := binary.AppendUvarint(make([]byte, 0, frameHeaderBytesMax+len(req)), uint64(len(req)))
	msg = append(msg, req...)
	if _, err := s.Write(msg); err != nil {
		s.Reset()
		return nil, fmt.Errorf("write request: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return nil, fmt.Errorf("close request side: %w", err)
	}
	resp, release, err := readStreamFrame(s, bufio.NewReader(s), h.cfg.ResponseBytesMax, 0)
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("read response: %w", err)
	}
	// The response now belongs to the caller; the reservation only covered
	// reading it.
	release()
	s.Close()
	return resp, nil
}

// handleFetch serves one inbound request: read the request frame, call the
// handler, write the response frame.
func (h *Host) handleFetch(s network.Stream) {
	if !h.enter() {
		s.Reset()
		return
	}
	defer h.wg.Done()
	from, ok := h.remoteIndex(s)
	if !ok {
		h.log.Error("p2p: fetch stream from a peer outside the validator set", "peer", s.Conn().RemotePeer())
		s.Reset()
		return
	}
	log := h.log.With("peer", from)
	if err := s.Scope().SetService(serviceName); err != nil {
		log.Warn("p2p: fetch stream refused by the resource manager", "err", err)
		s.Reset()
		return
	}
	if err := s.SetReadDeadline(time.Now().Add(h.cfg.RequestTimeout)); err != nil {
		s.Reset()
		return
	}
	req, release, err := readStreamFrame(s, bufio.NewReader(s), h.cfg.RequestBytesMax, 0)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, errFrameMemory) {
			if n := h.stats.framesRefused.Add(1); worthLogging(n) {
				log.Warn("p2p: refused a fetch request", "err", err, "refused_total", n)
			}
		}
		s.Reset()
		return
	}
	defer release()
	fn := h.reqFn.Load()
	if fn == nil {
		log.Debug("p2p: fetch request before a request handler was set")
		s.Reset()
		return
	}
	resp := (*fn)(from, req)
	if len(resp) > h.cfg.ResponseBytesMax {
		h.stats.framesRefused.Add(1)
		log.Error("p2p: request handler returned a response above ResponseBytesMax; resetting",
			"bytes", len(resp), "max", h.cfg.ResponseBytesMax)
		s.Reset()
		return
	}
	if err := s.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout)); err != nil {
		s.Reset()
		return
	}
	bw := bufio.NewWriterSize(s, streamBufferBytes)
	if err := writeFrame(bw, resp); err != nil {
		log.Debug("p2p: write fetch response", "err", err)
		s.Reset()
		return
	}
	if err := bw.Flush(); err != nil {
		log.Debug("p2p: flush fetch response", "err", err)
		s.Reset()
		return
	}
	s.Close()
	h.stats.requestsServed.Add(1)
}

// isTimeout reports whether err is a stream deadline firing.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
