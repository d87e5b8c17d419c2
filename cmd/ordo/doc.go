// Command ordo is the command-line interface of ordo: key and genesis
// generation, the node daemon, and a client for appending and reading events.
//
// It owns flag parsing, output formatting and exit codes only. It must never
// hold protocol, storage or verification logic of its own (those live in node,
// client and the packages below them), never print a stack trace or a usage
// dump on failure (one line "ordo: …" on stderr and a non-zero exit), and never
// trust a single node's answer for the outcome of a write.
package main
