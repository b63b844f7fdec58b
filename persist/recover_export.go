package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist/hostile"
)

// ExportResult is what `recover export` wrote.
type ExportResult struct {
	Files   int64     `json:"files"`
	Dirs    int64     `json:"dirs"`
	Bytes   int64     `json:"bytes"`
	Skipped []Skipped `json:"skipped"`
}

// RecoverExport copies path from the recovery area (session 0: the newest
// that holds it) to dest on the host: a file to a new file, a directory to
// a new or empty directory; with force, over a file or into a directory
// that holds something. It never writes through a symlink at dest or below
// it and keeps no setuid, setgid or sticky bit; symlinks and special files
// are skipped, as close refuses them.
func (e *Env) RecoverExport(ctx context.Context, sandbox, path, dest string, session uint64, force bool) (*ExportResult, error) {
	dest = filepath.Clean(dest) // "out/" would resolve a symlink at out
	f, err := e.findRecoverable(ctx, sandbox, session, path)
	if err != nil {
		return nil, err
	}
	res := &ExportResult{Skipped: []Skipped{}}
	if f.entry.Path != "" && f.entry.Type != change.TypeDir {
		if err := exportFile(f.rs, f.entry, dest, force, res); err != nil {
			return nil, err
		}
		return res, nil
	}
	if err := makeExportDir(dest, force); err != nil {
		return nil, err
	}
	w, err := hostile.NewWriter(dest)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	w.KeepDirs = true // the host's directories are not the sandbox's to replace
	// the temporary files of an export killed before (export --force
	// again): cleared from each directory written into
	if err := w.RemoveTemps("/"); err != nil {
		return nil, err
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	for _, x := range f.beneath {
		rel := strings.TrimPrefix(x.Path, strings.TrimSuffix(path, "/"))
		switch {
		case x.Kind == change.KindDelete:
			continue
		case x.Type == change.TypeDir:
			if err := w.MkdirAll(rel, 0o755); err != nil {
				res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: writeSkip(err)})
				continue
			}
			if err := w.RemoveTemps(rel); err != nil {
				return res, fmt.Errorf("export %s: %w", escape.Name(x.Path), err)
			}
			res.Dirs++
			continue
		case x.Type == change.TypeSymlink:
			res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: RefuseSymlink})
			continue
		case x.Type != change.TypeFile:
			res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: RefuseSpecial})
			continue
		}
		tree, err := treeOf(f.rs, x)
		if err != nil {
			return res, err
		}
		r, err := hostile.OpenFile(tree, x.Path, hostile.Change{}, math.MaxInt64)
		if err != nil {
			res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: skipReason(err)})
			continue
		}
		st := r.Stat()
		if dir := filepath.Dir(rel); dir != "/" {
			if err := w.MkdirAll(dir, 0o755); err != nil {
				r.Close()
				res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: writeSkip(err)})
				continue
			}
		}
		err = w.WriteFile(rel, verifyAtEOF{r}, exceptions.ModeBits(st.Mode, true), uid, gid, time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
		r.Close()
		if errors.Is(err, hostile.ErrIsDir) {
			res.Skipped = append(res.Skipped, Skipped{Path: x.Path, PathBytes: exactBytes(x.Path), Reason: "a directory is there on the host, and is not replaced"})
			continue
		}
		if err != nil {
			return res, fmt.Errorf("export %s: %w", escape.Name(x.Path), err)
		}
		res.Files++
		res.Bytes += st.Size
	}
	syncDir(dest)
	return res, nil
}

// verifyAtEOF checks, when the reader ends, that the file did not change
// while it was read.
type verifyAtEOF struct{ f *hostile.File }

func (v verifyAtEOF) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	if err == io.EOF {
		if verr := v.f.Verify(); verr != nil {
			return n, verr
		}
	}
	return n, err
}

// writeSkip says why an entry could not be written at the destination.
func writeSkip(err error) string {
	if errors.Is(err, hostile.ErrTooDeep) {
		return RefuseTooDeep
	}
	return err.Error()
}

func skipReason(err error) string {
	switch {
	case errors.Is(err, hostile.ErrSymlink):
		return RefuseSymlink
	case errors.Is(err, hostile.ErrSpecial):
		return RefuseSpecial
	case errors.Is(err, hostile.ErrTooDeep):
		return RefuseTooDeep
	case errors.Is(err, hostile.ErrNotFound):
		return "gone"
	}
	return RefuseUnreadable
}

// exportFile writes one file entry to dest, a new file (with force, one
// that replaces what is there but a directory): the bytes go to a
// temporary file beside dest, renamed to dest once all were read and
// checked: a symlink at dest is replaced, never written through.
func exportFile(rs *recoverySession, x RecoverEntry, dest string, force bool, res *ExportResult) error {
	if fi, err := os.Lstat(dest); err == nil {
		if fi.IsDir() {
			return errclass.Errorf(errdefs.ErrAlreadyExists, "%s is a directory: give the file name to write", escape.Name(dest))
		}
		if !force {
			return errclass.Errorf(errdefs.ErrAlreadyExists, "%s exists (use --force to overwrite it)", escape.Name(dest))
		}
	}
	r, err := openEntry(rs, x)
	if err != nil {
		return err
	}
	defer r.Close()
	how := atomicfile.NoReplace
	if force {
		how = atomicfile.Replace
	}
	n, err := writeWhole(dest, verifyAtEOF{r}, os.FileMode(exceptions.ModeBits(r.Stat().Mode, true)), time.Time{}, how)
	switch {
	case errors.Is(err, os.ErrExist):
		return errclass.Errorf(errdefs.ErrAlreadyExists, "%s exists (use --force to overwrite it)", escape.Name(dest))
	case err != nil:
		return fmt.Errorf("export %s: %w", escape.Name(x.Path), err)
	}
	res.Files, res.Bytes = 1, n
	return nil
}

// makeExportDir creates dest, or accepts an empty directory there (with
// force, any directory), never a symlink to one.
func makeExportDir(dest string, force bool) error {
	err := os.Mkdir(dest, 0o755)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dest)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errclass.Errorf(errdefs.ErrAlreadyExists, "%s exists and is not a directory (give a directory; nothing is written through a symlink)", escape.Name(dest))
	}
	if force {
		return nil
	}
	ents, err := os.ReadDir(dest)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return errclass.Errorf(errdefs.ErrAlreadyExists, "%s is not empty (use --force to write into it)", escape.Name(dest))
	}
	return nil
}
