package hostile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/sandboxpath"
)

// File is a regular file of a hostile tree opened for reading by OpenFile.
// It reads at most limit+1 bytes and never more than the size seen at
// open plus one.
type File struct {
	fd    int
	st    unix.Stat_t
	limit int64
	n     int64 // bytes read so far
	err   error // sticky error of Read
}

// OpenFile opens path (a clean absolute path as given in a Change) beneath
// root, never following a symlink in any component and never crossing a
// mount, and checks the descriptor before anything is read: a regular file
// (else ErrSymlink for a link, ErrSpecial for anything else), size <= limit
// (ErrTooLarge), and the device and inode of want when want.Ino != 0
// (ErrChanged). A file of several links is read like any other: its bytes
// are copied, never its inode. A missing file is ErrNotFound, a
// path too long for the host ErrTooDeep.
//
// It first opens the file O_PATH (which runs no driver code, so a planted
// device node is never opened), checks it, then opens it for reading with
// openat2 (O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC, same resolve
// flags) and checks that the second open found the same inode.
func OpenFile(root, path string, want Change, limit int64) (*File, error) {
	rootfd, dir, name, err := splitOpen(root, path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	parent := rootfd
	if dir != "" {
		if parent, err = openat2(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY); err != nil {
			return nil, pathErr(path, err)
		}
		defer unix.Close(parent)
	}
	pfd, err := openat2(parent, name, unix.O_PATH)
	if err != nil {
		return nil, pathErr(path, err)
	}
	var st unix.Stat_t
	err = fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return nil, fmt.Errorf("hostile: stat %q: %w", path, err)
	}
	if err := check(path, &st, want, limit); err != nil {
		return nil, err
	}
	fd, err := openat2(parent, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, pathErr(path, err)
	}
	f := &File{fd: fd, limit: limit}
	if err := fstat(fd, &f.st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hostile: stat %q: %w", path, err)
	}
	if f.st.Dev != st.Dev || f.st.Ino != st.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %q was replaced while opening", ErrChanged, path)
	}
	if err := check(path, &f.st, want, limit); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return f, nil
}

func check(path string, st *unix.Stat_t, want Change, limit int64) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return fmt.Errorf("%w: %q", ErrSymlink, path)
	default:
		return fmt.Errorf("%w: %q is a %s", ErrSpecial, path, typeOf(st.Mode))
	}
	if st.Size > limit {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrTooLarge, path, st.Size, limit)
	}
	if want.Ino != 0 && (uint64(st.Ino) != want.Ino || uint64(st.Dev) != want.Dev) {
		return fmt.Errorf("%w: %q is not the file the walk saw", ErrChanged, path)
	}
	return nil
}

// Read reads the file. It reads at most limit+1 bytes in all, and at most
// one byte more than the size seen at open: more than limit is
// ErrTooLarge, more than the size seen is ErrChanged.
func (f *File) Read(p []byte) (int, error) {
	if f.fd < 0 {
		return 0, os.ErrClosed
	}
	if f.err != nil {
		return 0, f.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	max := min(f.limit, f.st.Size) + 1 - f.n
	if int64(len(p)) > max {
		p = p[:max]
	}
	var n int
	var err error
	for {
		n, err = unix.Read(f.fd, p)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	f.n += int64(n)
	switch {
	case f.n > f.limit:
		f.err = ErrTooLarge
		return n - int(f.n-f.limit), f.err
	case f.n > f.st.Size:
		f.err = fmt.Errorf("%w: file grew while being read", ErrChanged)
		return n - int(f.n-f.st.Size), f.err
	}
	return n, nil
}

// Stat returns the fstat taken at open.
func (f *File) Stat() unix.Stat_t { return f.st }

// Verify fstats the file again after reading: size, mtime, ctime, device
// and inode must be unchanged and the bytes read must equal the size,
// else ErrChanged.
func (f *File) Verify() error {
	if f.fd < 0 {
		return os.ErrClosed
	}
	if f.err != nil {
		return f.err
	}
	var st unix.Stat_t
	if err := fstat(f.fd, &st); err != nil {
		return err
	}
	if st.Size != f.st.Size || st.Mtim != f.st.Mtim || st.Ctim != f.st.Ctim ||
		st.Ino != f.st.Ino || st.Dev != f.st.Dev || st.Nlink != f.st.Nlink {
		return fmt.Errorf("%w: file metadata changed while being read", ErrChanged)
	}
	if f.n != f.st.Size {
		return fmt.Errorf("%w: read %d bytes of %d", ErrChanged, f.n, f.st.Size)
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error {
	if f.fd < 0 {
		return os.ErrClosed
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

// ReadLink reads a symlink's target beneath root without following it: the
// parent directory is opened as OpenFile does, then readlinkat reads the
// last component. A path that is not a symlink is ErrChanged (the walk saw
// a link there).
func ReadLink(root, path string) (string, error) {
	rootfd, dir, name, err := splitOpen(root, path)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootfd)
	parent := rootfd
	if dir != "" {
		if parent, err = openat2(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY); err != nil {
			return "", pathErr(path, err)
		}
		defer unix.Close(parent)
	}
	link, err := readlinkat(parent, name)
	if err != nil {
		if err == unix.EINVAL {
			return "", fmt.Errorf("%w: %q is not a symlink", ErrChanged, path)
		}
		return "", pathErr(path, err)
	}
	return link, nil
}

// splitOpen checks path and opens root. dir is the relative parent ("" at
// the top), name the last component.
func splitOpen(root, path string) (rootfd int, dir, name string, err error) {
	if err := checkPath(path); err != nil {
		return -1, "", "", err
	}
	rel := path[1:]
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	} else {
		name = rel
	}
	rootfd, err = unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", "", fmt.Errorf("hostile: open root %s: %w", root, err)
	}
	return rootfd, dir, name, nil
}

// checkPath accepts only clean absolute paths below "/": no empty, "." or
// ".." component, no trailing slash, no NUL.
func checkPath(path string) error {
	if len(path) >= PathMax {
		return fmt.Errorf("%w: path of %d bytes", ErrTooDeep, len(path))
	}
	if path == "/" || !sandboxpath.IsClean(path) {
		return fmt.Errorf("hostile: invalid path %q", path)
	}
	if depth := strings.Count(path, "/"); depth > MaxDepth {
		return fmt.Errorf("%w: %d components", ErrTooDeep, depth)
	}
	return nil
}

func pathErr(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %q", ErrSymlink, path)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %q: %w", ErrNotFound, path, err)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %q crosses a mount point", ErrSpecial, path)
	case errors.Is(err, unix.ENAMETOOLONG):
		return fmt.Errorf("%w: %q", ErrTooDeep, path)
	case errors.Is(err, unix.ENXIO), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: %q", ErrSpecial, path)
	}
	return fmt.Errorf("hostile: open %q: %w", path, err)
}
