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
// sandbox, this spillway's or another state directory's: every file there
// belongs to the sandbox's processes (uid 0 in a container), which the
// state directory's rule exists to prevent, and the sandbox's close would
// take the whole state, ledger and blobs, away as discarded changes. It
// runs before anything is created on the way to root.
func refuseRootInSandbox(root string) error {
	p := root
	for {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) || p == "/" {
			break
		}
		p = filepath.Dir(p)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		mp := m.Mountpoint
		if mp == "/" || (p != mp && !within(p, mp)) || filepath.Base(filepath.Dir(mp)) != "mnt" {
			continue
		}
		state := filepath.Dir(filepath.Dir(mp))
		if fi, err := os.Lstat(filepath.Join(state, "lock")); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(state, "snapshots")); err != nil || !fi.IsDir() {
			continue
		}
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "state directory %s lies inside the root of sandbox %s (mounted at %s by the state directory %s): the sandbox's processes could change it, and its close would discard it; give a directory outside every sandbox",
			escape.Name(root), escape.Name(filepath.Base(mp)), escape.Name(mp), escape.Name(state))
	}
	return nil
}
