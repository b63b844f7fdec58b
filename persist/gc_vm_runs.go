package persist

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/internal/container"
)

// A `run --vm` keeps its run directory (scratch disk, changes spool,
// refused content) when its guest's changes did not all arrive, naming it
// in a warning; each run has a directory of its own, so nothing reuses
// them. gc removes those no run entry names once their sandbox's
// keep-refused time has passed (at once for a sandbox that keeps nothing,
// or is gone), as the recovery area's own content goes.

// gcVMRuns removes the run directories gone past their sandbox's
// retention, listing them in f.TempFiles.
func (e *Env) gcVMRuns(f *Freed) error {
	dir := filepath.Join(e.RunDir(), "vm")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	inUse, err := (&container.Book{Dir: e.RunDir()}).VMDirs()
	if err != nil {
		return err
	}
	now := e.Now()
	for _, d := range ents {
		sandbox, ok := container.VMRunSandbox(d.Name())
		p := filepath.Join(dir, d.Name())
		if !ok || !d.IsDir() || inUse.Has(p) {
			continue
		}
		keep := time.Duration(0)
		if sb, err := e.getSandbox(sandbox); err == nil {
			keep = retentionOf(sb).KeepRefused
		} else if !errdefs.IsNotFound(err) {
			continue
		}
		fi, err := d.Info()
		if err != nil || now.Before(fi.ModTime().Add(keep)) {
			continue
		}
		size := treeSize(p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		f.TempFiles = append(f.TempFiles, filepath.Join("run", "vm", d.Name()))
		f.TempBytes += size
	}
	return nil
}
