package pbft

import (
	"bytes"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// requestSamples are encodings SignRequest makes, at every width of the seq's
// and the command's heads, with a nil and an empty command.
func requestSamples(tb testing.TB) [][]byte {
	tb.Helper()
	k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{5}, crypto.SeedSize))
	if err != nil {
		tb.Fatal(err)
	}
	s := crypto.NewSigner(k, crypto.Hash([]byte("fast")))
	var out [][]byte
	for _, seq := range []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		for _, command := range [][]byte{nil, {}, {1}, bytes.Repeat([]byte{2}, 23), bytes.Repeat([]byte{3}, 24), bytes.Repeat([]byte{4}, 300), bytes.Repeat([]byte{5}, 70000)} {
			out = append(out, SignRequest(s, seq, command))
		}
	}
	return out
}

// checkSameAsGeneral fails if the fast path accepts b and answers otherwise
// than the general decoder.
func checkSameAsGeneral(t *testing.T, b []byte) (accepted bool) {
	t.Helper()
	fsr, freq, ok := decodeRequestFast(b)
	if !ok {
		return false
	}
	gsr, greq, err := decodeRequestGeneral(b)
	if err != nil {
		t.Fatalf("fast path accepted %x, which the general decoder refuses: %v", b, err)
	}
	if !reflect.DeepEqual(fsr, gsr) || !reflect.DeepEqual(freq, greq) {
		t.Fatalf("fast path decoded %x as %+v %+v, the general decoder as %+v %+v", b, fsr, freq, gsr, greq)
	}
	return true
}

func TestDecodeRequestFastTakesWhatSignRequestMakes(t *testing.T) {
	for _, raw := range requestSamples(t) {
		if !checkSameAsGeneral(t, raw) {
			t.Fatalf("fast path refused %x, an encoding SignRequest made", raw[:min(len(raw), 64)])
		}
	}
}

// Every other layout falls through to the general decoder: a seq or a length
// not in its shortest form, keys out of order, a wrong-sized client key,
// trailing bytes, a truncation at every byte.
func TestDecodeRequestFastRefusesOtherLayouts(t *testing.T) {
	raw := requestSamples(t)[3] // seq 0, a 23-byte command
	var client [32]byte
	cases := map[string][]byte{
		"trailing byte":       append(bytes.Clone(raw), 0),
		"seq not shortest":    bytes.Replace(raw, []byte{0x02, 0x00, 0x03}, []byte{0x02, 0x18, 0x00, 0x03}, 1),
		"short client key":    bytes.Replace(raw, append([]byte{0x58, 0x20}, raw[6:38]...), append([]byte{0x58, 0x1f}, raw[6:37]...), 1),
		"indefinite-length":   append([]byte{0xbf}, raw[1:]...),
		"keys out of order":   slices.Concat([]byte{0xa2, 0x02, 0x43}, []byte("sig"), []byte{0x01}, codec.MustMarshal(&Request{Client: client})),
		"command as a string": bytes.Replace(raw, []byte{0x03, 0x57}, []byte{0x03, 0x77}, 1),
	}
	if !bytes.Equal(raw[4:6], []byte{0x58, 0x20}) {
		t.Fatalf("sample layout changed: %x", raw[:8])
	}
	for name, b := range cases {
		if bytes.Equal(b, raw) {
			t.Fatalf("%s: the case did not change the bytes", name)
		}
		if checkSameAsGeneral(t, b) {
			t.Errorf("%s: fast path accepted %x", name, b)
		}
	}
	for n := 0; n < len(raw); n++ {
		if checkSameAsGeneral(t, raw[:n]) {
			t.Fatalf("fast path accepted the first %d of %d bytes", n, len(raw))
		}
	}
}

// FuzzDecodeRequestFast checks the fast path against the general decoder on
// arbitrary bytes: whatever it accepts, the general decoder must accept and
// decode to the same values.
func FuzzDecodeRequestFast(f *testing.F) {
	for _, raw := range requestSamples(f) {
		if len(raw) < 1024 {
			f.Add(raw)
		}
	}
	f.Add([]byte{0xa2, 0x01, 0xa3})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSameAsGeneral(t, b)
	})
}
