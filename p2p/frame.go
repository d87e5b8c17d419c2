package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// A frame on the wire is a uvarint length followed by that many bytes.

// frameHeaderBytesMax is the longest length prefix a frame can have.
const frameHeaderBytesMax = binary.MaxVarintLen64

// frameReserveBytesMin is the frame size from which an inbound frame's body is
// reserved with the libp2p resource manager before it is allocated. Smaller
// frames are bounded by the queue lengths instead: reserving each of 100k
// small frames a second would cost more than it protects.
const frameReserveBytesMin = 64 << 10

var (
	// ErrFrameTooLarge reports a frame (or request, or response) above its
	// configured maximum, in either direction.
	ErrFrameTooLarge = errors.New("frame exceeds its maximum size")
	// errFrameMemory reports that the resource manager refused memory for an
	// inbound frame: the peer sends more than this node can hold.
	errFrameMemory = errors.New("no memory reservation for frame")
)

// readFrameLen reads a frame's length prefix and checks it against max before
// anything is allocated for the body. A clean end of stream between frames is
// io.EOF; any other failure is wrapped.
func readFrameLen(br *bufio.Reader, max int) (int, error) {
	n, err := binary.ReadUvarint(br)
	switch {
	case errors.Is(err, io.EOF):
		return 0, io.EOF
	case err != nil:
		return 0, fmt.Errorf("frame length: %w", err)
	case n > uint64(max):
		return 0, fmt.Errorf("%w: length prefix says %d bytes, max %d", ErrFrameTooLarge, n, max)
	}
	return int(n), nil
}

// readFrameBody reads an n-byte body, n already checked by readFrameLen.
func readFrameBody(br *bufio.Reader, n int) ([]byte, error) {
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("frame body of %d bytes: %w", n, err)
	}
	return body, nil
}

// writeFrame appends one frame to bw; the caller flushes.
func writeFrame(bw *bufio.Writer, frame []byte) error {
	var hdr [frameHeaderBytesMax]byte
	n := binary.PutUvarint(hdr[:], uint64(len(frame)))
	if _, err := bw.Write(hdr[:n]); err != nil {
		return fmt.Errorf("write frame header: %w", err)
	}
	if _, err := bw.Write(frame); err != nil {
		return fmt.Errorf("write frame of %d bytes: %w", len(frame), err)
	}
	return nil
}

// readStreamFrame reads one frame of at most max bytes from s through br.
// Frames of frameReserveBytesMin or more are reserved in the stream's resource
// scope before the body is allocated; the returned release gives the memory
// back and must be called once the frame has been handed on. When bodyTimeout
// is positive and the body is not yet buffered, it must arrive within
// bodyTimeout, so a peer cannot hold a reader (and a reservation) by trickling
// bytes; a zero bodyTimeout leaves the stream's deadlines to the caller.
func readStreamFrame(s network.Stream, br *bufio.Reader, max int, bodyTimeout time.Duration) ([]byte, func(), error) {
	n, err := readFrameLen(br, max)
	if err != nil {
		return nil, nil, err
	}
	release := func() {}
	if n >= frameReserveBytesMin {
		if err := s.Scope().ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
			return nil, nil, fmt.Errorf("%w of %d bytes: %w", errFrameMemory, n, err)
		}
		release = func() { s.Scope().ReleaseMemory(n) }
	}
	if bodyTimeout > 0 && br.Buffered() < n {
		if err := s.SetReadDeadline(time.Now().Add(bodyTimeout)); err != nil {
			release()
			return nil, nil, fmt.Errorf("set frame body deadline: %w", err)
		}
		defer s.SetReadDeadline(time.Time{})
	}
	body, err := readFrameBody(br, n)
	if err != nil {
		release()
		return nil, nil, err
	}
	return body, release, nil
}
