package snapshot

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// MountedError refuses to remove or read a snapshot's directory while
// something is mounted inside it: spillway never mounts there, so a host
// user or program did, and a removal would delete what that mount shows
// (rm -rf --one-file-system crosses a bind mount of the same filesystem,
// and the snapshotters' removal crosses any).
type MountedError struct {
	What      string   // e.g. `the directory of snapshot "sbx/docs/3"`
	Mounts    []string // the mount points, sorted
	Unchanged bool     // the command changed nothing before it refused
}

func (e *MountedError) Error() string {
	msg := fmt.Sprintf("%s holds %s not spillway's: %s; unmount %s (umount PATH), then run the command again",
		e.What, plural(len(e.Mounts), "a mount", "mounts"), strings.Join(e.Mounts, ", "), plural(len(e.Mounts), "it", "them"))
	if e.Unchanged {
		msg += " (nothing changed)"
	}
	return msg
}

// Unwrap classes the refusal as a failed precondition.
func (e *MountedError) Unwrap() error { return errdefs.ErrFailedPrecondition }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ForeignMounts returns what is mounted inside the directory of snapshot
// key (its upper and work directories on overlay, its tree on native): a
// mount made there by someone else. When the directory cannot be told
// from the snapshot's mounts, every snapshot's directory counts. root,
// when not "", is where the snapshot is mounted: on native, whose root
// is a bind mount of the snapshot's tree, a mount made in the root shows
// in the tree too when the tree's filesystem is a shared mount (systemd
// makes "/" one); such a mirror goes with the root's unmount and is not
// returned.
func (m *Manager) ForeignMounts(ctx context.Context, key, root string) ([]string, error) {
	done, err := m.use()
	if err != nil {
		return nil, err
	}
	defer done()
	dir, ms, err := m.foreignMounts(ctx, key)
	if err != nil || len(ms) == 0 || root == "" || m.kind != KindNative {
		return ms, err
	}
	inRoot, err := MountsUnder(root)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r // mount points are listed with symlinks resolved
	}
	var out []string
	for _, p := range ms {
		rel, err := filepath.Rel(dir, p)
		if err != nil || !slices.Contains(inRoot, filepath.Join(root, rel)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// foreignMounts returns the directory of snapshot key and the mounts
// inside it.
func (m *Manager) foreignMounts(ctx context.Context, key string) (string, []string, error) {
	all := filepath.Join(m.dir, "snapshots")
	dir := all
	if mounts, err := m.sn.Mounts(ctx, key); err == nil {
		if upper, _, ok := OverlayDirs(mounts); ok && upper != "" {
			dir = filepath.Dir(upper)
		} else if src, ok := BindSource(mounts); ok {
			dir = src // native: the snapshot's directory itself
			if filepath.Base(src) == "fs" {
				dir = filepath.Dir(src) // overlay without a parent: ID/fs
			}
		}
		if !within(dir, all) {
			dir = all
		}
	}
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	ms, err := MountsUnder(dir)
	return dir, ms, err
}

// refuseForeignMounts is ForeignMounts as an error.
func (m *Manager) refuseForeignMounts(ctx context.Context, key string) error {
	_, ms, err := m.foreignMounts(ctx, key)
	if err != nil {
		return err
	}
	if len(ms) > 0 {
		return &MountedError{What: fmt.Sprintf("the directory of snapshot %q", key), Mounts: ms, Unchanged: true}
	}
	return nil
}

// within says whether p lies strictly below dir.
func within(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
