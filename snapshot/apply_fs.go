package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// openDir returns a descriptor of the directory dir ("." for the root),
// creating missing components (mode 0755) when create is set. The
// descriptor belongs to the applier: do not close it.
func (a *applier) openDir(dir string, create bool) (int, error) {
	if a.lastDirFd >= 0 && a.lastDir == dir {
		return a.lastDirFd, nil
	}
	fd, err := a.walk(dir, create)
	if err != nil {
		return -1, err
	}
	a.forgetDir()
	a.lastDir, a.lastDirFd = dir, fd
	return fd, nil
}

// openPath returns a new O_PATH descriptor of the existing directory dir;
// the caller closes it.
func (a *applier) openPath(dir string) (int, error) { return a.walk(dir, false) }

// walk opens dir one component at a time from the root, never through a
// symlink.
func (a *applier) walk(dir string, create bool) (int, error) {
	cur, err := unix.Openat(a.root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if dir == "." {
		return cur, nil
	}
	for _, c := range strings.Split(dir, "/") {
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			// A parent the archive did not list is an entry too.
			if err = a.chargeImplicitDir(dir); err == nil {
				err = unix.Mkdirat(cur, c, 0o755)
			}
			if err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if err != nil {
			var st unix.Stat_t
			if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = fmt.Errorf("%s goes through a symlink: %w", dir, unix.ELOOP)
			}
			unix.Close(cur)
			return -1, err
		}
		unix.Close(cur)
		cur = next
	}
	return cur, nil
}

// clear makes room for a new entry base in dfd: an existing directory stays
// when the new entry is a directory too; anything else there is removed.
func (a *applier) clear(dfd int, base string, isDir bool) (kept bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, unix.Unlinkat(dfd, base, 0)
	}
	if isDir {
		return true, nil
	}
	if a.lastDirFd != dfd {
		// The cached directory may be inside what goes. (When it is dfd
		// itself, the parent, it stays valid: closing it closed dfd under
		// the removal, and every such archive failed.)
		a.forgetDir()
	}
	return false, removeAllAt(dfd, base)
}

// removeAllAt removes the directory base in dfd and everything in it,
// never following a symlink.
func removeAllAt(dfd int, base string) error {
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			var st unix.Stat_t
			if err = unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				break
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = removeAllAt(fd, n)
			} else {
				err = unix.Unlinkat(fd, n, 0)
			}
			if err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR)
}

// splitName splits a clean relative name into its directory ("." at the
// top) and its last component.
func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

// entryErr wraps a system error of one entry; nil stays nil, and errors
// that already name their entry pass through.
func entryErr(name string, err error) error {
	if err == nil {
		return nil
	}
	var ee *EntryError
	var le *LimitError
	if errors.As(err, &ee) || errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("tar entry %q: %w", name, err)
}

// chargeImplicitDir counts a directory made for an entry's path against
// MaxFiles and MaxBytes, as if the archive had listed it.
func (a *applier) chargeImplicitDir(name string) error {
	a.entries++
	if a.lim.MaxFiles >= 0 && a.entries > a.lim.MaxFiles {
		return &LimitError{Name: name, Limit: "MaxFiles", Value: a.lim.MaxFiles}
	}
	return a.charge(metaBlock, name)
}
