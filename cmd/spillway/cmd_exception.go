package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/view"
)

func exceptionCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "exception",
		Usage: "add, list, show, revoke and lint persistence exceptions",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a rule whose matching changes survive close; prints its id",
				ArgsUsage: "SANDBOX PATTERN... --reason TEXT",
				Description: "PATTERN is an absolute path inside the sandbox with *, ?, [...], {a,b} and ** (any depth),\n" +
					"e.g. '/home/user/Documents/**'. Limits apply per exception per session.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why this exception exists (required)"},
					&cli.StringFlag{Name: "expires", Usage: "a duration (90m, 36h, 30d) or an RFC 3339 time"},
					&cli.StringFlag{Name: "max-file-size", Usage: "largest file persisted", Value: units.FormatSize(persist.DefaultLimits().MaxFileSize)},
					&cli.StringFlag{Name: "max-bytes", Usage: "bytes persisted per session", Value: units.FormatSize(persist.DefaultLimits().MaxBytes)},
					&cli.Int64Flag{Name: "max-files", Usage: "files persisted per session", Value: persist.DefaultLimits().MaxFiles},
					&cli.StringFlag{Name: "review", Usage: "after: applied at once, reviewed later; before: held back until approved", Value: string(change.ReviewAfter)},
					&cli.BoolFlag{Name: "allow-exec", Usage: "keep execute bits"},
					&cli.BoolFlag{Name: "allow-symlinks", Usage: "persist symlinks as links (never their targets)"},
					&cli.BoolFlag{Name: "atomic", Usage: "persist all of a session's changes under the rule or, if any is refused, none (the rest go to the recovery area)"},
					&cli.BoolFlag{Name: "force", Usage: "add a risky rule anyway (marked as forced)"},
				},
				Action: func(c *cli.Context) error {
					o, err := exceptionAddFlags(c)
					if err != nil {
						return err
					}
					return runExceptionAdd(c.Context, o, globals(c), t)
				},
			},
			{
				Name:      "ls",
				Usage:     "list active exceptions (--all adds revoked and expired)",
				ArgsUsage: "[SANDBOX]",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "all", Usage: "include revoked and expired"}, jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return usageError("usage: spillway exception ls [SANDBOX] [--all]")
					}
					return runExceptionLs(c.Context, exceptionLsOptions{Sandbox: c.Args().First(), All: c.Bool("all")}, globals(c), t)
				},
			},
			{
				Name:      "show",
				Usage:     "show a rule and what it let through",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "ID"); err != nil {
						return err
					}
					return runExceptionShow(c.Context, exceptionShowOptions{ID: c.Args().Get(0)}, globals(c), t)
				},
			},
			{
				Name:      "revoke",
				Usage:     "stop a rule from matching (--purge also removes what it let through)",
				ArgsUsage: "ID --reason TEXT",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why it is revoked (required)"},
					&cli.BoolFlag{Name: "purge", Usage: "remove every path it let through from the persisted state"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "ID --reason TEXT [--purge]"); err != nil {
						return err
					}
					o := exceptionRevokeOptions{ID: c.Args().Get(0), Reason: c.String("reason"), Purge: c.Bool("purge")}
					return runExceptionRevoke(c.Context, o, globals(c), t)
				},
			},
			{
				Name:      "lint",
				Usage:     "flag risky rules",
				ArgsUsage: "[SANDBOX]",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return usageError("usage: spillway exception lint [SANDBOX]")
					}
					return runExceptionLint(c.Context, exceptionLintOptions{Sandbox: c.Args().First()}, globals(c), t)
				},
			},
		},
	}
}

// exceptionAddOptions are the options of exception add.
type exceptionAddOptions struct {
	Sandbox       string
	Patterns      []string
	Reason        string
	Review        change.ReviewMode
	Expires       time.Time // zero: never
	Limits        persist.Limits
	AllowExec     bool
	AllowSymlinks bool
	Force         bool
	Atomic        bool // all of a session's changes under the rule or none
}

// exceptionAddFlags parses the arguments and flags of exception add.
func exceptionAddFlags(c *cli.Context) (exceptionAddOptions, error) {
	if c.NArg() < 2 {
		return exceptionAddOptions{}, usageError("usage: spillway exception add SANDBOX PATTERN... --reason TEXT")
	}
	o := exceptionAddOptions{
		Sandbox:       c.Args().Get(0),
		Patterns:      c.Args().Slice()[1:],
		Reason:        c.String("reason"),
		Review:        change.ReviewMode(c.String("review")),
		AllowExec:     c.Bool("allow-exec"),
		AllowSymlinks: c.Bool("allow-symlinks"),
		Force:         c.Bool("force"),
		Atomic:        c.Bool("atomic"),
	}
	var err error
	if s := c.String("expires"); s != "" {
		if o.Expires, err = units.ParseExpiry(s, time.Now()); err != nil {
			return o, usageError("--expires: %v", err)
		}
		o.Expires = o.Expires.UTC()
	}
	if o.Limits.MaxFileSize, err = units.ParseSize(c.String("max-file-size")); err != nil {
		return o, usageError("--max-file-size: %v", err)
	}
	if o.Limits.MaxBytes, err = units.ParseSize(c.String("max-bytes")); err != nil {
		return o, usageError("--max-bytes: %v", err)
	}
	if o.Limits.MaxFileSize <= 0 || o.Limits.MaxBytes <= 0 {
		return o, usageError("--max-file-size and --max-bytes must be more than 0")
	}
	if o.Limits.MaxFiles = c.Int64("max-files"); o.Limits.MaxFiles <= 0 {
		return o, usageError("--max-files must be at least 1")
	}
	return o, nil
}

func runExceptionAdd(ctx context.Context, o exceptionAddOptions, g globalOptions, t *term) error {
	x := &persist.Exception{
		Sandbox:       o.Sandbox,
		Patterns:      o.Patterns,
		Reason:        o.Reason,
		Review:        o.Review,
		Expires:       o.Expires,
		Limits:        o.Limits,
		AllowExec:     o.AllowExec,
		AllowSymlinks: o.AllowSymlinks,
		Forced:        o.Force,
		Atomic:        o.Atomic,
	}
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		findings, err := e.AddException(ctx, x)
		if err != nil {
			return err
		}
		for _, f := range findings {
			t.warnf("forced past lint: %s: %s", f.Code, f.Message)
		}
		fmt.Fprintln(t.out, x.ID)
		return nil
	})
}

// exceptionRevokeOptions are the options of exception revoke.
type exceptionRevokeOptions struct {
	ID, Reason string
	Purge      bool
}

func runExceptionRevoke(ctx context.Context, o exceptionRevokeOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		n, err := e.RevokeException(ctx, o.ID, o.Reason, o.Purge)
		if err != nil {
			return err
		}
		fmt.Fprintf(t.out, "revoked %s\n", o.ID)
		if o.Purge {
			fmt.Fprintf(t.out, "purged %s from the persisted state (applies at the next open)\n", count(n, "record"))
		}
		return nil
	})
}

// exceptionLsOptions are the options of exception ls.
type exceptionLsOptions struct {
	Sandbox string // "" for every sandbox
	All     bool   // revoked and expired too
}

func runExceptionLs(ctx context.Context, o exceptionLsOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		xs, err := e.Exceptions(o.Sandbox, o.All)
		if err != nil {
			return err
		}
		now := e.Now()
		if t.json {
			out := []view.Exception{}
			for _, x := range xs {
				out = append(out, view.NewException(x, now))
			}
			return t.printJSON(out)
		}
		w := t.table()
		fmt.Fprintln(w, "ID\tSANDBOX\tSTATE\tREVIEW\tPATTERNS\tREASON")
		for _, x := range xs {
			st := x.State(now)
			if x.Forced {
				st += ",forced"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Sandbox, st, x.Review, joinNames(x.Patterns), name(x.Reason))
		}
		return w.Flush()
	})
}

// exceptionShowOptions are the options of exception show.
type exceptionShowOptions struct{ ID string }

func runExceptionShow(ctx context.Context, o exceptionShowOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		rep, err := e.ShowException(ctx, o.ID)
		if err != nil {
			return err
		}
		x := rep.Exception
		now := e.Now()
		if t.json {
			sessions := rep.Sessions
			if sessions == nil {
				sessions = []uint64{}
			}
			return t.printJSON(struct {
				view.Exception
				Sessions     []uint64 `json:"sessions"`
				Files        int64    `json:"files"`
				Bytes        int64    `json:"bytes"`
				Refused      int64    `json:"refused"`
				IdleSessions int      `json:"idle_sessions"`
				// PurgeUnfinished: a revoke --purge stopped between batches.
				PurgeUnfinished bool `json:"purge_unfinished,omitempty"`
			}{view.NewException(x, now), sessions, rep.Files, rep.Bytes, rep.Refused, rep.IdleSessions, rep.PurgeUnfinished})
		}
		w := t.table()
		fmt.Fprintf(w, "id:\t%s\n", x.ID)
		fmt.Fprintf(w, "sandbox:\t%s\n", x.Sandbox)
		fmt.Fprintf(w, "patterns:\t%s\n", joinNames(x.Patterns))
		fmt.Fprintf(w, "reason:\t%s\n", name(x.Reason))
		fmt.Fprintf(w, "state:\t%s\n", x.State(now))
		fmt.Fprintf(w, "created:\t%s by %s\n", x.Created.Format(time.RFC3339), name(x.CreatedBy))
		if !x.Expires.IsZero() {
			fmt.Fprintf(w, "expires:\t%s\n", x.Expires.Format(time.RFC3339))
		}
		if !x.Revoked.IsZero() {
			fmt.Fprintf(w, "revoked:\t%s by %s: %s\n", x.Revoked.Format(time.RFC3339), name(x.RevokedBy), name(x.RevokeReason))
		}
		if rep.PurgeUnfinished {
			fmt.Fprintf(w, "purge:\tinterrupted: some of its records are still in the persisted state (run: spillway exception revoke %s --purge --reason …)\n", x.ID)
		}
		fmt.Fprintf(w, "review:\t%s\n", x.Review)
		l := x.EffectiveLimits()
		fmt.Fprintf(w, "limits:\t%s per file, %s and %s per session\n", units.FormatSize(l.MaxFileSize), units.FormatSize(l.MaxBytes), count(l.MaxFiles, "file"))
		var allow []string
		if x.AllowExec {
			allow = append(allow, "exec")
		}
		if x.AllowSymlinks {
			allow = append(allow, "symlinks")
		}
		if x.Forced {
			allow = append(allow, "forced past lint")
		}
		if len(allow) > 0 {
			fmt.Fprintf(w, "allows:\t%s\n", strings.Join(allow, ", "))
		}
		fmt.Fprintf(w, "let through:\t%s, %s in %s; %d refused\n", count(rep.Files, "file"), units.FormatSize(rep.Bytes), count(len(rep.Sessions), "session"), rep.Refused)
		if rep.IdleSessions > 0 {
			fmt.Fprintf(w, "idle:\tmatched nothing for %s\n", count(rep.IdleSessions, "session"))
		}
		return w.Flush()
	})
}

type findingJSON struct {
	Exception string `json:"exception"`
	Sandbox   string `json:"sandbox"`
	Pattern   string `json:"pattern"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// exceptionLintOptions are the options of exception lint.
type exceptionLintOptions struct{ Sandbox string }

func runExceptionLint(ctx context.Context, o exceptionLintOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		xs, err := e.Exceptions(o.Sandbox, false)
		if err != nil {
			return err
		}
		out := []findingJSON{}
		for _, x := range xs {
			for _, f := range append(persist.Lint(x), persist.Suggest(x)...) {
				out = append(out, findingJSON{x.ID, x.Sandbox, f.Pattern, f.Code, f.Message})
			}
		}
		if t.json {
			return t.printJSON(out)
		}
		if len(out) == 0 {
			fmt.Fprintln(t.out, "no risky exceptions")
			return nil
		}
		w := t.table()
		fmt.Fprintln(w, "ID\tSANDBOX\tCODE\tPATTERN\tWHY")
		for _, f := range out {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", f.Exception, f.Sandbox, f.Code, name(f.Pattern), name(f.Message))
		}
		return w.Flush()
	})
}
