// Package node is ordo's composition root: it wires the libp2p transport, the
// pure PBFT core, the ledger executor over the event log, and the HTTP API.
//
// Concurrency is a small fixed set of goroutines with bounded channels between
// them, each owning its state:
//
//	p2p inbound ─► verifier (batch Ed25519, request cache) ─► driver ─► executor
//	HTTP submit ─► (signature checked in the handler) ────────► driver
//
// The driver alone owns the pbft.Replica. It carries out the core's actions in
// order, with one group-committed fsync for all the votes a round produced before
// any of them leaves (persist, then send). The executor alone writes the event
// log: one badger transaction per committed batch, then one signed EXECUTED per
// batch that the reply tracker turns into client reply bundles. The fetcher
// catches a lagging replica up from peers, verifying every commit certificate
// and re-executing every batch itself.
//
// This package must never put protocol decisions here that belong in pbft, nor
// let wall-clock time reach anything replicated except through pbft.Tick.
package node
