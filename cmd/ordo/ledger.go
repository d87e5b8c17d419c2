package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ordoledger/ordo/client"
	"github.com/ordoledger/ordo/crypto"
	"github.com/ordoledger/ordo/ledger"
)

// ledgerOutputHelp says what the ledger commands print.
const ledgerOutputHelp = "Prints {\"result\":\"ok\"|\"<code>\",\"position\":P,\"entry_seq\":S,\"replies\":K}: P is the position of the\n" +
	"event the operation produced (for exists, of the original's; 0 on failure). A result other than ok\n" +
	"or exists (an idempotent retry: the same id with the same fields) exits 1 with the code and the\n" +
	"ledger's message on stderr. Failed operations are recorded in the log too, as results."

func accountCommand() *cli.Command {
	return &cli.Command{
		Name:  "account",
		Usage: "manage ledger accounts",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "open a ledger account owned by --key",
			Description: "Opens account --id of currency --code, owned by the client key: only it may move money out.\n" +
				"Code and flags are fixed for life. " + ledgerOutputHelp,
			Flags: []cli.Flag{
				nodeFlag(), keyFlag(), genesisFlag(), timeoutFlag(),
				&cli.StringFlag{Name: "id", Usage: fmt.Sprintf("account id (1-%d bytes of [A-Za-z0-9._:@-])", ledger.AccountIDBytesMax)},
				&cli.StringFlag{Name: "code", Usage: "currency (ledger) code, a positive integer; transfers move money between accounts of one code"},
				&cli.StringFlag{Name: "flags", Usage: "comma-separated balance rules: " + strings.Join(ledger.AccountFlags(^uint32(0)).Names(), ", ")},
			},
			Action: createAccount,
		}},
		Action: subcommandRequired,
	}
}

func transferCommand() *cli.Command {
	return &cli.Command{
		Name:  "transfer",
		Usage: "move an amount between two ledger accounts, or post or void a pending transfer",
		Description: "Debits --from and credits --to with --amount of currency --code, under transfer id --id. Only\n" +
			"the owner of --from may do so. With --pending the amount is only reserved until 'ordo transfer\n" +
			"post' or 'void' settles it, or until --timeout of log time passes. " + ledgerOutputHelp,
		Flags: []cli.Flag{
			nodeFlag(), keyFlag(), genesisFlag(), requestTimeoutFlag(),
			&cli.StringFlag{Name: "id", Usage: fmt.Sprintf("transfer id (1-%d bytes of [A-Za-z0-9._:@-])", ledger.TransferIDBytesMax)},
			&cli.StringFlag{Name: "from", Usage: "debit account id"},
			&cli.StringFlag{Name: "to", Usage: "credit account id"},
			&cli.StringFlag{Name: "amount", Usage: "amount, a positive integer"},
			&cli.StringFlag{Name: "code", Usage: "currency (ledger) code of both accounts"},
			&cli.BoolFlag{Name: "pending", Usage: "reserve the amount only, until posted, voided or timed out"},
			&cli.DurationFlag{Name: "timeout", Usage: "with --pending: the reservation expires after this much log time (default: never)"},
		},
		Action: createTransfer,
		Subcommands: []*cli.Command{
			settleCommand("post", "post a pending transfer: move --amount (default: all) of what it reserved, release the rest",
				&cli.StringFlag{Name: "amount", Usage: "amount to post, at most the amount reserved (default: all of it)"}),
			settleCommand("void", "void a pending transfer: release all it reserved"),
		},
	}
}

func settleCommand(name, usage string, extra ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:  name,
		Usage: usage,
		Description: "Settles the pending transfer --pending-id as operation --id (its own id, for idempotent\n" +
			"retries, from the transfer id space). Only the owner of the pending transfer's debit account may.\n" +
			ledgerOutputHelp,
		Flags: append([]cli.Flag{
			nodeFlag(), keyFlag(), genesisFlag(), requestTimeoutFlag(),
			&cli.StringFlag{Name: "id", Usage: "id of this " + name + " operation"},
			&cli.StringFlag{Name: "pending-id", Usage: "id of the pending transfer"},
		}, extra...),
		Action: settleTransfer,
	}
}

// requestTimeoutFlag bounds one attempt against one node for the transfer
// commands, whose --timeout is the pending transfer's.
func requestTimeoutFlag() *cli.DurationFlag {
	return &cli.DurationFlag{Name: "request-timeout", Usage: "bound on one attempt against one node", Value: client.DefaultTimeout}
}

// subcommandRequired is the action of a command that only groups others.
func subcommandRequired(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("unknown command %q (see 'ordo %s --help')", c.Args().First(), c.Command.Name)
	}
	return cli.ShowSubcommandHelp(c)
}

func createAccount(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	id, err := required(c, "id")
	if err != nil {
		return err
	}
	code, err := uintFlag(c, "code", true)
	if err != nil {
		return err
	}
	var names []string
	for _, s := range strings.Split(c.String("flags"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			names = append(names, s)
		}
	}
	flags, err := ledger.ParseAccountFlags(names)
	if err != nil {
		return fmt.Errorf("--flags: %w", err)
	}
	keyPath, err := required(c, "key")
	if err != nil {
		return err
	}
	key, err := crypto.ReadKeyFile(keyPath)
	if err != nil {
		return err
	}
	cl, err := writeClient(c)
	if err != nil {
		return err
	}
	return submitLedger(c, cl, ledger.Command{CreateAccount: &ledger.CreateAccountCommand{
		ID: id, Code: code, OwnerKey: key.Public(), Flags: flags,
	}})
}

func createTransfer(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	t := &ledger.TransferCommand{Pending: c.Bool("pending")}
	var err error
	for _, f := range []struct {
		name string
		to   *string
	}{{"id", &t.ID}, {"from", &t.DebitAccount}, {"to", &t.CreditAccount}} {
		if *f.to, err = required(c, f.name); err != nil {
			return err
		}
	}
	if t.Amount, err = uintFlag(c, "amount", true); err != nil {
		return err
	}
	if t.Code, err = uintFlag(c, "code", true); err != nil {
		return err
	}
	if c.IsSet("timeout") {
		if !t.Pending {
			return errors.New("--timeout is for --pending transfers only")
		}
		d := c.Duration("timeout")
		if d <= 0 || d%time.Millisecond != 0 {
			return fmt.Errorf("--timeout %v: want a positive whole number of milliseconds", d)
		}
		t.TimeoutMs = uint64(d / time.Millisecond)
	}
	cl, err := writeClient(c)
	if err != nil {
		return err
	}
	return submitLedger(c, cl, ledger.Command{Transfer: t})
}

func settleTransfer(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	id, err := required(c, "id")
	if err != nil {
		return err
	}
	pendingID, err := required(c, "pending-id")
	if err != nil {
		return err
	}
	var cmd ledger.Command
	if c.Command.Name == "post" {
		amount, err := uintFlag(c, "amount", false)
		if err != nil {
			return err
		}
		cmd.PostPending = &ledger.PostPendingCommand{ID: id, PendingID: pendingID, Amount: amount}
	} else {
		cmd.VoidPending = &ledger.VoidPendingCommand{ID: id, PendingID: pendingID}
	}
	cl, err := writeClient(c)
	if err != nil {
		return err
	}
	return submitLedger(c, cl, cmd)
}

// uintFlag parses an unsigned integer flag; an absent optional one is 0.
func uintFlag(c *cli.Context, name string, mandatory bool) (uint64, error) {
	s := strings.TrimSpace(c.String(name))
	if s == "" && !mandatory {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("--%s is required (see 'ordo %s --help')", name, c.Command.Name)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("--%s %s: want an integer from 0 to %d", name, quoteShort(s), uint64(math.MaxUint64))
	}
	return v, nil
}

// submitLedger submits one ledger operation and prints its outcome; a
// result other than ok or exists is the command's error.
func submitLedger(c *cli.Context, cl *client.Client, cmd ledger.Command) error {
	reply, err := cl.Submit(c.Context, cmd)
	if err != nil {
		return err
	}
	r := reply.Result
	var position uint64
	if len(r.Positions) > 0 {
		position = r.Positions[0]
	}
	if err := printJSON(c.App.Writer, struct {
		Result   string `json:"result"`
		Position uint64 `json:"position"`
		EntrySeq uint64 `json:"entry_seq"`
		Replies  int    `json:"replies"`
		Node     string `json:"node"`
	}{r.Code, position, reply.EntrySeq, reply.Replies, reply.Node}); err != nil {
		return err
	}
	if r.Code == ledger.CodeOK || r.Code == ledger.CodeExists {
		return nil
	}
	if r.Message == "" {
		return errors.New(r.Code)
	}
	return fmt.Errorf("%s: %s", r.Code, r.Message)
}
