// Package ledger owns ordo's deterministic state machine: it executes the
// requests of each committed batch, in order, inside the batch's eventlog
// transaction, and returns one encoded Result per request.
//
// It executes stream appends with KurrentDB semantics (expected version,
// idempotent event IDs), and a double-entry ledger in the spirit of
// TigerBeetle: accounts, transfers posted at once or pending (reserved, then
// posted, voided or expired), and linked chains of operations that succeed or
// fail as one. It keeps each client's at-most-once state: the results of its
// last ClientWindow executed sequence numbers.
//
// Ledger rules. A client creates accounts for itself only (owner_key must be
// its own key), and only an account's owner may debit it, or post or void a
// pending transfer that debits it. Account and transfer ids are unique for
// ever: repeating an operation with equal fields answers CodeExists and
// changes nothing, with other fields CodeExistsWithDifferentFields; post and
// void operations have ids of their own in the transfer id space. Amounts are
// checked uint64s. Pending amounts count against an account's flags as if
// posted. A chain fails as one: the failing operation gets its own code, the
// others CodeLinkedEventFailed; CodeExists does not fail a chain, so a retried
// chain answers CodeExists throughout. A failed operation leaves no event:
// its Result, a leaf of the entry's results tree, is its record.
//
// Every effect of a ledger operation is an event (see EventAccountCreated and
// the other Event* constants for the schema) on a stream of its own account
// or transfer, with an id in a namespace that client appends may not use, as
// they may not use the ledger's streams. The ledger state is a cache of those
// events that Rebuild reproduces byte for byte. At the start of every batch,
// before its requests, pending transfers whose deadline (creation log time +
// timeout) is before the batch's log time expire, in deadline order.
//
// Replicated state keys (inside eventlog's state space):
//
//	"r" client(32) seq(8)    the encoded Result of an executed request
//	"c" client(32)           clientState: how many results are kept and the lowest seqs
//	"La" id                  an account: code, owner, flags, balances (codec)
//	"Lt" id                  a transfer, or a post or void of one (codec)
//	"Lx" deadline(8) id      expiry index: pending transfers with a timeout, by deadline
//	"Ln"                     how many ledger events exist (8): numbers the next event id
//
// Memos (eventlog.Tx.Memo, kept by the log in memory only):
//
//	"c" client(32)           the client's highest retained seq, while it has results
//
// The package must never read a clock, randomness, the environment or map
// iteration order, never touch the log outside the Tx it is given, and never
// return an error for a bad command: a bad command is a Result. Time is the
// batch's agreed log time (Tx.Timestamp) and nothing else. Errors are for
// storage failures and broken invariants only, and they stop the batch.
package ledger
