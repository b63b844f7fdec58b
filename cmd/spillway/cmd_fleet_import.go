package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/persist"
)

// fleetInitCommand is `fleet init`.
func fleetInitCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "prepare the shared ledger of --store postgres://…: create or migrate its schema, record this host (--host-id), check the --blobs directory is writable; running it again changes nothing",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag(t)},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("usage: spillway fleet init [--json]")
			}
			// Refused before the Env opens: it would make the root.
			if err := needSharedLedger(globals(c), ", which needs no init (it is created at first use): fleet init prepares a shared ledger"); err != nil {
				return err
			}
			// fleet init alone migrates an older shared ledger's schema.
			return withEnv(persist.AllowLedgerMigration(c.Context), globals(c), t, func(e *persist.Env) error {
				r, err := e.FleetInit()
				if err != nil {
					return err
				}
				if t.json {
					return t.printJSON(r)
				}
				fmt.Fprintf(t.out, "ledger ready: %s, SQL schema %d, ledger schema %d; host %s recorded (%s in the ledger); blobs in %s (writable)\n",
					r.Driver, r.SQLSchema, r.LedgerSchema, r.Host, count(r.Hosts, "host"), r.Blobs)
				return nil
			})
		},
	}
}

// fleetImportCommand is `fleet import`.
func fleetImportCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "copy a single-host state directory (its ledger, audit log and blobs) into the shared ledger after verifying its audit log; rerunning is a no-op, an interrupted import is finished (also after the source changed, unless it changed a sandbox already copied: that is refused, naming it)",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from-root", Usage: "the single-host state directory to import (its badger store in DIR/store, its blobs in DIR/blobs)"},
			&cli.StringFlag{Name: "source-host", Usage: "the host the source's sessions ran on (default: the source's recorded host id, else this host)"},
			&cli.IntFlag{Name: "chunk", Usage: "records, index entries or audit entries written per transaction", Value: 1000, Hidden: true},
			jsonFlag(t),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 || c.String("from-root") == "" {
				return usageError("usage: spillway fleet import --from-root DIR [--source-host HOST] [--json]")
			}
			o := persist.FleetImportOptions{
				FromRoot: c.String("from-root"), SourceHost: c.String("source-host"), Chunk: c.Int("chunk"),
				Log: func(format string, args ...any) { fmt.Fprintf(t.err, "import: "+format+"\n", args...) },
			}
			if err := needSharedLedger(globals(c), ": fleet import copies into a shared ledger"); err != nil {
				return err
			}
			return withEnv(c.Context, globals(c), t, func(e *persist.Env) error {
				r, err := e.FleetImport(c.Context, o)
				if err != nil {
					return err
				}
				if t.json {
					return t.printJSON(r)
				}
				if r.Already {
					fmt.Fprintf(t.out, "already imported (source %.16s…): nothing to do\n", r.Digest)
					return nil
				}
				verb := "imported"
				switch {
				case r.Resumed:
					verb = "finished importing"
				case r.Earlier != 0:
					verb = fmt.Sprintf("imported what the source gained since its import (bridge entry %d):", r.Earlier)
				}
				fmt.Fprintf(t.out, "%s %s (%s): %s, %s, %s, %s, %s, %s; bridge entry %d\n",
					verb, count(len(r.Sandboxes), "sandbox", "sandboxes"), strings.Join(r.Sandboxes, " "), count(r.Sessions, "session"), count(r.Records, "record"),
					count(r.Exceptions, "exception"), count(r.Images, "image"), count(r.Blobs, "blob"), count(r.Events, "audit entry", "audit entries"), r.Bridge)
				if len(r.Restarted) > 0 {
					fmt.Fprintf(t.out, "copied again, as the source changed them since the earlier run: %s\n", strings.Join(r.Restarted, " "))
				}
				return nil
			})
		},
	}
}
