//go:build !byzantine

package node

import "github.com/ordoledger/ordo/pbft"

// byzantineBuild: release builds cannot misbehave; Config.Byzantine is refused.
const byzantineBuild = false

func (n *Node) misbehave(acts []pbft.Action) []pbft.Action { return acts }
