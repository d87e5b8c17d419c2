// Package pbft is the PBFT protocol (Castro & Liskov, OSDI '99 and TOCS 2002)
// as a pure state machine: normal case, checkpoints, view change.
//
// It owns the wire messages, quorums, commit certificates and the replica's
// protocol state. Replica.Submit, Step, Tick, Executed and CaughtUp take
// inputs and return ordered actions, in the style of etcd raft's
// Step/Ready: Persist (durable before any later action in the list runs),
// Broadcast and Send, Deliver (committed batches, strictly in sequence order,
// each once, with their commit certificate) and Fetch (this replica is
// behind: state transfer). The caller carries them out in order.
//
// This package never does I/O, starts goroutines, reads a clock or uses global
// randomness, and map iteration never decides an output or its order: time
// enters only through Tick, and every decision is a function of the inputs,
// which is what lets the simulator replay a seed exactly. The node verifies
// every envelope signature (and every request in a PRE-PREPARE's batch)
// before Step; the core verifies only the signatures nested inside
// VIEW-CHANGE and NEW-VIEW messages, with Config.Verifier.
//
// # The node's contract
//
//   - Carry out actions in order. A Persist's envelopes and view are durable
//     before anything after it runs (one fsync may cover many Persists).
//     Keep every persisted envelope until Prunable releases it, and pass the
//     rest back, in persisted order, in State.Log; State.View is the View of
//     the last durable Persist and State.Delivered the seq applied durably.
//   - Apply a Deliver only when its Seq is one past the last applied seq (a
//     seq applied meanwhile by state transfer is skipped: agreement makes it
//     the same batch). An empty Batch is a null batch: an entry with no
//     requests.
//   - Call Executed(seq, stateDigest) for every seq applied, in order,
//     whether delivered or fetched; it drives checkpoints.
//   - On Fetch, fetch committed entries above the applied seq (AfterSeq may
//     lag it), verify every certificate (VerifyCertificate, BatchDigest),
//     apply them, call Forget with their requests and Executed for each,
//     then CaughtUp after the last. StableCheckpoint and
//     VerifyCheckpointProof let a peer serve and check the proof of a state.
//   - Every envelope in a Send or Broadcast is signed by this replica (the
//     core never relays), so the node may refuse a frame whose envelope was
//     signed by another replica than the peer that sent it.
//
// # Safety and crash safety
//
// Every envelope the replica signs is in a Persist ahead of its first send,
// with the view it is in, so after a restart from State it never signs a
// message conflicting with one it signed before (I5). A backup persists the
// PRE-PREPARE it accepts (with the batch) together with its PREPARE, and
// the 2f PREPAREs of a prepared certificate together with its COMMIT: its
// VIEW-CHANGE after a restart still carries every certificate. Every view a
// replica enters, it first signs a VIEW-CHANGE for; that VIEW-CHANGE holds
// the certificates of all earlier views, which is what lets Prunable release
// their votes.
//
// # Checkpoints and the window
//
// Every CheckpointInterval applied seqs (Executed) a replica signs a
// CHECKPOINT; 2f+1 matching ones make the seq stable, the low watermark h.
// Slots, votes, certificates and checkpoint votes at or below h are dropped,
// and a replica votes and proposes only in (h, h+WindowSeqs]. A replica below
// another's h is answered with that replica's own CHECKPOINT for h, so that it
// gathers a proof and moves its window; one that learns of a stable checkpoint
// above what it applied emits Fetch.
//
// # View change
//
// A backup changes view when a pending request waits ViewChangeTimeout with
// no delivery (or CensorshipTimeoutFactor timeouts at all), when the primary
// signed two PRE-PREPAREs for one (view, seq), or when the primary's
// NEW-VIEW does not follow from its VIEW-CHANGEs. It also joins the highest
// view f+1 other replicas showed in any message. The NEW-VIEW timeout starts
// once 2f+1 replicas moved to the view and doubles with every view change
// since the last delivery. VIEW-CHANGEs carry prepared certificates without
// batches (so they stay within the message limit whatever the batch size);
// the NEW-VIEW re-issues batchless PRE-PREPAREs, and the new primary then
// sends each with its batch. A digest is re-issued only if 2f+1 replicas
// accepted its PRE-PREPARE, so at least f+1 honest ones hold the batch (each
// keeps the batches it accepted across views); one that lacks it still votes
// and gets the entry by state transfer once it is committed. Null batches (empty, fixed
// timestamp) fill gaps and are delivered like any batch; the normal case
// refuses empty PRE-PREPAREs.
//
// Slots exist only for seqs inside the window; each holds at most one vote
// per replica and kind, and every other structure is bounded per replica
// (checkpoint votes, the latest VIEW-CHANGE of each, StoredBatchesPerSeqMax
// batches per seq, EvidenceMax pieces of evidence), so memory is bounded by
// the configuration whatever peers send. Refused messages are counted in
// Status.Dropped, conflicting second messages in Status.Equivocations, with
// the latest pairs in Status.Evidence.
//
// A replica left behind while the others went idle notices it from a
// heartbeat: every HeartbeatIntervals retransmit intervals an active replica
// re-sends its COMMIT for its last delivered seq (or its CHECKPOINT for h).
// COMMITs or CHECKPOINTs of f+1 replicas above the applied seq make it Fetch.
//
// Duplicate requests across batches are not refused: a client may resend a
// request after it committed (the latest RecentDeliveredMax delivered
// requests are ignored by Submit, older ones and any after a restart are
// not), and a new primary may re-propose a request of a re-issued batch it
// never saw. The state machine executes a client's request once.
//
// # Tests
//
// sim_test.go is a simulated world: a network (loss, delay, reordering,
// duplication, partitions, one-way links, loss of one message kind), a
// clock, and a node around each core that persists with Prunable, delivers,
// calls Executed, transfers state and forwards requests; twins (two instances
// of one replica with one key); an adversary (adversary_test.go) that
// rewrites what Byzantine replicas send. It checks TESTING.md's I1 to I5 on
// every action, I6 and bounded memory at the end of each run.
// simulator_test.go runs the scenarios (TestSimulator, about 2,000 seeds by
// default, a subset with Ed25519 and the rest with a cheap hash signature),
// including a negative control with f+1 Byzantine twins that must be caught
// breaking agreement. ORDO_SIM_SEEDS=N runs N seeds per scenario (and for
// the older seeded tests); ORDO_SIM_SEED=S with ORDO_SIM_SCENARIO=name
// replays one, and a failure prints that command. They replace
// ORDO_PBFT_SEEDS and ORDO_PBFT_SEED.
package pbft
