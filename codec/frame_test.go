package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	in := []sample{{A: 1, B: []byte("one")}, {A: 2, C: "two"}, {}}
	var stream []byte
	for i := range in {
		var err error
		if stream, err = AppendFrame(stream, &in[i]); err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(stream)
	for i := range in {
		b, err := ReadFrame(r, 64)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got, err := Canonical[sample](b)
		if err != nil || got.A != in[i].A || got.C != in[i].C || !bytes.Equal(got.B, in[i].B) {
			t.Fatalf("frame %d: %+v, %v; want %+v", i, got, err, in[i])
		}
	}
	if _, err := ReadFrame(r, 64); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameRefuses(t *testing.T) {
	whole, err := AppendFrame(nil, &sample{A: 7, B: bytes.Repeat([]byte{1}, 20)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		stream []byte
		max    int
	}{
		{"header cut short", whole[:FrameHeaderBytes-1], 64},
		{"body cut short", whole[:len(whole)-1], 64},
		{"above the bound", whole, len(whole) - FrameHeaderBytes - 1},
		{"huge length, nothing after", binary.BigEndian.AppendUint32(nil, 1<<31), 64},
	}
	for _, tc := range cases {
		b, err := ReadFrame(bytes.NewReader(tc.stream), tc.max)
		if err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: got %d bytes, %v; want an error other than io.EOF", tc.name, len(b), err)
		}
	}
}

// FuzzReadFrame: whatever the stream, frames come out within the bound, and
// the stream ends in io.EOF only where a frame ended.
func FuzzReadFrame(f *testing.F) {
	whole, _ := AppendFrame(nil, &sample{A: 1, B: []byte("b")})
	f.Add(whole, 64)
	f.Add(append(whole, whole[:3]...), 64)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, 1<<20)
	f.Fuzz(func(t *testing.T, stream []byte, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		r := bytes.NewReader(stream)
		read := 0
		for {
			b, err := ReadFrame(r, max)
			if err == io.EOF {
				if read != len(stream) {
					t.Fatalf("io.EOF after %d of %d bytes", read, len(stream))
				}
				return
			}
			if err != nil {
				return
			}
			if len(b) > max {
				t.Fatalf("frame of %d bytes above the bound %d", len(b), max)
			}
			read += FrameHeaderBytes + len(b)
		}
	})
}
