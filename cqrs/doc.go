// Package cqrs owns ordo's read side: the projection engine that follows the
// event log and builds read models, the built-in projections (streams,
// event-types, balances), declarative projections loaded from a JSON or YAML
// file, and the HTTP handlers that serve projection rows and server-sent event
// subscriptions.
//
// A projection's rows live in the engine's own badger database, never in the
// event log's. Every transaction that changes a projection's rows also writes
// its checkpoint (the last log position it applied), so after a crash a
// projection resumes exactly where its rows say it is: each event takes effect
// exactly once.
//
// Rows are kept per generation. A projection that must be rebuilt (its
// version changed, or a user asked) replays the log into a fresh generation
// while the current one keeps serving; one transaction then points the
// projection at the new generation, and the old one is deleted in the
// background. Queries read the projection's generation, rows and checkpoint
// from one snapshot, so no query ever sees a half-built model.
//
// The built-in projections keep their rows decoded: within a transaction a
// row that several events change is read, decoded, encoded and written
// once, and between transactions each generation caches its most recently
// committed rows (a bounded number). Only committed rows enter the cache,
// and a transaction takes the rows it changes out of it, so the cache always
// agrees with the store and exactly-once is unchanged.
//
// Storage layout (one prefix byte, then big-endian integers):
//
//	0x01 name                  meta: active generation and version, shadow generation and version
//	0x02                       the last generation number handed out
//	0x03 gen(8)                checkpoint: last applied position, events skipped
//	0x04 gen(8)                marker: this generation is garbage, delete it
//	0x10 gen(8) key            a row (a JSON object)
//	0x11 gen(8) key            a projection's private state (never served)
//
// The package must never write to the event log, decide what a command means,
// or let anything but the applied events reach a projection's rows: no clock,
// no randomness, no map order. A projection that fails on an event stops there
// rather than skip it, because a read model that silently lost an event is
// worse than one that visibly stopped.
package cqrs
