// Package pbft is the PBFT protocol (Castro & Liskov) as a pure state machine.
//
// It owns the wire messages, quorums, commit certificates and the replica's
// protocol state. Replica.Submit, Step, Tick and CaughtUp take inputs and
// return ordered actions, in the style of etcd raft's Step/Ready: Persist
// (durable before any later action in the list runs), Broadcast and Send,
// Deliver (committed batches, strictly in sequence order, each once, with
// their commit certificate) and Fetch (this replica is behind: state transfer).
// The caller carries them out in order. Every envelope the replica signs is in
// a Persist ahead of its first Broadcast, and after a restart from State the
// replica never signs a different digest for a (view, seq) it signed before.
//
// This package never does I/O, starts goroutines, reads a clock or uses global
// randomness, and map iteration never decides an output or its order: time
// enters only through Tick, and every decision is a function of the inputs,
// which is what lets the simulator replay a seed exactly. It never verifies
// signatures either: the node verifies envelopes and requests before Step and
// Submit (batch verification is the node's hot path, not the core's).
//
// Slots exist only for seqs inside the window (Delivered, Delivered+WindowSeqs];
// each holds at most one vote per replica and kind, so memory is bounded by the
// configuration whatever peers send. Refused messages are counted in
// Status.Dropped, conflicting second votes in Status.Equivocations.
package pbft
