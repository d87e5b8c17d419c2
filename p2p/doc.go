// Package p2p owns ordo's validator transport: one libp2p host per validator,
// peering only with the genesis validators, and two protocols between them.
//
//   - /ordo/pbft/1.0.0: one long-lived outbound stream per peer carrying
//     length-prefixed frames (uvarint length, then the body). A writer
//     goroutine per peer drains a bounded queue, batches writes and redials
//     with exponential backoff and full jitter. Frames to one peer keep their
//     order. Delivery is at most once: frames dropped on a full queue, or in
//     flight on a stream that fails, are counted, never retried, because the
//     consensus protocol above retransmits what matters.
//   - /ordo/fetch/1.0.0: one stream per request, carrying one request frame
//     and one response frame, used for state transfer.
//
// The transport identity is the validator's consensus key: the libp2p Ed25519
// identity is built from the key's seed, so a peer ID names a validator. Who
// sent an inbound frame is always taken from the authenticated connection,
// never from the frame. Anyone outside the validator set is refused by the
// connection gater before a muxer is negotiated.
//
// Only TCP, Noise and yamux are configured: no QUIC, websockets, relays, mDNS
// or NAT port mapping.
//
// This package must never interpret frames (they are opaque bytes to it),
// import protocol packages such as pbft, buffer without a bound, or block a
// caller of Send or Broadcast.
package p2p
