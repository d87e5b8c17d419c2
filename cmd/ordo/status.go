package main

import (
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "print a node's status as JSON (the first of the --node URLs that answers)",
		Flags: []cli.Flag{nodeFlag(), timeoutFlag()},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := readClient(c)
			if err != nil {
				return err
			}
			s, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			return printRawJSON(c.App.Writer, s.Raw)
		},
	}
}
