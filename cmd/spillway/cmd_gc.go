package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

func gcCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove unreferenced blobs, stray snapshots and leftover temp files; compact the store",
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageError("usage: spillway gc")
			}
			return withEnv(c, t, func(e *persist.Env) error {
				f, err := e.GC(c.Context)
				if f != nil {
					printFreed(t, f)
				}
				return err
			})
		},
	}
}

func printFreed(t *term, f *persist.Freed) {
	for _, d := range f.Blobs {
		fmt.Fprintf(t.out, "removed blob %s\n", name(d))
	}
	for _, k := range f.Snapshots {
		fmt.Fprintf(t.out, "removed snapshot %s\n", name(k))
	}
	for _, p := range f.TempFiles {
		fmt.Fprintf(t.out, "removed temp file %s\n", name(p))
	}
	if r := f.Recovery; r.Sessions+r.Discarded > 0 {
		fmt.Fprintf(t.out, "recovery area: %d sessions forgotten, discarded content of %d dropped (%s)\n", r.Sessions, r.Discarded, units.FormatSize(r.Bytes))
	}
	fmt.Fprintf(t.out, "freed %d blobs (%s), %d snapshots, %d temp files (%s); store: %d value-log files rewritten\n",
		len(f.Blobs), units.FormatSize(f.BlobBytes), len(f.Snapshots), len(f.TempFiles), units.FormatSize(f.TempBytes), f.ValueLogFiles)
}
