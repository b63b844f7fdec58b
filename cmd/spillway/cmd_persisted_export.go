package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

// persistedExportOptions are the arguments of persisted export.
type persistedExportOptions struct {
	Sandbox, Path, Dest string
	Session, Generation uint64
	Force               bool
}

// persistedPruneOptions are the arguments of persisted prune.
type persistedPruneOptions struct {
	Sandbox string
	Keep    int
}

func persistedExportCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "copy a persisted file, directory or the whole state (/) out to DEST, or as a tar stream to stdout (DEST -)",
		ArgsUsage: "SANDBOX PATH DEST",
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "session", Usage: "the state that session N's close left"},
			&cli.Uint64Flag{Name: "generation", Usage: "the state of generation G"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite a DEST file, or write into a non-empty DEST directory"},
			jsonFlag(t),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 3, "SANDBOX PATH DEST [--session N | --generation G] [--force]"); err != nil {
				return err
			}
			return runPersistedExport(c.Context, persistedExportOptions{
				Sandbox: c.Args().Get(0), Path: c.Args().Get(1), Dest: c.Args().Get(2),
				Session: c.Uint64("session"), Generation: c.Uint64("generation"), Force: c.Bool("force"),
			}, globals(c), t)
		},
	}
}

func persistedPruneCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:      "prune",
		Usage:     "drop the content of all but the newest N versions of each path that are not in effect (gc then frees the blobs)",
		ArgsUsage: "SANDBOX",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "keep", Usage: "older versions to keep per path"},
			jsonFlag(t),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "SANDBOX --keep N"); err != nil {
				return err
			}
			if !c.IsSet("keep") {
				return usageError("usage: spillway persisted prune SANDBOX --keep N")
			}
			return runPersistedPrune(c.Context, persistedPruneOptions{Sandbox: c.Args().Get(0), Keep: c.Int("keep")}, globals(c), t)
		},
	}
}

// exportJSON is what persisted export --json prints.
type exportJSON struct {
	Sandbox    string `json:"sandbox"`
	Path       string `json:"path"`
	PathBytes  []byte `json:"path_bytes,omitempty"`
	Generation uint64 `json:"generation"`
	Dest       string `json:"dest"`
	persist.ExportStats
}

func runPersistedExport(ctx context.Context, o persistedExportOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		set, err := e.Export(ctx, o.Sandbox, o.Path, persist.At{Session: o.Session, Generation: o.Generation})
		if err != nil {
			return err
		}
		var st *persist.ExportStats
		switch {
		case o.Dest == "-":
			// stdout is the stream: nothing else goes there.
			_, err = e.ExportTar(ctx, set, t.out)
			return err
		case set.Root != nil && set.Root.Type != change.TypeDir:
			st, err = exportOne(e, set.Root, o.Dest, o.Force)
		default:
			st, err = exportTree(ctx, e, set, o.Dest, o.Force)
		}
		if err != nil {
			return err
		}
		if t.json {
			text, exact := escape.JSON(o.Path)
			return t.printJSON(exportJSON{Sandbox: o.Sandbox, Path: text, PathBytes: exact, Generation: set.Generation, Dest: o.Dest, ExportStats: *st})
		}
		if set.Root != nil && set.Root.Type != change.TypeDir {
			fmt.Fprintf(t.out, "exported %s to %s\n", name(o.Path), name(o.Dest))
			return nil
		}
		fmt.Fprintf(t.out, "exported %s of %s (generation %d) to %s: %s (%s), %s, %s\n",
			name(o.Path), o.Sandbox, set.Generation, name(o.Dest), count(st.Files, "file"), units.FormatSize(st.Bytes),
			count(st.Dirs, "directory", "directories"), count(st.Links, "symlink"))
		return nil
	})
}

// exportTree exports a directory (or the whole state) beneath dest, a
// directory made if missing. A symlink at dest is refused, never
// followed; a non-empty dest needs force.
func exportTree(ctx context.Context, e *persist.Env, set *persist.ExportSet, dest string, force bool) (*persist.ExportStats, error) {
	// "out/" would resolve a symlink at out: the name is checked, and
	// opened, without the slash.
	dest = filepath.Clean(dest)
	fi, err := os.Lstat(dest)
	made := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(dest, 0o755); err != nil {
			return nil, err
		}
		made = true
	case err != nil:
		return nil, err
	case fi.Mode()&os.ModeSymlink != 0:
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "%s is a symlink: give a directory (nothing is written through a link)", name(dest))
	case !fi.IsDir():
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "%s exists and is not a directory", name(dest))
	case !force:
		if empty, err := emptyDir(dest); err != nil {
			return nil, err
		} else if !empty {
			return nil, errclass.Errorf(errdefs.ErrAlreadyExists, "%s is not empty (use --force to write into it)", name(dest))
		}
	}
	st, err := e.ExportDir(ctx, set, dest)
	if err == nil && made && set.Root != nil {
		// The directory made for the export is the exported one: its
		// recorded mode and owner, once everything is written into it.
		err = setDirMeta(dest, set.Root)
	}
	return st, err
}

// setDirMeta gives dir, a directory the export made, the mode and owner
// of the directory record r (the owner as root only, as for every
// exported entry).
func setDirMeta(dir string, r *persist.Record) error {
	// Through a descriptor of the directory itself: a link put at dir
	// since is refused, never followed.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", name(dir), err)
	}
	defer unix.Close(fd)
	if os.Geteuid() == 0 {
		if err := unix.Fchown(fd, int(r.UID), int(r.GID)); err != nil {
			return err
		}
	}
	return unix.Fchmod(fd, r.Mode&persist.DirModeBits)
}

// emptyDir says whether dir holds no entry.
func emptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

// exportOne writes one file or symlink at dest (persist.ExportOne).
func exportOne(e *persist.Env, r *persist.Record, dest string, force bool) (*persist.ExportStats, error) {
	st, err := e.ExportOne(r, dest, force)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%s exists (use --force to overwrite it)", name(dest))
	}
	return st, err
}

// pruneJSON is what persisted prune --json prints.
type pruneJSON = persist.PruneResult

func runPersistedPrune(ctx context.Context, o persistedPruneOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		res, err := e.Prune(ctx, o.Sandbox, o.Keep)
		if err != nil {
			return err
		}
		if t.json {
			return t.printJSON(pruneJSON(*res))
		}
		fmt.Fprintf(t.out, "pruned %s of %s (%s, %s); kept %s and %d in effect or under review\n",
			count(res.Pruned, "version"), res.Sandbox, units.FormatSize(res.Bytes), count(res.Digests, "blob"), count(res.Kept, "older version"), res.Protected)
		if res.Pruned > 0 {
			fmt.Fprintln(t.out, "run spillway gc to free the blobs no record keeps")
		}
		return nil
	})
}
