package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// commands lists every subcommand, in the order help shows them.
func commands() []*cli.Command {
	return []*cli.Command{
		keygenCommand(),
		genesisCommand(),
		nodeCommand(),
		statusCommand(),
		appendCommand(),
		accountCommand(),
		transferCommand(),
		readCommand(),
		queryCommand(),
		projectionsCommand(),
		verifyCommand(),
		benchCommand(),
	}
}

// newApp builds the CLI writing its output to stdout and its diagnostics to
// stderr. Errors are returned, never printed or turned into os.Exit: run does
// that, so tests can drive the app in-process.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:        "ordo",
		Usage:       "a Byzantine-fault-tolerant replicated event log and ledger",
		Writer:      stdout,
		ErrWriter:   stderr,
		HideVersion: true,
		// urfave/cli's own help flag is one package-level value it writes
		// while parsing; each app gets its own so that apps can run
		// concurrently (in tests).
		HideHelp:        true,
		HideHelpCommand: true,
		Flags:           []cli.Flag{helpFlag()},
		Commands:        commands(),
		OnUsageError:    usageError,
		// Errors leave through run, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		Action:         rootAction,
	}
	for _, c := range app.Commands {
		setUsageErrors(c)
		c.HideHelp = true
		c.Flags = append(c.Flags, helpFlag())
	}
	return app
}

func helpFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help", DisableDefaultText: true}
}
