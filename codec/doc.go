// Package codec owns ordo's one deterministic CBOR encoding (RFC 8949 Core
// Deterministic Encoding) and the strict decoding mode used for every byte that
// crosses a trust boundary.
//
// Everything that is signed, hashed, persisted or replicated is encoded with
// Marshal. Everything that arrives from a peer, a client or a disk is decoded with
// Unmarshal, which refuses duplicate map keys, indefinite lengths, tags, unknown
// fields and anything over the limits below. The package must never grow a
// second encoding mode: two encoders would mean two byte strings for one value.
package codec
