// Package pbft is the PBFT protocol (Castro & Liskov) as a pure state machine.
//
// It owns the wire messages, quorums, commit certificates and the replica's
// protocol state. Replica.Step, Submit and Tick take inputs and return ordered
// actions (persist, then send; deliver committed batches in sequence order); the
// caller carries them out. This package never does I/O, starts goroutines, reads
// a clock or uses global randomness: time enters only through Tick, and every
// decision is a function of the inputs, which is what lets the simulator replay
// a seed exactly.
package pbft
