package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// A VM without a shared file system sends its changes as a stream that the
// host applies to the upper layer when the VM ends; entries it refuses
// there (a device, a setuid file, a bad parent…) never reach the upper
// layer. They are staged in <root>/recovery/<sandbox>/vm-<session>/
// (manifest.jsonl, and tree/ with the content of refused files) and the
// close of that session merges them into the session's recovery directory.

// VMRefusal is an entry of a VM's changes stream the host refused.
type VMRefusal struct {
	Path   string // clean, absolute
	Type   change.FileType
	Size   int64
	Reason string
}

func (e *Env) vmStageDir(sandbox string, session uint64) string {
	return filepath.Join(e.recoveryDir(), sandbox, "vm-"+strconv.FormatUint(session, 10))
}

// KeepVMRefused stages refused stream entries of open (or closing: a rescue
// run by close --force) sandbox name for its
// session's recovery directory; keep holds the content of refused files at
// their paths (vm.MaterialiseKeeping), moved from there. Entries whose
// path is not clean are not staged (they have no place to go).
func (e *Env) KeepVMRefused(ctx context.Context, name string, refused []VMRefusal, keep string) error {
	if err := e.lockSandbox(name); err != nil {
		return err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		return err
	}
	if sb.State != store.StateOpen && sb.State != store.StateClosing {
		return fmt.Errorf("sandbox %s is %s: a VM's refused changes go with an open session", name, sb.State)
	}
	if keepsNothing(retentionOf(sb)) || len(refused) == 0 {
		return nil
	}
	dir := e.vmStageDir(name, sb.Session)
	if !stagedFor(dir, sb) {
		// Left by a sandbox of the same name that was removed while open.
		if err := e.trashStaged(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, d := range []string{e.recoveryDir(), filepath.Dir(dir), dir, filepath.Join(dir, treeDir)} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("recovery area of %s: %w", name, err)
		}
	}
	if err := writePrivate(dir, stageOwner, []byte(sb.Snapshot)); err != nil {
		return err
	}
	var buf []byte
	for _, r := range refused {
		if !cleanAbs(r.Path) {
			continue
		}
		x := ManifestEntry{Path: r.Path, PathBytes: exactBytes(r.Path), Kind: change.KindAdd, Type: r.Type, Size: r.Size,
			Verdict: change.VerdictRefuse, Reason: "vm-stream: " + r.Reason}
		buf = append(x.appendJSON(buf), '\n')
	}
	man := filepath.Join(dir, "manifest.jsonl")
	if err := appendPrivate(man, buf); err != nil {
		return err
	}
	if keep == "" {
		return nil
	}
	return moveEntries(keep, filepath.Join(dir, treeDir), man, "")
}

// mergeVMRefused moves what VMs of sb's last session staged into the
// session's recovery directory, after close wrote it: the manifest lines
// (but for a path the session's tree already holds: that content is not
// the refused one), the content, and the counts of info.json.
func (e *Env) mergeVMRefused(sb *store.Sandbox) error {
	staged := e.vmStageDir(sb.Name, sb.Session)
	if _, err := os.Lstat(staged); err != nil || sb.State != store.StateClosed {
		return nil
	}
	if keepsNothing(retentionOf(sb)) || !stagedFor(staged, sb) {
		return e.trashStaged(staged)
	}
	rs := e.loadSession(sb.Name, sb.Session)
	tree, stagedTree := filepath.Join(rs.dir, treeDir), filepath.Join(staged, treeDir)
	for _, d := range []string{rs.dir, tree} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	f, err := os.Open(filepath.Join(staged, "manifest.jsonl"))
	if err != nil {
		return e.trashStaged(staged)
	}
	var lines []byte
	var n, kept, disk int64
	err = eachManifestEntry(f, func(x ManifestEntry) error {
		if existsBeneath(tree, x.Path) {
			return nil
		}
		if fi, err := os.Lstat(filepath.Join(stagedTree, x.Path)); err == nil && x.Type == change.TypeFile {
			kept += x.Size
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				disk += st.Blocks * 512 // what it takes: a sparse file its blocks
			} else {
				disk += x.Size
			}
		}
		n++
		lines = append(x.appendJSON(lines), '\n')
		return nil
	})
	f.Close()
	if err != nil {
		return err
	}
	if err := moveEntries(stagedTree, tree, filepath.Join(staged, "manifest.jsonl"), ""); err != nil {
		e.warnf("some refused content of %s's VM is not recoverable: %v", sb.Name, err)
	}
	if err := appendPrivate(filepath.Join(rs.dir, "manifest.jsonl"), lines); err != nil {
		return err
	}
	info := rs.info
	if !rs.hasInfo {
		info.Closed, info.Snapshotter = e.Now(), e.snap.Kind()
	}
	info.Entries, info.Refused = info.Entries+n, info.Refused+n
	info.addBytes(kept, disk)
	if err := e.writeSessionInfo(sb.Name, sb.Session, info); err != nil {
		return err
	}
	return e.trashStaged(staged)
}

// appendPrivate appends data to a file of the area (0600), never through a
// symlink, flushed.
func appendPrivate(p string, data []byte) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// existsBeneath says whether p names something beneath root (the session's
// tree: on overlay the guest's former upper directory), never following a
// link on the way; a link there counts as something.
func existsBeneath(root, p string) bool {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	f, err := unix.Openat2(fd, strings.TrimPrefix(p, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err == nil {
		unix.Close(f)
		return true
	}
	return err != unix.ENOENT && err != unix.ENOTDIR
}

// trashStaged has a detached rm delete a staging directory.
func (e *Env) trashStaged(dir string) error {
	if err := os.MkdirAll(e.TrashDir(), 0o700); err != nil {
		return err
	}
	return e.trash(dir)
}

// stageOwner names the file of a staging directory that holds the snapshot
// key of the session root it was staged for.
const stageOwner = "snapshot"

// stagedFor says whether staging directory dir (or none) belongs to sb's
// current session root.
func stagedFor(dir string, sb *store.Sandbox) bool {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return true
	}
	b, err := readPrivate(filepath.Join(dir, stageOwner))
	return err == nil && string(b) == sb.Snapshot
}
