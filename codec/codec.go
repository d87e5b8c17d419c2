package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// Decode limits. They bound the memory a hostile input can make a decoder
// allocate before the input is rejected. MaxMessageBytes is the upper bound for
// any single encoded value ordo accepts; transports and APIs enforce it (or a
// smaller bound of their own) before bytes reach Unmarshal.
const (
	MaxMessageBytes  = 16 << 20
	MaxArrayElements = 1 << 16
	MaxMapPairs      = 1 << 12
	MaxNestedLevels  = 16
)

// Raw is an encoded CBOR value kept as the exact bytes received. Signed bodies
// are carried as Raw so that signatures are verified over the bytes that arrived,
// never over a re-encoding.
type Raw = cbor.RawMessage

// ErrTooLarge is returned for inputs longer than MaxMessageBytes.
var ErrTooLarge = errors.New("codec: input exceeds MaxMessageBytes")

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("codec: building the deterministic encoding mode: %v", err))
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxArrayElements:  MaxArrayElements,
		MaxMapPairs:       MaxMapPairs,
		MaxNestedLevels:   MaxNestedLevels,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("codec: building the strict decoding mode: %v", err))
	}
}

// Marshal encodes v with Core Deterministic Encoding: one value, one byte string.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T: %w", v, err)
	}
	return b, nil
}

// MustMarshal encodes values whose types the program controls completely
// (fixed-size structs of integers and byte strings). A failure there is a broken
// invariant, not bad input, so it panics.
func MustMarshal(v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("codec: encoding a program-built %T failed: %v", v, err))
	}
	return b
}

// Unmarshal strictly decodes one CBOR value from data into v. Trailing bytes,
// duplicate keys, unknown fields, tags, indefinite lengths and oversized inputs
// are errors.
func Unmarshal(data []byte, v any) error {
	if len(data) > MaxMessageBytes {
		return ErrTooLarge
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("codec: decode %T: %w", v, err)
	}
	return nil
}

// Canonical reports whether data is exactly the deterministic encoding of the
// value it decodes to, i.e. whether re-encoding gives the same bytes. Signed
// messages must be canonical so that one value has one signature input.
func Canonical[T any](data []byte) (T, error) {
	var v T
	if err := Unmarshal(data, &v); err != nil {
		return v, err
	}
	again, err := Marshal(&v)
	if err != nil {
		return v, err
	}
	if string(again) != string(data) {
		return v, fmt.Errorf("codec: %T is not canonically encoded", v)
	}
	return v, nil
}

// FrameHeaderBytes is the length prefix of a frame: a big-endian uint32.
const FrameHeaderBytes = 4

// AppendFrame appends v's encoding as one frame: its length as a big-endian
// uint32, then the bytes. A stream of frames carries values one at a time
// with a bound on each that a reader checks before it allocates.
func AppendFrame(dst []byte, v any) ([]byte, error) {
	b, err := Marshal(v)
	if err != nil {
		return dst, err
	}
	if len(b) > MaxMessageBytes {
		return dst, fmt.Errorf("codec: frame of %d bytes: %w", len(b), ErrTooLarge)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...), nil
}

// ReadFrame reads one frame from r and returns its value's bytes. It returns
// io.EOF at a clean end of the stream (no byte of a next frame), and an error
// for a frame longer than max or cut short. Memory grows with the bytes that
// arrive, not with the length a header claims.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var h [FrameHeaderBytes]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, fmt.Errorf("codec: frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("codec: frame of %d bytes above the bound of %d", n, max)
	}
	var body bytes.Buffer
	body.Grow(int(min(n, frameGrowBytes)))
	if got, err := io.CopyN(&body, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("codec: frame of %d bytes cut short after %d: %w", n, got, err)
	}
	return body.Bytes(), nil
}

// frameGrowBytes is how much ReadFrame reserves for a body before it arrives.
const frameGrowBytes = 64 << 10
