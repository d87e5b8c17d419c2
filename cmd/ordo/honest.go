//go:build !byzantine

package main

import "github.com/urfave/cli/v2"

// byzantineFlags: release builds have none.
func byzantineFlags() []cli.Flag { return nil }
