package pbft

import (
	"bytes"
	"testing"

	"github.com/ordoledger/ordo/codec"
	"github.com/ordoledger/ordo/crypto"
)

// batchEnvelope is a PRE-PREPARE carrying n signed requests of about 200 bytes.
func batchEnvelope(b *testing.B, n int) []byte {
	b.Helper()
	k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{3}, crypto.SeedSize))
	if err != nil {
		b.Fatal(err)
	}
	s := crypto.NewSigner(k, crypto.Hash([]byte("bench")))
	batch := make([][]byte, n)
	for i := range batch {
		batch[i] = SignRequest(s, uint64(i+1), bytes.Repeat([]byte{byte(i)}, 128))
	}
	env := Seal(s, KindPrePrepare, &PrePrepare{View: 1, Seq: 2, Digest: BatchDigest(3, batch), Timestamp: 3})
	env.Batch = batch
	return codec.MustMarshal(env)
}

// BenchmarkBatchCodec encodes and strictly decodes a PRE-PREPARE of 1,000
// requests, as every backup does with every batch.
func BenchmarkBatchCodec(b *testing.B) {
	raw := batchEnvelope(b, 1000)
	var env Envelope
	if err := codec.Unmarshal(raw, &env); err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			codec.MustMarshal(&env)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := DecodeEnvelope(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("digest", func(b *testing.B) {
		for b.Loop() {
			BatchDigest(3, env.Batch)
		}
	})
}

// BenchmarkDecodeRequest decodes one signed request of a 128-byte command, as
// every replica does with every request it verifies and executes.
func BenchmarkDecodeRequest(b *testing.B) {
	k, err := crypto.NewKeyFromSeed(bytes.Repeat([]byte{3}, crypto.SeedSize))
	if err != nil {
		b.Fatal(err)
	}
	raw := SignRequest(crypto.NewSigner(k, crypto.Hash([]byte("bench"))), 1764691200123456789, bytes.Repeat([]byte{7}, 128))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeRequest(raw); err != nil {
			b.Fatal(err)
		}
	}
}
