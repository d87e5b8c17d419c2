//go:build byzantine

package main

import "github.com/urfave/cli/v2"

// byzantineFlags exist only in test builds (go build -tags byzantine).
func byzantineFlags() []cli.Flag {
	return []cli.Flag{&cli.StringFlag{
		Name:    "byzantine",
		Usage:   "TEST BUILD ONLY: make this validator lie (equivocate, wrong-digest, silent)",
		EnvVars: []string{"ORDO_BYZANTINE"},
	}}
}
