package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// keepForRecovery moves what the close of sb's last session did not
// persist into the session's recovery directory, before the session's
// root is removed. On overlay it renames the upper directory (one rename,
// whatever it holds); on native it renames out of the root only the
// entries the manifest lists (a whole new directory at once). It is
// idempotent: a close, open or rm that finds a crashed close's root
// finishes the move first. A tree that cannot be moved (another
// filesystem, say) is left to the root's removal and reported. What a
// VM's stream had refused is merged in after (recover_vm.go).
func (e *Env) keepForRecovery(ctx context.Context, sb *store.Sandbox) error {
	err := e.keepRootForRecovery(ctx, sb)
	if merr := e.mergeVMRefused(sb); err == nil {
		err = merr
	}
	return err
}

// keepRootForRecovery is keepForRecovery for the session's root.
func (e *Env) keepRootForRecovery(ctx context.Context, sb *store.Sandbox) error {
	if sb.Snapshot == "" || sb.State != store.StateClosed || keepsNothing(retentionOf(sb)) {
		return nil
	}
	rs := e.loadSession(sb.Name, sb.Session)
	if !rs.hasInfo || rs.info.Entries == 0 {
		return nil // nothing refused or discarded, or no manifest to go by
	}
	tree := filepath.Join(rs.dir, treeDir)
	// The session's own key, whatever the (shared) ledger's row names.
	mounts, err := e.snap.Mounts(ctx, sessionKey(sb.Name, sb.Session))
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("root of %s: %w", sb.Name, err)
	}
	if upper, _, ok := snapshot.OverlayDirs(mounts); ok {
		if _, err := os.Lstat(tree); err == nil {
			return nil
		}
		if err := os.Rename(upper, tree); err != nil {
			e.warnf("the content of %s session %d is not recoverable: %v", sb.Name, sb.Session, err)
			return nil
		}
		syncDir(rs.dir)
		failpoint.Hit("close.recovery-moved")
		return nil
	}
	src, ok := snapshot.BindSource(mounts)
	if !ok {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(rs.dir, movedFile)); err == nil {
		return nil
	}
	if err := os.Mkdir(tree, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("recovery area of %s: %w", sb.Name, err)
	}
	if err := moveEntries(src, tree, filepath.Join(rs.dir, "manifest.jsonl"), ""); err != nil {
		e.warnf("some content of %s session %d is not recoverable: %v", sb.Name, sb.Session, err)
	}
	failpoint.Hit("close.recovery-moved")
	return writePrivate(rs.dir, movedFile, nil)
}

// moveEntries renames every entry the manifest lists (of verdict only,
// when set) from the root src into tree, at the same path, creating the
// directories on the way (0700). A new directory goes whole; entries below
// one already moved are skipped. Entries that are gone are skipped (a
// re-run after a crash).
func moveEntries(src, tree, manifestPath string, only change.Verdict) error {
	f, err := os.Open(manifestPath)
	if err != nil {
		return err
	}
	defer f.Close()
	srcfd, err := unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(srcfd)
	dstfd, err := unix.Open(tree, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dstfd)
	moved := map[string]bool{}
	var errs []error
	err = eachManifestEntry(f, func(x ManifestEntry) error {
		if x.Kind == change.KindDelete || !cleanAbs(x.Path) || (only != "" && x.Verdict != only) || under(moved, x.Path) {
			return nil
		}
		dir, name := path.Split(x.Path)
		sp, err := openDirs(srcfd, dir, false)
		if err != nil {
			return nil // gone, or not reachable without a link: nothing to keep
		}
		defer unix.Close(sp)
		dp, err := openDirs(dstfd, dir, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", x.Path, err))
			return nil
		}
		defer unix.Close(dp)
		if x.Type == change.TypeDir && x.Kind != change.KindAdd {
			// A directory that was one before too (its mode or owner
			// changed) or replaced a file: made here with its mode and
			// owner, which a restore reads back; its entries beneath are
			// entries of their own.
			err := unix.Mkdirat(dp, name, 0o700)
			if err == nil {
				err = copyDirMeta(sp, dp, name)
			}
			if err != nil && err != unix.EEXIST {
				errs = append(errs, fmt.Errorf("%q: %w", x.Path, err))
			}
			return nil
		}
		err = unix.Renameat2(sp, name, dp, name, unix.RENAME_NOREPLACE)
		switch {
		case err == nil:
			if x.Type == change.TypeDir {
				moved[x.Path] = true
			}
		case err == unix.ENOENT:
		case err == unix.EEXIST && x.Type == change.TypeDir:
			moved[x.Path] = true // moved by an earlier try
		case err == unix.EEXIST:
		default:
			errs = append(errs, fmt.Errorf("%q: %w", x.Path, err))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

// under says whether an ancestor of p is in moved.
func under(moved map[string]bool, p string) bool {
	if len(moved) == 0 {
		return false
	}
	for a := path.Dir(p); a != "/"; a = path.Dir(a) {
		if moved[a] {
			return true
		}
	}
	return false
}

// openDirs opens the directory dir ("/a/b/") beneath fd one component at
// a time, never following a symlink; create makes missing ones (0700).
// Any depth works: no path longer than one name is ever passed.
func openDirs(fd int, dir string, create bool) (int, error) {
	cur, err := unix.Dup(fd)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		if c == "" {
			continue
		}
		if create {
			if err := unix.Mkdirat(cur, c, 0o700); err != nil && err != unix.EEXIST {
				unix.Close(cur)
				return -1, err
			}
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// copyDirMeta gives the directory name in dst the mode (DirModeBits) and
// owner of the directory name in src, never following a link. Not as
// root, the owner keeps its own rwx: the entries beneath still have to
// be moved in.
func copyDirMeta(src, dst int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil // replaced meanwhile: keep the 0700 directory
	}
	mode := st.Mode & DirModeBits
	if unix.Geteuid() == 0 {
		if err := unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	} else {
		mode |= 0o700
	}
	return unix.Fchmodat(dst, name, mode, 0)
}
