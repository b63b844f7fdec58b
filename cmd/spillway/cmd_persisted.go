package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/view"
)

func persistedCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "persisted",
		Usage: "inspect the persisted state of a sandbox",
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list what the next open lays over the image",
				ArgsUsage: "SANDBOX",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "SANDBOX"); err != nil {
						return err
					}
					return runPersistedLs(c.Context, persistedOptions{Sandbox: c.Args().Get(0)}, globals(c), t)
				},
			},
			{
				Name:      "cat",
				Usage:     "print a persisted file (the current version, or the one of --session N)",
				ArgsUsage: "SANDBOX PATH",
				Flags:     []cli.Flag{&cli.Uint64Flag{Name: "session", Usage: "the version recorded by session `N`", DefaultText: "the version in effect"}},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, "SANDBOX PATH [--session N]"); err != nil {
						return err
					}
					o := persistedOptions{Sandbox: c.Args().Get(0), Path: c.Args().Get(1), Session: c.Uint64("session")}
					return runPersistedCat(c.Context, o, globals(c), t)
				},
			},
			persistedExportCommand(t),
			persistedPruneCommand(t),
			{
				Name:      "history",
				Usage:     "every version of a path across sessions",
				ArgsUsage: "SANDBOX PATH",
				Flags:     []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, "SANDBOX PATH"); err != nil {
						return err
					}
					return runPersistedHistory(c.Context, persistedOptions{Sandbox: c.Args().Get(0), Path: c.Args().Get(1)}, globals(c), t)
				},
			},
		},
	}
}

// persistedOptions are the options of the persisted commands.
type persistedOptions struct {
	Sandbox string
	Path    string // cat, export, history
	Session uint64 // cat: the version of this session, 0 for the current
	Dest    string // export
	Force   bool   // export: overwrite Dest
}

func runPersistedLs(ctx context.Context, o persistedOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		// Rows print as they are read from the current-state index, so
		// the first page of a large state shows at once (pagedOutput).
		out := t.paged()
		defer out.done()
		if t.json {
			arr := out.term.jsonArray()
			if err := e.PersistedEach(ctx, o.Sandbox, func(r *persist.Record) error {
				if err := arr.add(view.NewRecord(r)); err != nil {
					return err
				}
				return out.row()
			}); err != nil {
				return err
			}
			if err := arr.close(); err != nil {
				return err
			}
			return out.done()
		}
		w := out.table
		// The header with the first row (or none): an unknown sandbox
		// prints its error alone.
		header := false
		head := func() {
			if !header {
				fmt.Fprintln(w, "PATH\tTYPE\tSIZE\tMODE\tEXCEPTION\tSESSION\tSTATUS")
				header = true
			}
		}
		err := e.PersistedEach(ctx, o.Sandbox, func(r *persist.Record) error {
			head()
			typ := r.Type
			if r.Kind == change.KindDelete {
				typ = "deleted"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%04o\t%s\t%d\t%s\n", name(r.Path), typ, units.FormatSize(r.Size), r.Mode, r.Exception, r.Session, r.Status)
			return out.row()
		})
		if err != nil {
			return err
		}
		head()
		return out.done()
	})
}

// openVersion opens a persisted version's content for a reader that checks
// it against its digest: a mismatch ends the reading with an error that
// names the record. The content is read with the ledger parked: a reader
// slow to take it holds up nobody.
func openVersion(ctx context.Context, e *persist.Env, sandbox, path string, session uint64) (io.ReadCloser, error) {
	r, err := e.PersistedVersion(ctx, sandbox, path, session)
	if err != nil {
		return nil, err
	}
	if r.Digest == "" && !r.Pruned {
		return nil, fmt.Errorf("%s in %s is a %s %s: no content to show", name(path), sandbox, r.Type, r.Kind)
	}
	if err := e.ParkLedger(); err != nil {
		return nil, err
	}
	return e.OpenRecord(r)
}

func runPersistedCat(ctx context.Context, o persistedOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		f, err := openVersion(ctx, e, o.Sandbox, o.Path, o.Session)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(t.out, f)
		return err
	})
}

func runPersistedHistory(ctx context.Context, o persistedOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		recs, err := e.History(ctx, o.Sandbox, o.Path)
		if err != nil {
			return err
		}
		if t.json {
			return t.printJSON(view.Records(recs))
		}
		if len(recs) == 0 {
			return fmt.Errorf("%s has no record of %s", o.Sandbox, name(o.Path))
		}
		w := t.table()
		fmt.Fprintln(w, "RECORD\tSESSION\tKIND\tSIZE\tDIGEST\tSTATUS\tEXCEPTION")
		for _, r := range recs {
			st := string(r.Status)
			if r.Purged {
				st += ",purged"
			}
			if r.Pruned {
				st += ",pruned"
			}
			if r.Reason != "" {
				st += " (" + name(r.Reason) + ")"
			}
			dg := r.Digest
			if len(dg) > 19 {
				dg = dg[:19]
			}
			fmt.Fprintf(w, "r%s\t%d\t%s\t%s\t%s\t%s\t%s\n", strconv.FormatUint(r.ID, 10), r.Session, r.Kind, units.FormatSize(r.Size), dg, st, r.Exception)
		}
		return w.Flush()
	})
}
