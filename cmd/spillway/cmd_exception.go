package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
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
					&cli.StringFlag{Name: "max-file-size", Usage: "largest file persisted", Value: "256MiB"},
					&cli.StringFlag{Name: "max-bytes", Usage: "bytes persisted per session", Value: "1GiB"},
					&cli.Int64Flag{Name: "max-files", Usage: "files persisted per session", Value: exceptions.DefaultLimits.MaxFiles},
					&cli.StringFlag{Name: "review", Usage: "after: applied at once, reviewed later; before: held back until approved", Value: exceptions.ReviewAfter},
					&cli.BoolFlag{Name: "allow-exec", Usage: "keep execute bits"},
					&cli.BoolFlag{Name: "allow-symlinks", Usage: "persist symlinks as links (never their targets)"},
					&cli.BoolFlag{Name: "atomic", Usage: "persist all of a session's changes under the rule or, if any is refused, none (the rest go to the recovery area)"},
					&cli.BoolFlag{Name: "force", Usage: "add a risky rule anyway (marked as forced)"},
				},
				Action: func(c *cli.Context) error { return runExceptionAdd(c, t) },
			},
			{
				Name:      "ls",
				Usage:     "list active exceptions (--all adds revoked and expired)",
				ArgsUsage: "[SANDBOX]",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "all", Usage: "include revoked and expired"}, jsonFlag(t)},
				Action:    func(c *cli.Context) error { return runExceptionLs(c, t) },
			},
			{
				Name:      "show",
				Usage:     "show a rule and what it let through",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action:    func(c *cli.Context) error { return runExceptionShow(c, t) },
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
					return withEnv(c, t, func(e *persist.Env) error {
						id := c.Args().Get(0)
						n, err := e.RevokeException(c.Context, id, c.String("reason"), c.Bool("purge"))
						if err != nil {
							return err
						}
						fmt.Fprintf(t.out, "revoked %s\n", id)
						if c.Bool("purge") {
							fmt.Fprintf(t.out, "purged %d records from the persisted state (applies at the next open)\n", n)
						}
						return nil
					})
				},
			},
			{
				Name:      "lint",
				Usage:     "flag risky rules",
				ArgsUsage: "[SANDBOX]",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action:    func(c *cli.Context) error { return runExceptionLint(c, t) },
			},
		},
	}
}

func runExceptionAdd(c *cli.Context, t *term) error {
	if c.NArg() < 2 {
		return usageError("usage: spillway exception add SANDBOX PATTERN... --reason TEXT")
	}
	x := &exceptions.Exception{
		Sandbox:       c.Args().Get(0),
		Patterns:      c.Args().Slice()[1:],
		Reason:        c.String("reason"),
		Review:        c.String("review"),
		AllowExec:     c.Bool("allow-exec"),
		AllowSymlinks: c.Bool("allow-symlinks"),
		Atomic:        c.Bool("atomic"),
		Forced:        c.Bool("force"),
	}
	var err error
	if s := c.String("expires"); s != "" {
		if x.Expires, err = units.ParseExpiry(s, time.Now()); err != nil {
			return usageError("--expires: %v", err)
		}
		x.Expires = x.Expires.UTC()
	}
	if x.Limits.MaxFileSize, err = units.ParseSize(c.String("max-file-size")); err != nil {
		return usageError("--max-file-size: %v", err)
	}
	if x.Limits.MaxBytes, err = units.ParseSize(c.String("max-bytes")); err != nil {
		return usageError("--max-bytes: %v", err)
	}
	if x.Limits.MaxFileSize <= 0 || x.Limits.MaxBytes <= 0 {
		return usageError("--max-file-size and --max-bytes must be more than 0")
	}
	if x.Limits.MaxFiles = c.Int64("max-files"); x.Limits.MaxFiles <= 0 {
		return usageError("--max-files must be at least 1")
	}
	return withEnv(c, t, func(e *persist.Env) error {
		findings, err := e.AddException(x)
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

type exceptionJSON struct {
	ID        string            `json:"id"`
	Sandbox   string            `json:"sandbox"`
	Patterns  []string          `json:"patterns"`
	Reason    string            `json:"reason"`
	Created   time.Time         `json:"created"`
	Expires   *time.Time        `json:"expires"`
	Review    string            `json:"review"`
	State     string            `json:"state"`
	Forced    bool              `json:"forced"`
	Limits    exceptions.Limits `json:"limits"`
	AllowExec bool              `json:"allow_exec"`
	AllowSym  bool              `json:"allow_symlinks"`
	Atomic    bool              `json:"atomic"`
	Revoked   *time.Time        `json:"revoked,omitempty"`
	RevokedBy string            `json:"revoked_by,omitempty"`
	RevokeWhy string            `json:"revoke_reason,omitempty"`
}

func toExceptionJSON(x *exceptions.Exception, now time.Time) exceptionJSON {
	j := exceptionJSON{ID: x.ID, Sandbox: x.Sandbox, Patterns: x.Patterns, Reason: x.Reason, Created: x.Created,
		Review: x.Review, State: x.State(now), Forced: x.Forced, Limits: x.EffectiveLimits(),
		AllowExec: x.AllowExec, AllowSym: x.AllowSymlinks, Atomic: x.Atomic, RevokedBy: x.RevokedBy, RevokeWhy: x.RevokeReason}
	if !x.Expires.IsZero() {
		e := x.Expires
		j.Expires = &e
	}
	if !x.Revoked.IsZero() {
		r := x.Revoked
		j.Revoked = &r
	}
	return j
}

func runExceptionLs(c *cli.Context, t *term) error {
	if c.NArg() > 1 {
		return usageError("usage: spillway exception ls [SANDBOX] [--all]")
	}
	return withEnv(c, t, func(e *persist.Env) error {
		xs, err := e.Exceptions(c.Args().First(), c.Bool("all"))
		if err != nil {
			return err
		}
		now := e.Now()
		if t.json {
			out := []exceptionJSON{}
			for _, x := range xs {
				out = append(out, toExceptionJSON(x, now))
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

func runExceptionShow(c *cli.Context, t *term) error {
	if err := needArgs(c, 1, "ID"); err != nil {
		return err
	}
	return withEnv(c, t, func(e *persist.Env) error {
		rep, err := e.ShowException(c.Context, c.Args().Get(0))
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
				exceptionJSON
				Sessions     []uint64 `json:"sessions"`
				Files        int64    `json:"files"`
				Bytes        int64    `json:"bytes"`
				Refused      int64    `json:"refused"`
				IdleSessions int      `json:"idle_sessions"`
			}{toExceptionJSON(x, now), sessions, rep.Files, rep.Bytes, rep.Refused, rep.IdleSessions})
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
		fmt.Fprintf(w, "review:\t%s\n", x.Review)
		l := x.EffectiveLimits()
		fmt.Fprintf(w, "limits:\t%s per file, %s and %d files per session\n", units.FormatSize(l.MaxFileSize), units.FormatSize(l.MaxBytes), l.MaxFiles)
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
		fmt.Fprintf(w, "let through:\t%d files, %s in %d sessions; %d refused\n", rep.Files, units.FormatSize(rep.Bytes), len(rep.Sessions), rep.Refused)
		if rep.IdleSessions > 0 {
			fmt.Fprintf(w, "idle:\tmatched nothing for %d sessions\n", rep.IdleSessions)
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

func runExceptionLint(c *cli.Context, t *term) error {
	if c.NArg() > 1 {
		return usageError("usage: spillway exception lint [SANDBOX]")
	}
	return withEnv(c, t, func(e *persist.Env) error {
		xs, err := e.Exceptions(c.Args().First(), false)
		if err != nil {
			return err
		}
		out := []findingJSON{}
		for _, x := range xs {
			for _, f := range append(exceptions.Lint(x), exceptions.Suggest(x)...) {
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
