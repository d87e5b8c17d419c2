package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/node"
)

// defaultAPIListen is where `ordo node` serves its HTTP API unless told otherwise.
const defaultAPIListen = "127.0.0.1:7700"

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "run a validator (the daemon); logs go to stderr, SIGTERM or SIGINT stops it cleanly",
		Description: "DIR holds node.key and genesis.json; the node keeps its data in DIR/data.\n" +
			"The node key must be one of the genesis validators.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "home", Usage: "the node's home directory"},
			&cli.StringFlag{Name: "api", Usage: "HTTP API listen address", Value: defaultAPIListen},
			&cli.StringFlag{Name: "p2p", Usage: "libp2p listen multiaddr (default: this validator's p2p_addrs in genesis)"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a Go CPU profile of the whole run to this file (written when the node stops)"},
		}, byzantineFlags()...),
		Action: runNode,
	}
}

func runNode(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	home, err := required(c, "home")
	if err != nil {
		return err
	}
	level, err := parseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	if path := strings.TrimSpace(c.String("cpuprofile")); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop(logger)
	}
	err = node.Run(c.Context, node.RunConfig{
		Home:      home,
		APIListen: c.String("api"),
		P2PListen: c.String("p2p"),
		Logger:    logger,
		Byzantine: c.String("byzantine"),
	})
	if err != nil && !isInterrupted(c.Context, err) {
		return err
	}
	return nil
}

// startCPUProfile profiles the process into path until the returned stop.
func startCPUProfile(path string) (stop func(*slog.Logger), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("writing the CPU profile", "path", path, "err", err)
		}
	}, nil
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
