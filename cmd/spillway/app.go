package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// globalOptions are the options every command shares.
type globalOptions struct {
	Root        string
	Snapshotter string
	LockTimeout time.Duration
	HostID      string // this host in a shared ledger ("": recorded, else the hostname)
	Store       string // --store: the ledger's URL
	Blobs       string // --blobs: the blob store's URL
	// What is the command line, for the message of a command that waits
	// for the lock.
	What string
}

func defaultRoot() string {
	if os.Geteuid() == 0 {
		return "/var/lib/spillway"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "spillway")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "spillway")
}

func newApp(t *term) *cli.App {
	app := &cli.App{
		Name:      "spillway",
		Usage:     "disposable sandboxes that forget everything but what you explicitly let through",
		Reader:    t.in,
		Writer:    t.out,
		ErrWriter: t.err,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "state directory", EnvVars: []string{"SPILLWAY_ROOT"}, Value: defaultRoot(), DefaultText: "/var/lib/spillway as root, else $XDG_DATA_HOME/spillway"},
			&cli.StringFlag{Name: "snapshotter", Usage: "overlayfs or native (default: overlayfs where an overlay mount works); recorded at first use", EnvVars: []string{"SPILLWAY_SNAPSHOTTER"}},
			&cli.StringFlag{Name: "store", Usage: "the ledger: postgres://… (a PostgreSQL database; snapshots, blobs and mounts stay in --root) or badger:///PATH", EnvVars: []string{"SPILLWAY_STORE"}, DefaultText: "the badger store in --root"},
			&cli.StringFlag{Name: "blobs", Usage: "the blob store: dir:///PATH", EnvVars: []string{"SPILLWAY_BLOBS"}, DefaultText: "blobs/ in --root"},
			&cli.DurationFlag{Name: "lock-timeout", Usage: "how long to wait for another spillway command on the same root", Value: persist.DefaultLockTimeout},
			&cli.StringFlag{Name: "host-id", Usage: "this host's `ID` in a ledger shared by several hosts (default: the hostname); recorded in the root at first use", EnvVars: []string{"SPILLWAY_HOST_ID"}},
		},
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError:         flagError,
		Commands: []*cli.Command{
			imageCommand(t),
			createCommand(t),
			openCommand(t),
			pathCommand(t),
			runCommand(t),
			shellCommand(t),
			vmCommand(t),
			diffCommand(t),
			closeCommand(t),
			lsCommand(t),
			rmCommand(t),
			exceptionCommand(t),
			persistedCommand(t),
			reviewCommand(t),
			logCommand(t),
			auditCommand(t),
			checkCommand(t),
			gcCommand(t),
			serveCommand(t),
			recoverCommand(t),
			configCommand(t),
			fleetCommand(t),
			completionCommand(t),
		},
	}
	setUsageErrors(app.Commands, "spillway")
	setCompletion(t, app.Commands, "")
	return app
}

// setUsageErrors makes flag errors of every subcommand exit 2, and gives
// every command with subcommands the usage line "spillway NOUN COMMAND
// [options]" (urfave/cli's own says "[command options]" and lists a help
// command that the app hides).
func setUsageErrors(cmds []*cli.Command, parent string) {
	for _, c := range cmds {
		c.OnUsageError = flagError
		// No "help" or "h" subcommand: `spillway create h` printed help,
		// exit 0, and created nothing (--help stays).
		c.HideHelpCommand = true
		if len(c.Subcommands) > 0 && c.UsageText == "" {
			c.UsageText = parent + " " + c.Name + " COMMAND [options]"
		}
		setUsageErrors(c.Subcommands, parent+" "+c.Name)
		if len(c.Subcommands) == 0 && c.ArgsUsage == "" && c.Action != nil {
			refuseArgs(c)
		}
	}
}

// refuseArgs makes a command that takes no arguments refuse any, as a
// usage error: `spillway ls docs` listed every sandbox, as if it filtered.
func refuseArgs(c *cli.Command) {
	action := c.Action
	c.Action = func(ctx *cli.Context) error {
		if ctx.NArg() > 0 {
			return usageError("%s takes no arguments, not %q (see spillway %s --help)", commandName(ctx), ctx.Args().First(), commandName(ctx))
		}
		return action(ctx)
	}
}

// goFlagName is a flag as Go's flag package names it in its errors, with
// one dash ("flag -ttl", "not defined: -json").
var goFlagName = regexp.MustCompile(`(flag |: )-([A-Za-z0-9][A-Za-z0-9-]+)`)

// flagError is a flag parsing error as a usage error, its flags named the
// way they are given: --ttl, not -ttl.
func flagError(c *cli.Context, err error, _ bool) error {
	msg := goFlagName.ReplaceAllString(err.Error(), "${1}--${2}")
	if m := badFlagValue.FindStringSubmatch(msg); m != nil && c != nil {
		msg += flagValueHint(c, m[1])
	}
	return usageError("%s", msg)
}

// badFlagValue is urfave/cli's message for a value its flag cannot parse.
var badFlagValue = regexp.MustCompile(`for flag --([A-Za-z0-9-]+): parse error$`)

// flagValueHint says what kind of value flag name takes, from the flags
// of c's command and its parents.
func flagValueHint(c *cli.Context, name string) string {
	for _, l := range c.Lineage() {
		var flags []cli.Flag
		if l.Command != nil {
			flags = l.Command.Flags
		}
		if l.App != nil && l.Command == nil {
			flags = l.App.Flags
		}
		for _, f := range flags {
			if !slices.Contains(f.Names(), name) {
				continue
			}
			switch f.(type) {
			case *cli.DurationFlag:
				return " (a duration, e.g. 30s, 5m or 1h)"
			case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
				return " (a whole number)"
			}
			return ""
		}
	}
	return ""
}

// globals reads the global options of the command c runs.
func globals(c *cli.Context) globalOptions {
	what := strings.Join(c.Lineage()[0].Args().Slice(), " ")
	return globalOptions{
		Root:        c.String("root"),
		Snapshotter: c.String("snapshotter"),
		LockTimeout: c.Duration("lock-timeout"),
		HostID:      c.String("host-id"),
		Store:       c.String("store"),
		Blobs:       c.String("blobs"),
		What:        strings.TrimSpace(commandName(c) + " " + what),
	}
}

// envOptions are the options that open the state directory for a command.
func envOptions(g globalOptions, t *term) persist.Options {
	return persist.Options{
		Root: g.Root, Snapshotter: g.Snapshotter, LockTimeout: g.LockTimeout, What: g.What,
		Store: g.Store, Blobs: g.Blobs, HostID: g.HostID,
		Wait:     t.waiting,
		Warn:     func(msg string) { t.warnf("%s", msg) },
		Progress: t.progress(),
	}
}

// waiting tells that the command waits for holder, a lock's holder as
// internal/lock names it.
func (t *term) waiting(holder string) {
	if holder == "" || holder == "unknown holder" {
		t.warnf("waiting for another spillway command")
		return
	}
	t.warnf("waiting for another spillway command (%s)", holder)
}

// withEnv runs fn with an opened Env and closes it after.
func withEnv(ctx context.Context, g globalOptions, t *term, fn func(e *persist.Env) error) error {
	return withEnvOptions(ctx, envOptions(g, t), fn)
}

// withLedger is withEnv for a command that only reads records, their
// content or audit entries (review ls, review show, log): the Env opens
// the ledger and the blobs alone (persist.Options.LedgerOnly).
func withLedger(ctx context.Context, g globalOptions, t *term, fn func(e *persist.Env) error) error {
	o := envOptions(g, t)
	o.LedgerOnly = true
	return withEnvOptions(ctx, o, fn)
}

// withEnvOptions locks and opens the state directory with o for one
// command, runs fn with it and closes it after.
func withEnvOptions(ctx context.Context, o persist.Options, fn func(e *persist.Env) error) (err error) {
	e, err := persist.OpenEnv(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := e.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(e)
}

// commandName is c's command with its parents ("image rm", not "rm":
// urfave/cli's FullName leaves them out of a subcommand's context).
func commandName(c *cli.Context) string {
	var names []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" && l.Command.Name != c.App.Name {
			names = append(names, l.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(slices.Compact(names), " ")
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, n int, usage string) error {
	if c.NArg() != n {
		return usageError("usage: spillway %s %s", commandName(c), usage)
	}
	return nil
}

func jsonFlag(t *term) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts", Destination: &t.json}
}
