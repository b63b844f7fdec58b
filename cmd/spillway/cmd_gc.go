package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

func gcCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove unreferenced blobs, stray snapshots and leftover temp files; compact the store (prints totals)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "also name each removed blob, snapshot and temp file"},
			jsonFlag(t),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("usage: spillway gc [--verbose] [--json]")
			}
			return runGC(c.Context, gcOptions{Verbose: c.Bool("verbose")}, globals(c), t)
		},
	}
}

// gcOptions are the options of gc.
type gcOptions struct {
	Verbose bool // name each removed item, not only the totals
}

func runGC(ctx context.Context, o gcOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		f, err := e.GC(ctx)
		if f != nil {
			if t.json {
				if perr := t.printJSON(toFreedJSON(f)); err == nil {
					err = perr
				}
			} else {
				printFreed(t, f, o.Verbose, badgerLedger(g))
			}
		}
		return err
	})
}

// freedJSON is gc --json: every removed item and the totals.
type freedJSON struct {
	Blobs         []string `json:"blobs"`
	BlobBytes     int64    `json:"blob_bytes"`
	Snapshots     []string `json:"snapshots"`
	TempFiles     []string `json:"temp_files"`
	TempBytes     int64    `json:"temp_bytes"`
	ValueLogFiles int      `json:"value_log_files"`
}

func toFreedJSON(f *persist.Freed) freedJSON {
	orEmpty := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return freedJSON{Blobs: orEmpty(f.Blobs), BlobBytes: f.BlobBytes, Snapshots: orEmpty(f.Snapshots),
		TempFiles: orEmpty(f.TempFiles), TempBytes: f.TempBytes, ValueLogFiles: f.ValueLogFiles}
}

// printFreed prints gc's totals, after each removed item with verbose;
// badger: the ledger is a badger store, whose value-log files gc rewrites
// (a PostgreSQL ledger is the server's to compact).
func printFreed(t *term, f *persist.Freed, verbose, badger bool) {
	if verbose {
		for _, d := range f.Blobs {
			fmt.Fprintf(t.out, "removed blob %s\n", name(d))
		}
		for _, k := range f.Snapshots {
			fmt.Fprintf(t.out, "removed snapshot %s\n", name(k))
		}
		for _, p := range f.TempFiles {
			fmt.Fprintf(t.out, "removed temp file %s\n", name(p))
		}
	}
	if r := f.Recovery; r.Sessions+r.Discarded > 0 {
		fmt.Fprintf(t.out, "recovery area: %s forgotten, discarded content of %d dropped (%s)\n", count(r.Sessions, "session"), r.Discarded, units.FormatSize(r.Bytes))
	}
	fmt.Fprintf(t.out, "freed %s (%s), %s, %s (%s)", count(len(f.Blobs), "blob"), units.FormatSize(f.BlobBytes),
		count(len(f.Snapshots), "snapshot"), count(len(f.TempFiles), "temp file"), units.FormatSize(f.TempBytes))
	if badger {
		fmt.Fprintf(t.out, "; store: %s rewritten", count(f.ValueLogFiles, "value-log file"))
	}
	fmt.Fprintln(t.out)
}
