package codec

import (
	"bytes"
	"strings"
	"testing"
)

type sample struct {
	A uint64            `cbor:"1,keyasint"`
	B []byte            `cbor:"2,keyasint"`
	C string            `cbor:"3,keyasint"`
	D map[string]uint64 `cbor:"4,keyasint"`
}

func TestRoundTripIsDeterministic(t *testing.T) {
	v := sample{A: 7, B: []byte{1, 2}, C: "x", D: map[string]uint64{"zz": 1, "a": 2, "mm": 3}}
	first, err := Marshal(&v)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		again, err := Marshal(&v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("encoding %d differs: %x vs %x", i, first, again)
		}
	}
	var back sample
	if err := Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	if back.A != 7 || back.C != "x" || back.D["mm"] != 3 {
		t.Fatalf("round trip lost data: %+v", back)
	}
	if _, err := Canonical[sample](first); err != nil {
		t.Fatalf("deterministic encoding judged non-canonical: %v", err)
	}
}

func TestStrictDecoding(t *testing.T) {
	cases := map[string][]byte{
		// map{1: 1, 1: 2}: a duplicate key.
		"duplicate key": {0xa2, 0x01, 0x01, 0x01, 0x02},
		// map{9: 1}: a field sample does not have.
		"unknown field": {0xa1, 0x09, 0x01},
		// indefinite-length byte string.
		"indefinite length": {0xa1, 0x02, 0x5f, 0x41, 0x00, 0xff},
		// tag 1 (epoch time) around an integer.
		"tag": {0xa1, 0x01, 0xc1, 0x01},
		// trailing byte after a complete value.
		"trailing bytes": {0xa1, 0x01, 0x01, 0x00},
		// truncated.
		"truncated": {0xa1, 0x02, 0x45, 0x01},
	}
	for name, in := range cases {
		var v sample
		if err := Unmarshal(in, &v); err == nil {
			t.Errorf("%s: decoded %x without error", name, in)
		}
	}
}

func TestNonCanonicalRejected(t *testing.T) {
	// map{1: 1} with the integer 1 encoded in two bytes (0x18 0x01): valid CBOR,
	// not the deterministic encoding.
	in := []byte{0xa1, 0x01, 0x18, 0x01}
	if _, err := Canonical[sample](in); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("non-canonical input accepted: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	var v []byte
	if err := Unmarshal(make([]byte, MaxMessageBytes+1), &v); err != ErrTooLarge {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(&sample{A: 1, B: []byte("b"), C: "c", D: map[string]uint64{"k": 1}})
	f.Add(good)
	f.Add([]byte{0xa2, 0x01, 0x01, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Canonical[sample](data)
		if err != nil {
			return
		}
		// A canonical input must re-encode to itself.
		again, err := Marshal(&v)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("canonical input %x re-encoded to %x (%v)", data, again, err)
		}
	})
}
