package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/view"
)

// recoverOptions are the options of the recover subcommands.
type recoverOptions struct {
	Sandbox string
	Paths   []string // ls: at most one pattern
	Dest    string   // export
	Session uint64
	To      string
	Review  change.ReviewMode
	Force   bool
	Reason  string
}

func sessionFlag() *cli.Uint64Flag {
	return &cli.Uint64Flag{Name: "session", Usage: "only session `N`", DefaultText: "the newest that holds the path"}
}

func recoverCommand(t *term) *cli.Command {
	opts := func(c *cli.Context) recoverOptions {
		return recoverOptions{Sandbox: c.Args().First(), Paths: c.Args().Tail(), Session: c.Uint64("session"),
			To: c.String("to"), Review: change.ReviewMode(c.String("review")), Force: c.Bool("force"), Reason: c.String("reason")}
	}
	return &cli.Command{
		Name:  "recover",
		Usage: "what close discarded or refused, kept for a while in the recovery area",
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list what was discarded or refused, per session",
				ArgsUsage: "SANDBOX [PATTERN]",
				Flags:     []cli.Flag{&cli.Uint64Flag{Name: "session", Usage: "only session `N`", DefaultText: "every session"}, jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() < 1 || c.NArg() > 2 {
						return usageError("usage: spillway recover ls SANDBOX [--session N] [PATTERN] [--json]")
					}
					return runRecoverLs(c.Context, opts(c), globals(c), t)
				},
			},
			{
				Name:      "show",
				Usage:     "show a change kept in the recovery area: for a text file, a diff against the persisted version",
				ArgsUsage: "SANDBOX PATH",
				Flags:     []cli.Flag{sessionFlag(), jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return usageError("usage: spillway recover show SANDBOX PATH [--session N]")
					}
					return runRecoverShow(c.Context, opts(c), globals(c), t)
				},
			},
			{
				Name:      "restore",
				Usage:     "put paths back into a closed sandbox's persisted state (records of exception recover)",
				ArgsUsage: "SANDBOX PATH… --reason TEXT",
				Flags: []cli.Flag{
					sessionFlag(),
					&cli.StringFlag{Name: "to", Usage: "put the (one) path here instead"},
					&cli.StringFlag{Name: "review", Value: "after", Usage: "after (applied at once, reviewed later) or before (held until approved)"},
					&cli.BoolFlag{Name: "force", Usage: "restore to a target that lint finds risky"},
					&cli.StringFlag{Name: "reason", Usage: "why the content comes back (required)"},
					jsonFlag(t),
				},
				Action: func(c *cli.Context) error {
					if c.NArg() < 2 {
						return usageError("usage: spillway recover restore SANDBOX PATH… [--session N] [--to PATH] [--review after|before] [--force] --reason TEXT")
					}
					return runRecoverRestore(c.Context, opts(c), globals(c), t)
				},
			},
			{
				Name:      "export",
				Usage:     "copy a file or directory from the recovery area out to the host (never through a symlink at DEST), or as a tar stream to stdout (DEST -)",
				ArgsUsage: "SANDBOX PATH DEST",
				Flags: []cli.Flag{
					sessionFlag(),
					&cli.BoolFlag{Name: "force", Usage: "overwrite a DEST file, or write into a non-empty DEST directory"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 3 {
						return usageError("usage: spillway recover export SANDBOX PATH DEST [--session N] [--force]")
					}
					o := opts(c)
					o.Paths, o.Dest = o.Paths[:1], c.Args().Get(2)
					return runRecoverExport(c.Context, o, globals(c), t)
				},
			},
			{
				Name:      "purge",
				Usage:     "forget the recovery area of a sandbox now",
				ArgsUsage: "SANDBOX",
				Flags:     []cli.Flag{&cli.Uint64Flag{Name: "session", Usage: "only session `N`", DefaultText: "every session"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("usage: spillway recover purge SANDBOX [--session N]")
					}
					return runRecoverPurge(c.Context, opts(c), globals(c), t)
				},
			},
		},
	}
}

// expiresText is when an entry's content goes, for humans.
func expiresText(x persist.RecoverEntry) string {
	return x.Expires.UTC().Format("2006-01-02 15:04")
}

func runRecoverLs(ctx context.Context, o recoverOptions, g globalOptions, t *term) error {
	pattern := ""
	if len(o.Paths) > 0 {
		pattern = o.Paths[0]
	}
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		var arr *jsonArrayWriter
		w := t.table()
		if t.json {
			arr = t.jsonArray()
		} else {
			fmt.Fprintln(w, "SESSION\tKIND\tTYPE\tSIZE\tVERDICT\tEXPIRES\tPATH")
		}
		n := 0
		err := e.RecoverList(ctx, o.Sandbox, o.Session, pattern, func(x persist.RecoverEntry) error {
			n++
			if t.json {
				return arr.add(x)
			}
			verdict := string(x.Verdict)
			if x.Reason != "" {
				verdict += " " + x.Reason
			}
			_, err := fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Session, persist.KindLetter(x.Kind), x.Type,
				units.FormatSize(x.Size), verdict, expiresText(x), name(x.Path))
			return err
		})
		if err != nil {
			return err
		}
		if t.json {
			return arr.close()
		}
		if n == 0 {
			fmt.Fprintf(t.out, "%s holds nothing%s\n", e.RecoveryAreaName(o.Sandbox), matchText(pattern))
			return nil
		}
		return w.Flush()
	})
}

func matchText(pattern string) string {
	if pattern == "" {
		return ""
	}
	return " matching " + name(pattern)
}

// recoverShowJSON is `recover show --json`: the entry as in `recover ls
// --json`, the persisted version of the path and the diff, as `review
// show --json` has them.
type recoverShowJSON struct {
	persist.RecoverEntry
	Persisted *view.Record `json:"persisted"`
	Diff      string       `json:"diff"`
	Binary    bool         `json:"binary"`
	DiffNote  string       `json:"diff_note,omitempty"`
}

func runRecoverShow(ctx context.Context, o recoverOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		rep, err := e.RecoverShow(ctx, o.Sandbox, o.Paths[0], o.Session)
		if err != nil {
			return err
		}
		x := rep.Entry
		if t.json {
			j := recoverShowJSON{RecoverEntry: x, Diff: rep.Diff.Text, Binary: rep.Diff.Binary, DiffNote: rep.Diff.Note}
			if rep.InState != nil {
				r := view.NewRecord(rep.InState)
				j.Persisted = &r
			}
			return t.printJSON(j)
		}
		w := t.table()
		fmt.Fprintf(w, "sandbox\t%s (session %d)\n", o.Sandbox, x.Session)
		fmt.Fprintf(w, "path\t%s\n", name(x.Path))
		if x.Kind != "" {
			fmt.Fprintf(w, "change\t%s %s, %s\n", x.Kind, x.Type, units.FormatSize(x.Size))
			verdict := string(x.Verdict)
			if x.Reason != "" {
				verdict += " " + x.Reason
			}
			if x.Exception != "" {
				verdict += " (exception " + x.Exception + ")"
			}
			fmt.Fprintf(w, "verdict\t%s\n", verdict)
			fmt.Fprintf(w, "kept until\t%s\n", x.Expires.UTC().Format("2006-01-02 15:04 UTC"))
		}
		if p := rep.InState; p != nil {
			fmt.Fprintf(w, "persisted\tr%d (session %d, %s, %s, %s)\n", p.ID, p.Session, p.Kind, p.Status, units.FormatSize(p.Size))
		} else {
			fmt.Fprintf(w, "persisted\tnot in the persisted state\n")
		}
		w.Flush()
		d := rep.Diff
		if d.Note != "" {
			fmt.Fprintf(t.out, "\n%s\n", name(d.Note))
		}
		if d.Text == "" {
			return nil
		}
		printDiffText(t, d.Text)
		return nil
	})
}

func runRecoverRestore(ctx context.Context, o recoverOptions, g globalOptions, t *term) error {
	if strings.TrimSpace(o.Reason) == "" {
		return usageError("--reason is required: say why the content comes back")
	}
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		res, err := e.RecoverRestore(ctx, o.Sandbox, persist.RestoreOptions{Paths: o.Paths, Session: o.Session, To: o.To,
			Review: o.Review, Force: o.Force, Reason: o.Reason})
		if err != nil {
			return err
		}
		for _, s := range res.Skipped {
			t.warnf("not restored %s: %s", name(s.Path), s.Reason)
		}
		if t.json {
			return t.printJSON(res)
		}
		if len(res.Records) == 0 {
			fmt.Fprintf(t.out, "nothing restored into %s: every entry is in effect already (generation %d)\n", o.Sandbox, res.Generation)
			return nil
		}
		fmt.Fprintf(t.out, "restored %s into %s: generation %d, pending review (exception %s)\n",
			count(len(res.Records), "change"), o.Sandbox, res.Generation, persist.RecoverID)
		w := t.table()
		for _, r := range res.Records {
			fmt.Fprintf(w, "  r%s\t%s\t%s\t%s\n", strconv.FormatUint(r.Record, 10), r.Kind, units.FormatSize(r.Size), name(r.Path))
		}
		return w.Flush()
	})
}

func runRecoverExport(ctx context.Context, o recoverOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		var res *persist.ExportResult
		var err error
		if o.Dest == "-" {
			// stdout is the stream: nothing else goes there.
			res, err = e.RecoverExportTar(ctx, o.Sandbox, o.Paths[0], t.out, o.Session)
		} else {
			res, err = e.RecoverExport(ctx, o.Sandbox, o.Paths[0], o.Dest, o.Session, o.Force)
		}
		if res != nil {
			for _, s := range res.Skipped {
				t.warnf("not exported %s: %s", name(s.Path), s.Reason)
			}
		}
		if err != nil || o.Dest == "-" {
			return err
		}
		fmt.Fprintf(t.out, "exported %s to %s: %s, %s\n", name(o.Paths[0]), name(o.Dest), count(res.Files, "file"), units.FormatSize(res.Bytes))
		return nil
	})
}

func runRecoverPurge(ctx context.Context, o recoverOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		d, err := e.RecoverPurge(o.Sandbox, o.Session)
		if err != nil {
			return err
		}
		fmt.Fprintf(t.out, "forgot %s of %s, %s\n", count(d.Sessions, "session"), o.Sandbox, units.FormatSize(d.Bytes))
		return nil
	})
}

// printRecoverySummary ends a close summary: the rules that persisted part
// of what they matched, and how long the rest stays recoverable.
func printRecoverySummary(t *term, sum *persist.CloseSummary) {
	where := fmt.Sprintf("spillway recover ls %s --session %d", sum.Sandbox, sum.Session)
	for _, o := range sum.Overridden {
		verb := "persists"
		if sum.DryRun {
			verb = "would persist"
		}
		fmt.Fprintf(t.out, "r%d was %s while %s was open; this session changed %s again, and close %s it as a new record\n", o.Record, o.Status, sum.Sandbox, name(o.Path), verb)
	}
	for _, p := range sum.Partial {
		atomic := ""
		if p.Atomic {
			atomic = " (--atomic: all or nothing)"
		}
		switch {
		case sum.DryRun:
			fmt.Fprintf(t.out, "%d of %s under %s would persist%s; the rest would be refused\n", p.Persisted, count(p.Changes, "change"), p.Exception, atomic)
		case sum.Recovery != nil && !sum.Recovery.RefusedUntil.IsZero():
			fmt.Fprintf(t.out, "%d of %s under %s persisted%s; the rest are in the recovery area (%s)\n", p.Persisted, count(p.Changes, "change"), p.Exception, atomic, where)
		default:
			fmt.Fprintf(t.out, "%d of %s under %s persisted%s; the rest were refused and not kept\n", p.Persisted, count(p.Changes, "change"), p.Exception, atomic)
		}
	}
	k := sum.Recovery
	switch {
	case sum.DryRun || k == nil || sum.RefusedCount+sum.Discarded.Count == 0:
	case !k.Kept():
		fmt.Fprintf(t.out, "nothing kept for recovery (retention of %s: spillway config %s)\n", sum.Sandbox, sum.Sandbox)
	default:
		var parts []string
		if !k.RefusedUntil.IsZero() {
			parts = append(parts, "refused until "+k.RefusedUntil.UTC().Format("2006-01-02 15:04 UTC"))
		}
		if !k.DiscardedUntil.IsZero() {
			parts = append(parts, "discarded until "+k.DiscardedUntil.UTC().Format("2006-01-02 15:04 UTC"))
		}
		fmt.Fprintf(t.out, "kept for recovery: %s (%s)\n", strings.Join(parts, ", "), where)
	}
}
