// Package client is ordo's Go client. It builds and signs requests, talks to
// several nodes in turn, and checks every reply bundle against the genesis
// validator set before trusting it: a reply counts only with f+1 signed
// EXECUTED statements from distinct validators and a Merkle path from the
// result to their agreed results root.
//
// It owns the HTTP wire types of the node API as a client sees them, except
// the reply bundle, pbft.ReplyBundle, which the node encodes (as CBOR when
// asked, as JSON otherwise) and the client decodes from either. It must
// never trust a single node's word for the outcome of a request, never re-sign
// a request on retry (a retry sends the same bytes, so the ledger executes it
// at most once), and never import the node, eventlog or pbft core packages: it
// knows the network only through HTTP and the wire types.
package client
