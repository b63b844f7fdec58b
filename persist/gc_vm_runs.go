package persist

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/containerd/errdefs"
)

// A `run --vm` keeps its run directory (scratch disk, changes spool,
// refused content) when its guest's changes did not all arrive, naming it
// in a warning; each run has a directory of its own, so nothing reuses
// them. gc removes those no run entry names once their sandbox's
// keep-refused time has passed (at once for a sandbox that keeps nothing,
// or is gone), as the recovery area's own content goes.

// vmRunDirName is a run directory's name: the run's id
// (spillway-SANDBOX-N) and a random suffix.
var vmRunDirName = regexp.MustCompile(`^spillway-(.+)-[0-9]+\.[^.]+$`)

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
	inUse := e.vmRunDirsInUse()
	now := e.Now()
	for _, d := range ents {
		m := vmRunDirName.FindStringSubmatch(d.Name())
		p := filepath.Join(dir, d.Name())
		if m == nil || !d.IsDir() || inUse[p] {
			continue
		}
		keep := time.Duration(0)
		if sb, err := e.getSandbox(m[1]); err == nil {
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

// vmRunDirsInUse returns the run directories the run entries name
// (run/sbx/SANDBOX/ID.json, "vm": {"dir": …}): live runs, and orphans
// whose changes the next close or run rescues.
func (e *Env) vmRunDirsInUse() map[string]bool {
	out := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(e.RunDir(), "sbx", "*", "*.json"))
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			continue
		}
		var entry struct {
			VM *struct {
				Dir string `json:"dir"`
			} `json:"vm"`
		}
		if json.Unmarshal(b, &entry) == nil && entry.VM != nil {
			out[entry.VM.Dir] = true
		}
	}
	return out
}
