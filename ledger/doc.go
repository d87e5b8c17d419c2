// Package ledger owns ordo's deterministic state machine: it executes the
// requests of each committed batch, in order, inside the batch's eventlog
// transaction, and returns one encoded Result per request.
//
// Today it executes stream appends with KurrentDB semantics (expected version,
// idempotent event IDs) and keeps each client's at-most-once state: the
// results of its last ClientWindow executed sequence numbers, stored in the
// replicated state key space so that every replica holds the same.
//
// Replicated state keys (inside eventlog's state space):
//
//	"r" client(32) seq(8)   the encoded Result of an executed request
//	"c" client(32)          clientState: how many results are kept and the lowest seqs
//
// The package must never read a clock, randomness, the environment or map
// iteration order, never touch the log outside the Tx it is given, and never
// return an error for a bad command: a bad command is a Result. Errors are for
// storage failures only, and they stop the batch.
package ledger
