package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
)

// TreeDir returns the directory holding the files of the committed
// snapshot key, for reading it directly (the native snapshotter's diff
// base, the image tree the exception lint inspects).
//
// On overlay the directory is derived from the snapshotter's own metadata
// (the snapshot's id) and hint is ignored. The native snapshotter keeps its
// metadata to itself and a committed snapshot has no Mounts, so there the
// caller's hint (the directory recorded when the snapshot was made) is
// used after checking that it is a snapshot directory of this snapshotter
// (<root>/snapshots/<id>, a real directory, not a link) and that key is
// committed. This is the one place spillway turns a snapshot into a path.
func (m *Manager) TreeDir(ctx context.Context, key, hint string) (string, error) {
	done, err := m.use()
	if err != nil {
		return "", err
	}
	defer done()
	info, err := m.sn.Stat(ctx, key)
	if err != nil {
		return "", fmt.Errorf("stat snapshot %q: %w", key, err)
	}
	if info.Kind != snapshots.KindCommitted {
		return "", fmt.Errorf("snapshot %q is not committed", key)
	}
	if m.ms != nil {
		var id string
		err := m.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
			var err error
			id, _, _, err = storage.GetInfo(ctx, key)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("snapshot %q: %w", key, err)
		}
		return filepath.Join(m.dir, "snapshots", id, "fs"), nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("snapshot %q: recorded directory %q %s (run spillway check)", key, hint, why)
	}
	// The ledger's hint may be forged (any host of a shared ledger can
	// write it): the snapshot's own label, when it has one, decides; a
	// hint naming the directory of an active snapshot (another sandbox's
	// live root) is never a committed snapshot's.
	if dir, ok := info.Labels[dirLabel]; ok {
		if hint != "" && hint != dir {
			return bad("is not this snapshot's directory " + dir)
		}
		hint = dir // recorded by this host's Commit: no hint needed
	} else if hint != "" {
		active := false
		m.sn.Walk(ctx, func(ctx context.Context, i snapshots.Info) error {
			if i.Kind != snapshots.KindActive {
				return nil
			}
			if mounts, err := m.sn.Mounts(ctx, i.Name); err == nil {
				if src, ok := BindSource(mounts); ok && filepath.Clean(src) == filepath.Clean(hint) {
					active = true
				}
			}
			return nil
		})
		if active {
			return bad("is the directory of an active snapshot")
		}
	}
	if hint == "" {
		return bad("is missing")
	}
	id := filepath.Base(hint)
	if _, err := strconv.ParseUint(id, 10, 64); err != nil || hint != filepath.Join(m.dir, "snapshots", id) {
		return bad("is not a snapshot directory of " + m.dir)
	}
	fi, err := os.Lstat(hint)
	if err != nil {
		return bad(err.Error())
	}
	if !fi.IsDir() {
		return bad("is not a directory")
	}
	return hint, nil
}
