// Package eventlog owns ordo's badger-backed, append-only, hash-chained log:
// one Entry per committed batch (its requests, commit certificate, per-request
// results and hash link), the events those batches produced with their global
// positions, the per-stream and event-ID indexes, a replicated state key space
// for the executor, and a separate protocol-state key space for the node.
//
// Every batch is applied in one badger transaction together with the
// `applied = seq` marker, so a crash leaves all of a batch or none of it. Apply
// refuses anything but the next sequence number.
//
// Key layout (one prefix byte, then big-endian integers so that iteration order
// is numeric order):
//
//	0x01                              head: {seq, hash, last position, state digest} of the newest entry
//	0x02                              the genesis digest this log was created for
//	0x10 seq(8)                       Entry (codec)
//	0x11 position(8)                  Event (codec)
//	0x12 stream 0x00 version(8)       position(8) of that stream version
//	0x13 stream                       retired: logs written before 2026-12-03 hold a
//	                                  stream's last version here; nothing reads it now
//	                                  (the stream's greatest 0x12 key says it), so the
//	                                  prefix must never be reused
//	0x14 id(16)                       EventRef (codec): where an event ID lives
//	0x20 key                          replicated executor state (Tx.Get/Set/Delete)
//	0x30 key                          older nodes' protocol state (meta.go; now in node/protostore.go)
//
// Stream names never contain 0x00 (AppendEvents refuses them), which keeps one
// stream's index keys from interleaving with another's.
//
// Across batches the log keeps a bounded cache of the committed state the
// executor reads — stream heads, state values (present or absent) — and the
// executor's memos (Tx.Memo), changed only once a batch has committed. Its
// answers are always badger's, so it changes nothing that is stored (see
// cache.go). A Bloom filter of the log's event IDs tells the executor that a
// new event's ID is new without a read (idfilter.go); it is filled in the
// background when a log is reopened.
//
// The package must never interpret requests, results or certificates (they are
// opaque bytes here), decide what a command means, read a clock for anything
// that is stored, let map order, time or scheduling reach stored bytes, or
// answer an executor's read with anything but what badger holds.
package eventlog
