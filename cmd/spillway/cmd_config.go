package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

// configOptions are the options of `spillway config`.
type configOptions struct {
	Sandbox   string
	Retention persist.RetentionChange
	KeepBytes *int64 // -1: back to the default
}

// retentionFlags are the recovery-area flags of create and config.
func retentionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "keep-refused", Usage: "how long refused content stays recoverable (`DURATION`, 0: not at all)", DefaultText: "7d"},
		&cli.StringFlag{Name: "keep-discarded", Usage: "how long discarded content of the last session stays recoverable (`DURATION`, 0: not at all)", DefaultText: "24h"},
		&cli.StringFlag{Name: "keep-sessions", Usage: "how many of the newest sessions with refused content the recovery area keeps (`N`, 0: none; sessions that only discarded something do not count)", DefaultText: "7"},
	}
}

// retentionChange parses the retention flags that were set.
func retentionChange(c *cli.Context) (persist.RetentionChange, bool, error) {
	var rc persist.RetentionChange
	set := false
	if c.IsSet("keep-refused") {
		d, err := units.ParseDuration(c.String("keep-refused"))
		if err != nil || d < 0 {
			return rc, false, usageError("--keep-refused %q: give a duration such as 7d, 36h or 0", c.String("keep-refused"))
		}
		rc.KeepRefused, set = &d, true
	}
	if c.IsSet("keep-discarded") {
		d, err := units.ParseDuration(c.String("keep-discarded"))
		if err != nil || d < 0 {
			return rc, false, usageError("--keep-discarded %q: give a duration such as 24h or 0", c.String("keep-discarded"))
		}
		rc.KeepDiscarded, set = &d, true
	}
	if c.IsSet("keep-sessions") {
		var n int
		if _, err := fmt.Sscan(c.String("keep-sessions"), &n); err != nil || n < 0 || fmt.Sprint(n) != c.String("keep-sessions") {
			return rc, false, usageError("--keep-sessions %q: give a number of sessions (0: none)", c.String("keep-sessions"))
		}
		rc.KeepSessions, set = &n, true
	}
	return rc, set, nil
}

func configCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "show or change how long the recovery area keeps what close did not persist",
		ArgsUsage: "[SANDBOX]",
		Flags: append(retentionFlags(),
			&cli.StringFlag{Name: "keep-bytes", Usage: "root-wide cap of the recovery area, oldest sessions dropped first (`SIZE`, or \"default\": 10% of the filesystem)"},
			jsonFlag(t)),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("usage: spillway config [SANDBOX] [--keep-refused DURATION] [--keep-discarded DURATION] [--keep-sessions N] [--keep-bytes SIZE] [--json]")
			}
			o := configOptions{Sandbox: c.Args().First()}
			rc, set, err := retentionChange(c)
			if err != nil {
				return err
			}
			if set && o.Sandbox == "" {
				return usageError("--keep-refused, --keep-discarded and --keep-sessions are per sandbox: spillway config SANDBOX …")
			}
			if set {
				o.Retention = rc
			}
			if c.IsSet("keep-bytes") {
				n := int64(-1)
				if v := c.String("keep-bytes"); v != "default" {
					if n, err = units.ParseSize(v); err != nil {
						return usageError("--keep-bytes %q: give a size such as 10G, 0 or default", v)
					}
				}
				o.KeepBytes = &n
			}
			return runConfig(c.Context, o, globals(c), t)
		},
	}
}

func runConfig(ctx context.Context, o configOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		var s *persist.Settings
		var err error
		r := o.Retention
		if r.KeepRefused != nil || r.KeepDiscarded != nil || r.KeepSessions != nil {
			if _, err = e.SetRetention(o.Sandbox, r); err != nil {
				return err
			}
		}
		if o.KeepBytes != nil {
			if _, err = e.SetKeepBytes(*o.KeepBytes); err != nil {
				return err
			}
		}
		if s, err = e.Config(o.Sandbox); err != nil {
			return err
		}
		if t.json {
			return t.printJSON(s)
		}
		w := t.table()
		if s.Sandbox != "" {
			fmt.Fprintf(w, "sandbox\t%s\n", s.Sandbox)
			fmt.Fprintf(w, "keep-refused\t%s\n", s.KeepRefused)
			fmt.Fprintf(w, "keep-discarded\t%s (last session only)\n", s.KeepDiscarded)
			fmt.Fprintf(w, "keep-sessions\t%d\n", *s.KeepSessions)
		}
		def := ""
		if s.KeepBytesDefault {
			def = " (default: 10% of the filesystem)"
		}
		fmt.Fprintf(w, "keep-bytes\t%s%s\n", units.FormatSize(s.KeepBytes), def)
		disk := ""
		if s.RecoveryDiskBytes != s.RecoveryBytes {
			// The cap counts what it takes on disk: a sparse file's holes are free.
			disk = ", " + units.FormatSize(s.RecoveryDiskBytes) + " on disk"
		}
		fmt.Fprintf(w, "recovery area\t%s%s (all sandboxes)\n", units.FormatSize(s.RecoveryBytes), disk)
		return w.Flush()
	})
}
