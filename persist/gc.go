package persist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Freed is what gc removed.
type Freed struct {
	Blobs         []string // digests no record keeps
	BlobBytes     int64
	Snapshots     []string // keys the store does not account for
	TempFiles     []string // leftovers under blobs/tmp and tmp, relative to the root
	TempBytes     int64
	ValueLogFiles int     // badger value-log files rewritten
	Recovery      Dropped // what the recovery area no longer keeps (expired, or over the cap)
}

// GC squashes deep chains of persisted layers (layer_squash.go), evicts
// the layer caches a host of a shared ledger used least (layer_cache.go), removes
// the blobs no record keeps, the snapshots the store does not
// account for and the temp files crashed commands left, then runs badger's
// value-log GC. It appends a "gc" audit entry saying what it freed.
func (e *Env) GC(ctx context.Context) (*Freed, error) {
	if err := e.Exclusive(); err != nil {
		return nil, err
	}
	if !e.blobs.marked() {
		// NewBlobs marked it; someone removed the marker since, or the
		// directory is read-only.
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "blob directory %s has no %s file: gc removes nothing there (a command run with it writable marks a blob store)", e.blobs.dir, blobMarker)
	}
	if e.sharedLedger() && e.ledgerID == "" {
		// A root made before ledger ids, which this ledger does not know:
		// marked from a ledger that is not the root's, gc would free
		// every blob of a shared directory.
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "the state directory %s has not recorded its ledger (%s): gc frees the blobs no record of the ledger names, so it runs only on the root's own; if --store names it, run spillway fleet init first", e.root, ledgerIDFile)
	}
	finished, err := e.finishRemovals(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range finished {
		e.warnf("finished the removal of sandbox %s, which an interrupted rm had left", n)
	}
	if err := e.gcLockFiles(); err != nil {
		return nil, err
	}
	if err := e.squashChains(ctx); err != nil {
		return nil, err
	}
	f := &Freed{}
	evicted, err := e.evictLayerCaches(ctx)
	if err != nil {
		return nil, err
	}
	f.Snapshots = evicted
	x, err := e.loadExpected(ctx)
	if err != nil {
		return nil, err
	}
	if f.Recovery, err = e.ExpireRecovery(); err != nil {
		return f, err
	}
	if err := e.gcSnapshots(ctx, x, f); err != nil {
		return f, err
	}
	if err := e.gcBlobs(ctx, x, f); err != nil {
		return f, err
	}
	if err := e.gcVMRuns(f); err != nil {
		return f, err
	}
	if err := e.gcTemp(f); err != nil {
		return f, err
	}
	e.gcMountDirs(x)
	if err := e.snap.Cleanup(ctx); err != nil {
		return f, err
	}
	if err := e.store.Update(func(tx *store.Tx) error {
		details := map[string]string{
			"blobs": fmt.Sprint(len(f.Blobs)), "blob_bytes": fmt.Sprint(f.BlobBytes),
			"snapshots": fmt.Sprint(len(f.Snapshots)), "temp_files": fmt.Sprint(len(f.TempFiles)),
			"temp_bytes": fmt.Sprint(f.TempBytes),
		}
		if r := f.Recovery; r.Sessions+r.Discarded > 0 {
			details["recovery_sessions"], details["recovery_bytes"] = fmt.Sprint(r.Sessions), fmt.Sprint(r.Bytes)
		}
		_, err := tx.Append(e.Now(), "gc", "", details)
		return err
	}); err != nil {
		return f, err
	}
	failpoint.Hit("gc.committed")
	n, err := e.store.GC()
	f.ValueLogFiles = n
	return f, err
}

// gcSnapshots removes stray snapshots, children before parents. A stray
// with a child the store needs stays (check reports it).
func (e *Env) gcSnapshots(ctx context.Context, x *expected, f *Freed) error {
	keys, err := e.snap.Keys(ctx)
	if err != nil {
		return err
	}
	parent := map[string]string{}
	for _, k := range keys {
		info, err := e.snap.Stat(ctx, k)
		if err != nil {
			return err
		}
		parent[k] = info.Parent
	}
	depth := func(k string) int {
		n := 0
		for p := parent[k]; p != "" && n < len(keys); p = parent[p] {
			n++
		}
		return n
	}
	var strays []string
	for _, k := range keys {
		if _, ok := x.snapshots[k]; !ok {
			strays = append(strays, k)
		}
	}
	sort.SliceStable(strays, func(i, j int) bool { return depth(strays[i]) > depth(strays[j]) })
	kept := map[string]bool{} // snapshots that stay, whose parents must stay too
	for _, k := range keys {
		if _, ok := x.snapshots[k]; ok {
			for p := k; p != "" && !kept[p]; p = parent[p] {
				kept[p] = true
			}
		}
	}
	for _, k := range strays {
		if kept[k] {
			continue
		}
		if err := e.snap.Remove(ctx, k); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		f.Snapshots = append(f.Snapshots, k)
		failpoint.Hit("gc.snapshot-removed")
	}
	return nil
}

// SharedBlobGrace is how old an unreferenced blob (or temporary file) of a
// blob directory shared by several hosts must be before gc removes it:
// another host writes its blobs before its close commits the records that
// name them, and a close takes minutes at most.
const SharedBlobGrace = 24 * time.Hour

// gcBlobs removes the blobs no record keeps: regular files named as
// spillway names blobs (GC checked the directory carries the store's
// marker), never anything else, each looked at and removed by a
// descriptor of sha256/ (never through a symlink swapped in for it).
func (e *Env) gcBlobs(ctx context.Context, x *expected, f *Freed) error {
	d, err := e.blobs.openSubdir("sha256")
	if err != nil {
		return err
	}
	defer d.Close()
	var tmp *os.File // shared: blobs are removed by way of tmp/ (gcBlobAside)
	if e.blobsShared {
		if tmp, err = e.blobs.openSubdir("tmp"); err != nil {
			return err
		}
		defer tmp.Close()
		if err := e.blobs.restoreAside(d, tmp, ""); err != nil {
			e.warnf("gc: a blob left aside in %s could not be put back: %v", tmp.Name(), err)
		}
	}
	all, err := e.blobs.List()
	if err != nil {
		return err
	}
	lostKeep, lost, err := e.lostCommitBlobs()
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		e.warnf("gc keeps the blobs of what closes of this host persisted and the ledger does not show (%s): the ledger lost those commits; spillway close SANDBOX --abandon --reason TEXT keeps their files in the recovery area", lostCommitsHint(lost))
	}
	for _, dg := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := x.blobs[dg]; ok || lostKeep[dg] {
			continue
		}
		name := strings.TrimPrefix(dg, "sha256:")
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
			st.Mode&unix.S_IFMT != unix.S_IFREG || e.tooYoungAt(st) {
			continue
		}
		if testHookGCBlob != nil {
			testHookGCBlob("checked", name)
		}
		if tmp != nil {
			removed, err := e.gcBlobAside(d, tmp, name)
			if err != nil {
				return err
			}
			if !removed {
				continue
			}
		} else if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "remove", Path: filepath.Join(d.Name(), name), Err: err}
		}
		f.Blobs = append(f.Blobs, dg)
		f.BlobBytes += st.Size
		failpoint.Hit("gc.blob-removed")
	}
	return nil
}

// tooYoungAt says whether gc must leave alone the file fstatat
// described: in a shared blob directory, anything changed within
// SharedBlobGrace may belong to a close under way on another host.
func (e *Env) tooYoungAt(st unix.Stat_t) bool {
	return e.blobsShared && e.Now().Sub(time.Unix(st.Mtim.Sec, st.Mtim.Nsec)) < SharedBlobGrace
}

// gcTemp removes what crashed commands left under blobs/tmp and tmp. It
// never removes a mount point or a directory holding one. In the blob
// directory's tmp/ (which --blobs may put on a filesystem others use) it
// removes only regular files named as spillway names its temporary files
// there (isBlobTempName), by a descriptor of tmp/ (never through a
// symlink swapped in for it).
func (e *Env) gcTemp(f *Freed) error {
	mounts, err := snapshot.MountsUnder(e.root)
	if err != nil {
		return err
	}
	if err := e.gcBlobTemp(f, mounts); err != nil {
		return err
	}
	root := resolved(e.root) // mount points are listed with symlinks resolved
	for _, dir := range []string{filepath.Join(root, "tmp"), filepath.Join(root, "trash")} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ent := range entries {
			p := filepath.Join(dir, ent.Name())
			if holdsMount(p, mounts) {
				continue
			}
			size := treeSize(p)
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil || strings.HasPrefix(rel, "..") {
				rel = p
			}
			f.TempFiles = append(f.TempFiles, rel)
			f.TempBytes += size
		}
	}
	return nil
}

// gcBlobTemp removes the old temporary files of the blob directory's
// tmp/, named relative to the root when the blob directory is the
// root's own.
func (e *Env) gcBlobTemp(f *Freed, mounts []string) error {
	d, err := e.blobs.openSubdir("tmp")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	root := resolved(e.root)
	dir := filepath.Join(resolved(e.blobs.dir), "tmp")
	for _, ent := range entries {
		name := ent.Name()
		if !isBlobTempName(name) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
			st.Mode&unix.S_IFMT != unix.S_IFREG || e.tooYoungAt(st) {
			continue
		}
		p := filepath.Join(dir, name)
		if holdsMount(p, mounts) {
			continue
		}
		if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "remove", Path: p, Err: err}
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = p // the shared blob directory is outside the root
		}
		f.TempFiles = append(f.TempFiles, rel)
		f.TempBytes += st.Size
	}
	return nil
}

func holdsMount(p string, mounts []string) bool {
	for _, m := range mounts {
		if m == p || strings.HasPrefix(m, p+"/") {
			return true
		}
	}
	return false
}

// treeSize sums the sizes of the regular files under p, never following
// symlinks.
func treeSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// resolved returns p with its symlinks resolved, or p when that fails.
func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// gcMountDirs removes the empty mount points under mnt/ that no sandbox
// open on this host uses (left by a session another host's eviction and
// rm ended, whose snapshot gcSnapshots removed). rmdir removes nothing
// but an empty directory; a mounted one is busy and stays.
func (e *Env) gcMountDirs(x *expected) {
	entries, err := os.ReadDir(e.mntDir())
	if err != nil {
		return
	}
	for _, ent := range entries {
		p := filepath.Join(e.mntDir(), ent.Name())
		if !ent.IsDir() || x.mounts[resolved(p)] {
			continue
		}
		unix.Rmdir(p)
	}
}
