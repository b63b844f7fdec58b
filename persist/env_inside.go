package persist

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
)

// refuseRootInSandbox refuses a state directory inside the root of an open
// sandbox, this spillway's or another state directory's, or inside another
// state directory (its snapshots' upper directories are sandboxes' roots
// too): every file there belongs to the sandbox's processes (uid 0 in a
// container), which the state directory's rule exists to prevent, and the
// sandbox's close would take the whole state, ledger and blobs, away as
// discarded changes. It runs before anything is created on the way to
// root, and looks at the path as given (a symlink the sandbox made inside
// its root leads elsewhere only until the sandbox changes it) and as its
// nearest existing directory resolves.
func refuseRootInSandbox(root string) error {
	p := root
	for {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) || p == "/" {
			break
		}
		p = filepath.Dir(p)
	}
	paths := []string{root}
	if r, err := filepath.EvalSymlinks(p); err == nil && r != root {
		paths = append(paths, r)
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return err
	}
	for _, q := range paths {
		for _, m := range mounts {
			mp := m.Mountpoint
			if mp == "/" || (q != mp && !within(q, mp)) || filepath.Base(filepath.Dir(mp)) != "mnt" {
				continue
			}
			if state := filepath.Dir(filepath.Dir(mp)); isStateDir(state) {
				return errclass.Errorf(errdefs.ErrFailedPrecondition, "state directory %s lies inside the root of sandbox %s (mounted at %s by the state directory %s): the sandbox's processes could change it, and its close would discard it; give a directory outside every sandbox",
					escape.Name(root), escape.Name(filepath.Base(mp)), escape.Name(mp), escape.Name(state))
			}
		}
		for a := filepath.Dir(q); ; a = filepath.Dir(a) {
			if isStateDir(a) {
				return errclass.Errorf(errdefs.ErrFailedPrecondition, "state directory %s lies inside the state directory %s, whose snapshots are sandboxes' roots: give a directory outside it",
					escape.Name(root), escape.Name(a))
			}
			if a == "/" || a == "." {
				break
			}
		}
	}
	return nil
}

// isStateDir says whether dir looks like a spillway state directory: a
// lock file and a snapshots directory.
func isStateDir(dir string) bool {
	if fi, err := os.Lstat(filepath.Join(dir, "lock")); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	fi, err := os.Lstat(filepath.Join(dir, "snapshots"))
	return err == nil && fi.IsDir()
}
