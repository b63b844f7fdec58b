package hostile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/sparse"
	"golang.org/x/sys/unix"
)

// Writer writes into a tree by directory descriptors, under the same rules
// as the reader: every parent is opened one component at a time without
// following a symlink or crossing a mount (openat2 RESOLVE_NO_SYMLINKS, or
// openat O_NOFOLLOW), and the last component is created, replaced or
// removed with the *at calls on the parent's descriptor, never followed. A
// symlink on the way is ErrSymlink, a non-directory ErrNotDir: nothing is
// ever written where a link points.
type Writer struct {
	fd int
	// KeepDirs, for a tree that is not spillway's (an export's
	// destination on the host), makes WriteFile and Symlink fail with
	// ErrIsDir where a directory is, rather than remove it and all it
	// holds: the names come from a sandbox, the directory is a user's.
	// Mkdir then leaves the owner and mode of a directory that was there
	// before alone.
	KeepDirs bool
	made     map[string]bool // directories this writer created (KeepDirs)
}

// ErrNotDir says a component on the way to a path is not a directory.
var ErrNotDir = errors.New("hostile: a parent is not a directory")

// ErrIsDir says a directory is where a file or symlink was to be written
// (Writer.KeepDirs).
var ErrIsDir = errors.New("a directory is there, and is not replaced")

// NewWriter opens root for writing beneath it. root itself is not
// followed if it is a symlink (ErrSymlink): another user who may write in
// its parent could have swapped it for one since the caller checked it.
func NewWriter(root string) (*Writer, error) {
	root = filepath.Clean(root) // with a trailing slash, a symlink at root is followed
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOTDIR {
		var st unix.Stat_t
		if unix.Lstat(root, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, fmt.Errorf("hostile: open root %s: %w", root, ErrSymlink)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("hostile: open root %s: %w", root, err)
	}
	return &Writer{fd: fd}, nil
}

// Close releases the root's descriptor.
func (w *Writer) Close() error { return unix.Close(w.fd) }

// parent opens the directory holding path and returns it with the last
// name; the caller closes the descriptor.
func (w *Writer) parent(path string) (int, string, error) {
	if err := checkPath(path); err != nil {
		return -1, "", err
	}
	rel := path[1:]
	dir, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	if dir == "" {
		fd, err := unix.Dup(w.fd)
		return fd, name, err
	}
	fd, err := openat2(w.fd, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, "", writeErr(path, err)
	}
	return fd, name, nil
}

// MkdirAll creates each missing directory on the way to path (path
// included) with mode, never through a symlink.
func (w *Writer) MkdirAll(path string, mode uint32) error {
	if err := checkPath(path); err != nil {
		return err
	}
	cur, err := unix.Dup(w.fd)
	if err != nil {
		return err
	}
	defer func() { unix.Close(cur) }()
	for _, name := range strings.Split(path[1:], "/") {
		if err := unix.Mkdirat(cur, name, mode); err != nil && err != unix.EEXIST {
			return writeErr(path, err)
		}
		next, err := openat2(cur, name, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return writeErr(path, err)
		}
		unix.Close(cur)
		cur = next
	}
	return nil
}

// RemoveAll removes path and, for a directory, everything below it,
// without following any link; a missing path is not an error.
func (w *Writer) RemoveAll(path string) error {
	pfd, name, err := w.parent(path)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotDir) {
		return nil // nothing can be at path
	} else if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := removeAt(pfd, name); err != nil {
		return writeErr(path, err)
	}
	return nil
}

// removeAt removes name in dirfd and, for a directory, its subtree.
func removeAt(dirfd int, name string) error {
	var st unix.Stat_t
	if err := fstatat(dirfd, name, &st); err == unix.ENOENT {
		return nil
	} else if err != nil {
		return err
	}
	if !isDir(&st) {
		return ignoreENOENT(unix.Unlinkat(dirfd, name, 0))
	}
	fd, err := openat2(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	names, err := readNames(fd)
	for _, n := range names {
		if err == nil {
			err = removeAt(fd, n)
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return ignoreENOENT(unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR))
}

func ignoreENOENT(err error) error {
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// Mkdir makes path a directory with mode and owner: a non-directory there
// is removed first; an existing directory is kept with its contents.
func (w *Writer) Mkdir(path string, mode, uid, gid uint32) error {
	pfd, name, err := w.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := fstatat(pfd, name, &st); err == nil && !isDir(&st) {
		if err := removeAt(pfd, name); err != nil {
			return writeErr(path, err)
		}
	}
	err = unix.Mkdirat(pfd, name, 0o700)
	if err != nil && err != unix.EEXIST {
		return writeErr(path, err)
	}
	if w.KeepDirs {
		if err == nil {
			if w.made == nil {
				w.made = map[string]bool{}
			}
			w.made[path] = true
		} else if !w.made[path] {
			return nil // the host's directory: its owner and mode stay
		}
	}
	fd, err := openat2(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return writeErr(path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		return writeErr(path, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return writeErr(path, err)
	}
	return nil
}

// Symlink replaces whatever is at path with a symlink to target, owned by
// uid:gid. The target is stored as it is and never resolved.
func (w *Writer) Symlink(path, target string, uid, gid uint32) error {
	pfd, name, err := w.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := w.keepDir(pfd, name, path); err != nil {
		return err
	}
	if err := removeAt(pfd, name); err != nil {
		return writeErr(path, err)
	}
	if err := unix.Symlinkat(target, pfd, name); err != nil {
		return writeErr(path, err)
	}
	if err := unix.Fchownat(pfd, name, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return writeErr(path, err)
	}
	return nil
}

// WriteFile replaces whatever is at path with a new file holding src's
// bytes, with mode, owner and mtime. The bytes go to a fresh temporary
// name (O_CREAT|O_EXCL|O_NOFOLLOW) in the same directory, which is renamed
// over path only when src has ended without error: a failed copy (src's
// own check failing, say) leaves no file and no half-written one.
func (w *Writer) WriteFile(path string, src io.Reader, mode, uid, gid uint32, mtime time.Time) error {
	pfd, name, err := w.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := w.keepDir(pfd, name, path); err != nil {
		return err
	}
	tmp, fd, err := createTemp(pfd)
	if err != nil {
		return writeErr(path, err)
	}
	done := false
	defer func() {
		if !done {
			unix.Unlinkat(pfd, tmp, 0)
		}
	}()
	err = fill(fd, src, mode, uid, gid, mtime)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = writeErr(path, cerr)
	}
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := fstatat(pfd, name, &st); err == nil && isDir(&st) {
		if err := removeAt(pfd, name); err != nil {
			return writeErr(path, err)
		}
	}
	if err := unix.Renameat(pfd, tmp, pfd, name); err != nil {
		return writeErr(path, err)
	}
	done = true
	return nil
}

// keepDir refuses, under KeepDirs, to write over a directory at name.
func (w *Writer) keepDir(pfd int, name, path string) error {
	var st unix.Stat_t
	if w.KeepDirs && fstatat(pfd, name, &st) == nil && isDir(&st) {
		return fmt.Errorf("%w: %q", ErrIsDir, path)
	}
	return nil
}

// Chtimes sets path's mtime (and atime) without following a link at path.
func (w *Writer) Chtimes(path string, mtime time.Time) error {
	pfd, name, err := w.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(pfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return writeErr(path, err)
	}
	return nil
}

// tempPrefix starts the names of WriteFile's temporary files.
const tempPrefix = ".spillway-tmp-"

// isTempName says whether name is one createTemp gives.
func isTempName(name string) bool {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	return ok && len(rest) == 16 && strings.Trim(rest, "0123456789abcdef") == ""
}

// RemoveTemps removes from the directory at path ("/": the root) the
// temporary files a WriteFile killed on the way left there: regular files
// named as WriteFile names them, nothing else, nothing below.
func (w *Writer) RemoveTemps(path string) error {
	rel := "."
	if path != "/" {
		if err := checkPath(path); err != nil {
			return err
		}
		rel = path[1:]
	}
	fd, err := openat2(w.fd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return writeErr(path, err)
	}
	d := os.NewFile(uintptr(fd), path)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, name := range names {
		var st unix.Stat_t
		if isTempName(name) && fstatat(fd, name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if err := unix.Unlinkat(fd, name, 0); err != nil && err != unix.ENOENT {
				return writeErr(path, err)
			}
		}
	}
	return nil
}

// createTemp creates a new file of a random name in dirfd.
func createTemp(dirfd int) (string, int, error) {
	for {
		var b [8]byte
		rand.Read(b[:])
		name := tempPrefix + hex.EncodeToString(b[:])
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		switch err {
		case unix.EEXIST, unix.EINTR:
			continue
		case nil:
			return name, fd, nil
		}
		return "", -1, err
	}
}

// fill copies src into fd, then sets mode, owner and mtime on fd.
func fill(fd int, src io.Reader, mode, uid, gid uint32, mtime time.Time) error {
	buf := make([]byte, 128<<10)
	w := sparse.NewWriter(sparse.FD(fd)) // holes stay holes
	for {
		n, rerr := src.Read(buf)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := w.Finish(); err != nil {
		return err
	}
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return err
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(fd, "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH)
}

// writeErr says why path could not be written, with ErrSymlink for a link
// on the way and ErrNotDir for a file there.
func writeErr(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %q", ErrSymlink, path)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %q", ErrNotDir, path)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %q: %w", ErrNotFound, path, err)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %q crosses a mount point", ErrSpecial, path)
	case errors.Is(err, unix.ENAMETOOLONG):
		return fmt.Errorf("%w: %q", ErrTooDeep, path)
	}
	return fmt.Errorf("hostile: write %q: %w", path, err)
}
