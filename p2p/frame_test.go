package p2p

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

func encodeFrames(frames ...[]byte) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	for _, f := range frames {
		if err := writeFrame(bw, f); err != nil {
			panic(err)
		}
	}
	if err := bw.Flush(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// readFrames reads frames of at most max bytes until the first error.
func readFrames(data []byte, max int) ([][]byte, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	var out [][]byte
	for {
		n, err := readFrameLen(br, max)
		if err != nil {
			return out, err
		}
		body, err := readFrameBody(br, n)
		if err != nil {
			return out, err
		}
		out = append(out, body)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	frames := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{7}, 300), bytes.Repeat([]byte{9}, 1<<16)}
	got, err := readFrames(encodeFrames(frames...), 1<<16)
	if err != io.EOF {
		t.Fatalf("clean end of stream gave %v, want io.EOF", err)
	}
	if len(got) != len(frames) {
		t.Fatalf("read %d frames, want %d", len(got), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestFrameErrors(t *testing.T) {
	whole := encodeFrames([]byte("hello"))
	cases := []struct {
		name string
		data []byte
		max  int
		want error
	}{
		{"above max", encodeFrames(make([]byte, 11)), 10, ErrFrameTooLarge},
		{"truncated body", whole[:len(whole)-1], 10, io.ErrUnexpectedEOF},
		{"truncated length", []byte{0x80}, 10, io.ErrUnexpectedEOF},
		{"length overflows 64 bits", bytes.Repeat([]byte{0xff}, 11), 10, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readFrames(c.data, c.max)
			if err == nil || err == io.EOF {
				t.Fatalf("got %v, want an error", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// A length prefix far above the maximum must be refused before its body is
// allocated.
func TestFrameLengthCheckedBeforeAllocation(t *testing.T) {
	const max = 1 << 20
	hdr := binary.AppendUvarint(nil, 1<<40)
	br := bufio.NewReader(bytes.NewReader(hdr))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		br.Reset(bytes.NewReader(hdr))
		if _, err := readFrameLen(br, max); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > max {
		t.Fatalf("refusing 100 oversized frames allocated %d bytes", grew)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(encodeFrames([]byte("a"), []byte("bc")))
	f.Add(encodeFrames(make([]byte, 64)))
	f.Add(encodeFrames(make([]byte, 65)))
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0x80})
	f.Add(bytes.Repeat([]byte{0xff}, 12))
	f.Add(binary.AppendUvarint(nil, 1<<40))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 64
		frames, err := readFrames(data, max)
		if err == nil {
			t.Fatal("reading stopped without an error")
		}
		for _, fr := range frames {
			if len(fr) > max || cap(fr) > max {
				t.Fatalf("frame of len %d cap %d above max %d", len(fr), cap(fr), max)
			}
		}
		// Whatever was read survives a round trip. (The input itself may
		// differ from the re-encoding: a non-minimal uvarint length is
		// accepted, and harmless, since frames are opaque.)
		again, err := readFrames(encodeFrames(frames...), max)
		if err != io.EOF || len(again) != len(frames) {
			t.Fatalf("round trip read %d of %d frames, err %v", len(again), len(frames), err)
		}
		for i := range frames {
			if !bytes.Equal(again[i], frames[i]) {
				t.Fatalf("frame %d changed in a round trip", i)
			}
		}
	})
}
