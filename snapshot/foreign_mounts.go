package snapshot

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
)

// MountedError refuses to remove or read a snapshot's directory while
// something is mounted inside it: spillway never mounts there, so a host
// user or program did, and a removal would delete what that mount shows
// (rm -rf --one-file-system crosses a bind mount of the same filesystem,
// and the snapshotters' removal crosses any).
type MountedError struct {
	What      string   // e.g. `the directory of snapshot "sbx/docs/3"`
	Mounts    []string // the mount points, sorted
	On        bool     // the mounts lie on top of What, not inside it
	Unchanged bool     // the command changed nothing before it refused
}

func (e *MountedError) Error() string {
	what := fmt.Sprintf("%s holds %s not spillway's", e.What, plural(len(e.Mounts), "a mount", "mounts"))
	if e.On {
		what = fmt.Sprintf("%s not spillway's %s on top of %s", plural(len(e.Mounts), "a mount", "mounts"), plural(len(e.Mounts), "lies", "lie"), e.What)
	}
	msg := fmt.Sprintf("%s: %s; unmount %s (umount PATH), then run the command again",
		what, strings.Join(e.Mounts, ", "), plural(len(e.Mounts), "it", "them"))
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
// mount made there by someone else. A snapshot whose directory cannot be
// told (a committed one on native) has none. root, when not "", is where
// the snapshot is mounted: on native, whose root is a bind mount of the
// snapshot's tree, a mount made in the root shows in the tree too when
// the tree's filesystem is a shared mount (systemd makes "/" one); such a
// mirror goes with the root's unmount and is not returned.
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
// inside it ("" and none when the directory cannot be told).
func (m *Manager) foreignMounts(ctx context.Context, key string) (string, []string, error) {
	dir := m.snapshotDir(ctx, key)
	if dir == "" {
		return "", nil, nil
	}
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	ms, err := MountsUnder(dir)
	return dir, ms, err
}

// snapshotDir returns the directory of snapshot key in the snapshotter's
// root: from its id in the metadata on overlay (any kind of snapshot),
// from its bind mount's source on native (active snapshots and views);
// "" when it cannot be told or lies elsewhere.
func (m *Manager) snapshotDir(ctx context.Context, key string) string {
	all := filepath.Join(m.dir, "snapshots")
	var dir string
	if m.ms != nil {
		var id string
		if err := m.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
			var err error
			id, _, _, err = storage.GetInfo(ctx, key)
			return err
		}); err == nil && id != "" {
			dir = filepath.Join(all, id)
		}
	} else if mounts, err := m.sn.Mounts(ctx, key); err == nil {
		if src, ok := BindSource(mounts); ok {
			dir = src
		}
	}
	if dir == "" || !within(dir, all) || filepath.Dir(dir) != all {
		return ""
	}
	return dir
}

// refuseForeignMounts is ForeignMounts as an error.
func (m *Manager) refuseForeignMounts(ctx context.Context, key string) error {
	_, ms, err := m.foreignMounts(ctx, key)
	if err != nil {
		return err
	}
	if len(ms) > 0 {
		return &MountedError{What: fmt.Sprintf("the directory of snapshot %q", key), Mounts: ms}
	}
	return nil
}

// within says whether p lies strictly below dir.
func within(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// StackedOn returns the mounts stacked on top of the first mount at
// target (mount -t tmpfs none ROOT over an open root), each described as
// "FSTYPE SOURCE at TARGET": what is written there goes to that mount,
// not the sandbox, and an unmount of the root would take it away unseen.
func StackedOn(target string) ([]string, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) { return m.Mountpoint != abs, false })
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	var out []string
	for i, mi := range infos {
		if i > 0 { // the first listed is the bottom one: the sandbox's
			out = append(out, fmt.Sprintf("%s %s at %s", mi.FSType, mi.Source, mi.Mountpoint))
		}
	}
	return out, nil
}
