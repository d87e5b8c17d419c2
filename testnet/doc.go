// Package testnet holds the local testnet script (testnet.sh) and the tests
// that drive it as a user would: real `ordo` processes on loopback, killed with
// SIGKILL, restarted and wiped, checked with `ordo verify`.
//
// Nothing here is imported by the node; it must never hold protocol logic.
package testnet
