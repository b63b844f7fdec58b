package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

func createCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a closed sandbox bound to an image",
		ArgsUsage: "NAME --image IMAGE",
		Flags:     append([]cli.Flag{&cli.StringFlag{Name: "image", Usage: "the image the sandbox starts from (required)"}}, retentionFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "NAME --image IMAGE"); err != nil {
				return err
			}
			if c.String("image") == "" {
				return usageError("usage: spillway create NAME --image IMAGE (--image is required)")
			}
			rc, keep, err := retentionChange(c)
			if err != nil {
				return err
			}
			return runCreate(c.Context, createOptions{Name: c.Args().Get(0), Image: c.String("image"), Retention: rc, SetRetention: keep}, globals(c), t)
		},
	}
}

// createOptions are the options of create.
type createOptions struct {
	Name, Image  string
	Retention    persist.RetentionChange // the recovery area's retention, when SetRetention
	SetRetention bool
}

func runCreate(ctx context.Context, o createOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		if err := e.CreateSandbox(o.Name, o.Image); err != nil {
			return err
		}
		if o.SetRetention {
			if _, err := e.SetRetention(o.Name, o.Retention); err != nil {
				return err
			}
		}
		fmt.Fprintf(t.out, "created sandbox %s from image %s\n", o.Name, o.Image)
		return nil
	})
}

type mountJSON struct {
	Type    string   `json:"type"`
	Source  string   `json:"source"`
	Options []string `json:"options"`
}

type openJSON struct {
	Name       string      `json:"name"`
	Path       string      `json:"path"`
	Session    uint64      `json:"session"`
	Generation uint64      `json:"generation"`
	Mounts     []mountJSON `json:"mounts"`
}

func openCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "open",
		Usage:     "prepare a fresh root from the image and persisted state, mount it, print its path",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{jsonFlag(t)},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			return runOpen(c.Context, sandboxOptions{Name: c.Args().Get(0)}, globals(c), t)
		},
	}
}

// sandboxOptions are the options of a command about one sandbox that has
// no flags of its own (open, path).
type sandboxOptions struct{ Name string }

func runOpen(ctx context.Context, so sandboxOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		o, err := e.OpenSandbox(ctx, so.Name)
		if err != nil {
			return err
		}
		for _, s := range o.Skipped {
			t.warnf("persisted path not applied: %s", name(s))
		}
		if !t.json {
			fmt.Fprintln(t.out, o.Path)
			return nil
		}
		out := openJSON{Name: o.Name, Path: o.Path, Session: o.Session, Generation: o.Generation, Mounts: []mountJSON{}}
		for _, m := range o.Mounts {
			out.Mounts = append(out.Mounts, mountJSON{Type: m.Type, Source: m.Source, Options: m.Options})
		}
		return t.printJSON(out)
	})
}

func pathCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "path",
		Usage:     "print the root path of an open sandbox (on a fleet, open on this host)",
		ArgsUsage: "NAME",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			return runPath(c.Context, sandboxOptions{Name: c.Args().Get(0)}, globals(c), t)
		},
	}
}

func runPath(ctx context.Context, o sandboxOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		p, err := e.OpenPath(o.Name)
		if err != nil {
			return err
		}
		fmt.Fprintln(t.out, p)
		return nil
	})
}

func lsCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:   "ls",
		Usage:  "list sandboxes",
		Flags:  []cli.Flag{jsonFlag(t)},
		Action: func(c *cli.Context) error { return runLs(c.Context, globals(c), t) },
	}
}

func runLs(ctx context.Context, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		sbs, err := e.Sandboxes(ctx)
		if err != nil {
			return err
		}
		if t.json {
			return t.printJSON(sbs)
		}
		w := t.table()
		shared := e.SharedLedger()
		head := "NAME\tIMAGE\tSTATE\tSESSION\tGENERATION\tPERSISTED\tPENDING"
		if shared {
			head += "\tHOST" // where an open sandbox is open
		}
		fmt.Fprintln(w, head)
		for _, s := range sbs {
			gen := fmt.Sprint(s.Generation)
			if s.State == persist.StateOpen && s.OpenGeneration != s.Generation {
				gen = fmt.Sprintf("%d (open on %d; the newer one applies at next open)", s.Generation, s.OpenGeneration)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s, %s\t%d", s.Name, s.Image, s.State, s.Session, gen,
				count(s.PersistedFiles, "file"), units.FormatSize(s.PersistedBytes), s.Pending)
			if shared {
				fmt.Fprintf(w, "\t%s", name(s.Host))
			}
			fmt.Fprintln(w)
		}
		return w.Flush()
	})
}

func rmCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "delete a closed sandbox and its persisted state (its history stays in the audit log)",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "close it first, discarding everything"}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "NAME"); err != nil {
				return err
			}
			return runRm(c.Context, rmOptions{Name: c.Args().Get(0), Force: c.Bool("force")}, globals(c), t)
		},
	}
}

// rmOptions are the options of rm.
type rmOptions struct {
	Name  string
	Force bool // close an open sandbox first, discarding everything
}

func runRm(ctx context.Context, o rmOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		if err := e.RemoveSandbox(ctx, o.Name, o.Force, beforeUnmount(e, t, o.Force)); err != nil {
			return err
		}
		fmt.Fprintf(t.out, "removed sandbox %s\n", o.Name)
		return nil
	})
}
