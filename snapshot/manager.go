// Package snapshot keeps images and sandbox roots on containerd's
// snapshotters: import, prepare, mount, commit, remove.
//
// containerd's snapshotters are used as a library, without a daemon. Each
// keeps its own bolt database (<dir>/metadata.db), which one process at a
// time may hold: a command opens a Manager, works, and closes it. An open
// sandbox holds its mount, not the database.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The snapshotter kinds, as named by --snapshotter.
const (
	KindOverlay = "overlayfs"
	KindNative  = "native"
)

// Manager is one open snapshotter. It holds the snapshotter's database lock
// from Open to Close.
type Manager struct {
	dir  string
	kind string
	sn   snapshots.Snapshotter
	ms   *storage.MetaStore // overlay only: the snapshotter's metadata, read by TreeDir

	// Parking (park.go): the database may be closed between uses.
	timeout time.Duration
	gate    sync.RWMutex // held shared by a use, exclusively to park or reopen
	parked  bool
	closed  bool
	enter   func() error // run before a parked Manager reopens (takes the ledger lock)
}

// Open opens the snapshotter of the given kind rooted at dir (the caller
// passes <state>/snapshots/<kind>), creating dir when missing. It takes the
// snapshotter's database lock at once, waiting at most timeout for another
// process that holds it (timeout 0 waits forever, as bolt does), so a busy
// database fails here with a clear error instead of hanging later.
func Open(ctx context.Context, dir, kind string, timeout time.Duration) (*Manager, error) {
	if dir == "" {
		return nil, errors.New("snapshots: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	sn, ms, err := openSnapshotter(ctx, abs, kind, timeout)
	if err != nil {
		return nil, err
	}
	return &Manager{dir: abs, kind: kind, sn: sn, ms: ms, timeout: timeout}, nil
}

// openSnapshotter opens the snapshotter of kind in abs and its database,
// and on overlay its metadata store.
func openSnapshotter(ctx context.Context, abs, kind string, timeout time.Duration) (snapshots.Snapshotter, *storage.MetaStore, error) {
	dbfile := filepath.Join(abs, "metadata.db")
	withTimeout := func(o *bolt.Options) error {
		o.Timeout = timeout
		return nil
	}

	var sn snapshots.Snapshotter
	var overlayMeta *storage.MetaStore
	switch kind {
	case KindOverlay:
		ms, err := storage.NewMetaStore(dbfile, withTimeout)
		if err != nil {
			return nil, nil, fmt.Errorf("snapshots: %w", err)
		}
		// The metastore opens bolt lazily; open it now.
		if err := ms.WithTransaction(ctx, false, func(context.Context) error { return nil }); err != nil {
			ms.Close()
			return nil, nil, dbError(dbfile, timeout, err)
		}
		overlayMeta = ms
		sn, err = overlay.NewSnapshotter(abs,
			overlay.WithMountOptions(overlayOptions),
			overlay.WithMetaStore(ms),
			overlay.AsynchronousRemove) // Remove cleans up itself, or defers it (RemoveDeferred)
		if err != nil {
			ms.Close()
			return nil, nil, fmt.Errorf("snapshots: overlayfs snapshotter on %s: %w", abs, err)
		}
	case KindNative:
		// The native snapshotter opens bolt without a timeout. Probe the
		// lock first so that the usual case, another process holding
		// it, fails after timeout rather than hanging. (A race between
		// the probe and the real open is covered by the callers'
		// spillway-wide lock.)
		db, err := bolt.Open(dbfile, 0o600, &bolt.Options{Timeout: timeout})
		if err != nil {
			return nil, nil, dbError(dbfile, timeout, err)
		}
		if err := db.Close(); err != nil {
			return nil, nil, dbError(dbfile, timeout, err)
		}
		sn, err = native.NewSnapshotter(abs)
		if err != nil {
			return nil, nil, fmt.Errorf("snapshots: native snapshotter on %s: %w", abs, err)
		}
		// Open the database now (a new one has no buckets yet: fine).
		if err := sn.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }); err != nil && !errdefs.IsNotFound(err) {
			sn.Close()
			return nil, nil, dbError(dbfile, timeout, err)
		}
	default:
		return nil, nil, fmt.Errorf("snapshots: unknown snapshotter %q (want %s or %s)", kind, KindOverlay, KindNative)
	}
	return sn, overlayMeta, nil
}
func dbError(dbfile string, timeout time.Duration, err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("snapshots: database %s is in use by another process (waited %s): %w", dbfile, timeout, err)
	}
	return fmt.Errorf("snapshots: opening database %s: %w", dbfile, err)
}

// Kind returns KindOverlay or KindNative.
func (m *Manager) Kind() string { return m.kind }

// Dir returns the snapshotter's root directory.
func (m *Manager) Dir() string { return m.dir }

// Close releases the snapshotter and its database. It is safe to call more
// than once.
func (m *Manager) Close() error {
	m.gate.Lock()
	defer m.gate.Unlock()
	m.closed = true
	if m.parked {
		return nil
	}
	m.parked = true
	return m.sn.Close()
}

// Prepare creates the active (writable) snapshot key on parent ("" for
// none) and returns how to mount it.
func (m *Manager) Prepare(ctx context.Context, key, parent string) ([]mount.Mount, error) {
	done, err := m.use()
	if err != nil {
		return nil, err
	}
	defer done()
	mounts, err := m.sn.Prepare(ctx, key, parent)
	if m.orphanInTheWay(ctx, err) {
		mounts, err = m.sn.Prepare(ctx, key, parent)
	}
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot %q: %w", key, err)
	}
	return mounts, nil
}

// orphanInTheWay says whether err is the overlay snapshotter finding a
// directory where it renames a new snapshot's, and if so removes the
// directories no snapshot owns (Cleanup). A process killed after that
// rename and before its metadata transaction committed leaves the
// directory of an id the next snapshot is given again: every later
// prepare failed with "file exists" (found by the random-kill test).
// The caller holds the snapshotter alone (the ledger lock), so no
// other process's snapshot is half-made.
func (m *Manager) orphanInTheWay(ctx context.Context, err error) bool {
	if err == nil || !errors.Is(err, fs.ErrExist) || errdefs.IsAlreadyExists(err) {
		return false
	}
	return m.Cleanup(ctx) == nil
}

// View creates a read-only snapshot key on parent and returns how to mount
// it. Cheap on overlay (a read-only bind of the parent); the native
// snapshotter copies the whole parent.
func (m *Manager) View(ctx context.Context, key, parent string) ([]mount.Mount, error) {
	done, err := m.use()
	if err != nil {
		return nil, err
	}
	defer done()
	mounts, err := m.sn.View(ctx, key, parent)
	if m.orphanInTheWay(ctx, err) {
		mounts, err = m.sn.View(ctx, key, parent)
	}
	if err != nil {
		return nil, fmt.Errorf("view snapshot %q: %w", key, err)
	}
	return mounts, nil
}

// Mounts returns how to mount the active or view snapshot key.
func (m *Manager) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	done, err := m.use()
	if err != nil {
		return nil, err
	}
	defer done()
	mounts, err := m.sn.Mounts(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %q: %w", key, err)
	}
	return mounts, nil
}

// Commit turns the active snapshot key into the committed snapshot name.
// The snapshot must not be mounted any more.
func (m *Manager) Commit(ctx context.Context, name, key string) error {
	done, err := m.use()
	if err != nil {
		return err
	}
	defer done()
	var opts []snapshots.Opt
	if m.ms == nil {
		// Native: record the snapshot's own directory in its labels (in
		// this host's snapshotter, not the shared ledger), so TreeDir can
		// tell it from a directory hint the ledger names.
		if mounts, err := m.sn.Mounts(ctx, key); err == nil {
			if dir, ok := BindSource(mounts); ok {
				opts = append(opts, snapshots.WithLabels(map[string]string{dirLabel: dir}))
			}
		}
	}
	if err := m.sn.Commit(ctx, name, key, opts...); err != nil {
		return fmt.Errorf("commit snapshot %q as %q: %w", key, name, err)
	}
	return nil
}

// dirLabel labels a native committed snapshot with its directory.
const dirLabel = "spillway.dir"

// Remove removes the snapshot key and its files. A snapshot that does not
// exist is not an error; one with children is.
func (m *Manager) Remove(ctx context.Context, key string) error {
	done, err := m.use()
	if err != nil {
		return err
	}
	defer done()
	if err := m.refuseForeignMounts(ctx, key); err != nil {
		return err
	}
	if err := m.sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	return m.Cleanup(ctx)
}

// Cleanup deletes the directories of removed snapshots (the overlay
// snapshotter removes asynchronously: metadata first, directories here).
func (m *Manager) Cleanup(ctx context.Context) error {
	done, err := m.use()
	if err != nil {
		return err
	}
	defer done()
	if ms, err := MountsUnder(filepath.Join(m.dir, "snapshots")); err != nil || len(ms) > 0 {
		// A removed snapshot's directory may hold one of these mounts, and
		// the snapshotter's cleanup would delete what it shows: its
		// directories wait for a cleanup without foreign mounts.
		return err
	}
	if c, ok := m.sn.(snapshots.Cleaner); ok {
		// A brand-new database has no buckets yet: nothing to clean.
		if err := c.Cleanup(ctx); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("clean up removed snapshots: %w", err)
		}
	}
	return nil
}

// RemoveDeferred removes the active snapshot key but leaves deleting its
// files to a detached `rm -rf` of trash/<id>: on overlay the snapshot's
// directory is renamed into trash (same filesystem: a rename) once the
// snapshot is gone from the metadata, so a close need not wait for every
// discarded file to be unlinked. A crash leaves the directory in the
// snapshotter's root or in trash; Cleanup and gc delete both. On native it
// is Remove.
func (m *Manager) RemoveDeferred(ctx context.Context, key, trash string) error {
	done, err := m.use()
	if err != nil {
		return err
	}
	defer done()
	mounts, err := m.sn.Mounts(ctx, key)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err := m.refuseForeignMounts(ctx, key); err != nil {
		return err
	}
	upper, _, ok := OverlayDirs(mounts)
	if err != nil || !ok || m.kind != KindOverlay {
		return m.Remove(ctx, key)
	}
	dir := filepath.Dir(upper)
	if filepath.Dir(dir) != filepath.Join(m.dir, "snapshots") {
		return m.Remove(ctx, key)
	}
	if err := m.sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return err
	}
	dst := filepath.Join(trash, filepath.Base(dir))
	if err := os.Rename(dir, dst); err != nil {
		return m.Cleanup(ctx)
	}
	rm := exec.Command("rm", "-rf", "--one-file-system", "--", dst)
	rm.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := rm.Start(); err != nil {
		return os.RemoveAll(dst)
	}
	return rm.Process.Release()
}

// Exists reports whether the snapshot key exists (active, view or
// committed).
func (m *Manager) Exists(ctx context.Context, key string) (bool, error) {
	done, err := m.use()
	if err != nil {
		return false, err
	}
	defer done()
	_, err = m.sn.Stat(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errdefs.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("stat snapshot %q: %w", key, err)
	}
}

// Info describes a snapshot: see containerd's snapshots.Info (Name, Parent,
// Kind, Created, Updated, Labels).
type Info = snapshots.Info

// Stat returns the info of snapshot key; a missing key gives an error
// matching errdefs.ErrNotFound.
func (m *Manager) Stat(ctx context.Context, key string) (Info, error) {
	done, err := m.use()
	if err != nil {
		return Info{}, err
	}
	defer done()
	info, err := m.sn.Stat(ctx, key)
	if err != nil {
		return Info{}, fmt.Errorf("stat snapshot %q: %w", key, err)
	}
	return info, nil
}

// Keys returns every snapshot key, sorted.
func (m *Manager) Keys(ctx context.Context) ([]string, error) {
	done, err := m.use()
	if err != nil {
		return nil, err
	}
	defer done()
	var keys []string
	if err := m.sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	}); err != nil && !errdefs.IsNotFound(err) { // a new database has no buckets yet
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	slices.Sort(keys)
	return keys, nil
}
