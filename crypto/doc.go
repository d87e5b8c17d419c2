// Package crypto owns ordo's keys, signatures, digests and Merkle trees.
//
// One verification rule holds everywhere: ZIP-215 Ed25519 (via curve25519-voi),
// for single and batch verification alike, so every replica gives the same
// answer for every input, crafted non-canonical signatures included. A signature
// always covers a domain: "ordo/v1/" + kind + 0x00 + chain ID + body, so that a
// message can never be replayed as another kind or on another chain.
//
// Merkle trees follow RFC 6962 (leaf prefix 0x00, node prefix 0x01, SHA-256).
//
// This package must never import another ordo package, do I/O other than key
// files, or read a clock.
package crypto
