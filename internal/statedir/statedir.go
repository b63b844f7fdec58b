package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Error says which path of a state directory cannot be trusted, and why.
type Error struct {
	Kind   string // what Root is: "" for a state directory, e.g. "blob directory"
	Root   string // the state directory
	Path   string // the path at fault: Root, one above it or one in it
	Reason string // e.g. "is a symlink"
}

func (e *Error) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "state directory"
	}
	if e.Path == e.Root {
		return fmt.Sprintf("%s %s %s", kind, e.Root, e.Reason)
	}
	return fmt.Sprintf("%s %s: %s %s", kind, e.Root, e.Path, e.Reason)
}

// Unwrap classes every refusal as a failed precondition.
func (e *Error) Unwrap() error { return errdefs.ErrFailedPrecondition }

// rule is how one path is checked.
type rule int

const (
	ancestor    rule = iota // above the state directory: the caller's or root's, not writable unless sticky
	stateRoot               // the state directory: the caller's, not writable by group or others
	privateDir              // spillway's own directory: as stateRoot, and 0700
	privateFile             // spillway's own file: regular, the caller's, one link, not writable by group or others
	entryDir                // a snapshot tree or mount point: a real directory, any owner
	noLink                  // anything but a symlink
	mountPoint              // an unmounted mount point: a real directory, the caller's, 0700
)

// checker checks paths of one state directory for one caller.
type checker struct {
	kind string // as Error's
	root string
	uid  uint32
}

func newChecker(root string) checker {
	return checker{root: root, uid: uint32(os.Geteuid())}
}

func (c checker) fail(path, format string, args ...any) error {
	return &Error{Kind: c.kind, Root: c.root, Path: path, Reason: fmt.Sprintf(format, args...)}
}

// name is what c's messages call its directory.
func (c checker) name() string {
	if c.kind == "" {
		return "state directory " + c.root
	}
	return c.kind + " " + c.root
}

// check applies r to path, whose lstat is st.
func (c checker) check(path string, st *unix.Stat_t, r rule) error {
	typ := st.Mode & unix.S_IFMT
	switch {
	case typ == unix.S_IFLNK && r == ancestor:
		// Followed: its owner matters (in a sticky directory anyone
		// may create one), and the walk checks where it leads.
		return c.owner(path, st, r)
	case typ == unix.S_IFLNK:
		return c.fail(path, "is a symlink")
	}
	switch r {
	case noLink:
		return nil
	case privateFile:
		if typ != unix.S_IFREG {
			return c.fail(path, "is not a regular file")
		}
	default:
		if typ != unix.S_IFDIR {
			return c.fail(path, "is not a directory")
		}
	}
	if r == entryDir {
		return nil
	}
	if err := c.owner(path, st, r); err != nil {
		return err
	}
	perm := st.Mode & 0o7777
	if perm&0o022 != 0 && !(r == ancestor && perm&unix.S_ISVTX != 0) {
		who := "group and others"
		switch perm & 0o022 {
		case 0o020:
			who = "group"
		case 0o002:
			who = "others"
		}
		return c.fail(path, "is writable by %s (mode %04o)", who, perm)
	}
	if r == privateFile && st.Nlink != 1 {
		return c.fail(path, "has %d hard links", st.Nlink)
	}
	return nil
}

// nobody is the uid an NFS export with root_squash gives root's files.
const nobody = 65534

// owner refuses st unless the caller owns it, or root for an ancestor.
func (c checker) owner(path string, st *unix.Stat_t, r rule) error {
	switch {
	case st.Uid == c.uid || (r == ancestor && st.Uid == 0):
		return nil
	case r == ancestor:
		return c.fail(path, "is owned by uid %d, not by you (uid %d) or root", st.Uid, c.uid)
	case c.kind != "" && st.Uid == nobody && c.uid == 0:
		return c.fail(path, "is owned by uid %d, not by you (uid %d): on NFS, an export with root_squash gives root's files to nobody; export it with no_root_squash", st.Uid, c.uid)
	default:
		return c.fail(path, "is owned by uid %d, not by you (uid %d)", st.Uid, c.uid)
	}
}

// lstatCheck lstats path and applies r; a missing path is not an error.
func (c checker) lstatCheck(path string, r rule) (exists bool, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); errors.Is(err, unix.ENOENT) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("state directory %s: %w", c.root, &os.PathError{Op: "lstat", Path: path, Err: err})
	}
	if err := c.check(path, &st, r); err != nil {
		return true, err
	}
	if (r == privateDir || r == mountPoint) && st.Mode&0o077 != 0 {
		// Only read or search bits are left: take them away.
		if err := unix.Chmod(path, 0o700); err != nil {
			return true, fmt.Errorf("state directory %s: %w", c.root, &os.PathError{Op: "chmod", Path: path, Err: err})
		}
	}
	return true, nil
}

// maxLinks bounds the symlinks followed on the way to a state directory.
const maxLinks = 40

// Prepare checks every directory and symlink on the way from "/" to root,
// creates what is missing (0700) and checks root itself. root is absolute.
// It follows symlinks the way the kernel does, so that each directory that
// a later lookup of root passes through has been checked.
func Prepare(root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("state directory %s: not an absolute path", root)
	}
	c := newChecker(root)
	return c.walk(filepath.Clean(root))
}

// PrepareDir is Prepare for another directory spillway keeps private
// files in (kind names it in errors, e.g. "blob directory"): every
// directory and symlink on the way from "/" is root's or the caller's and
// not writable by others unless sticky, missing ones are created (0700),
// and dir itself is the caller's and not writable by group or others.
func PrepareDir(kind, dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%s %s: not an absolute path", kind, dir)
	}
	c := newChecker(dir)
	c.kind = kind
	return c.walk(filepath.Clean(dir))
}

// CheckPrivateDir checks path, in the directory PrepareDir checked, without
// following a symlink: a directory of the caller's, not writable by group
// or others. A missing path is an error.
func CheckPrivateDir(kind, dir, path string) error {
	c := newChecker(dir)
	c.kind = kind
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fmt.Errorf("%s: %w", c.name(), &os.PathError{Op: "lstat", Path: path, Err: err})
	}
	return c.check(path, &st, stateRoot)
}

func (c checker) walk(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return err
	}
	if err := c.check("/", &st, c.rootRule(path == "/")); err != nil {
		return err
	}
	cur, rest, links := "/", split(path), 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		err := unix.Lstat(next, &st)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdir(next, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("create %s: %w", c.name(), &os.PathError{Op: "mkdir", Path: next, Err: err})
			}
			err = unix.Lstat(next, &st)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.name(), &os.PathError{Op: "lstat", Path: next, Err: err})
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if err := c.check(next, &st, ancestor); err != nil {
				return err
			}
			if links++; links > maxLinks {
				return c.fail(next, "leads through more than %d symlinks", maxLinks)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name(), err)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(split(target), rest...)
			continue
		}
		if err := c.check(next, &st, c.rootRule(len(rest) == 0)); err != nil {
			return err
		}
		cur = next
	}
	return nil
}

func (c checker) rootRule(last bool) rule {
	if last {
		return stateRoot
	}
	return ancestor
}

// split returns the names of path, without empty ones and ".".
func split(path string) []string {
	var out []string
	for _, n := range strings.Split(path, "/") {
		if n != "" && n != "." {
			out = append(out, n)
		}
	}
	return out
}

// CheckFile checks a file of the state directory root that is open as f:
// a regular file of the caller's, with one link, not writable by group or
// others.
func CheckFile(root string, f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("state directory %s: %w", root, &os.PathError{Op: "fstat", Path: f.Name(), Err: err})
	}
	return newChecker(root).check(f.Name(), &st, privateFile)
}

// SymlinkError is the refusal for a path of root that is a symlink, for callers
// whose O_NOFOLLOW open failed with ELOOP.
func SymlinkError(root, path string) error {
	return &Error{Root: root, Path: path, Reason: "is a symlink"}
}

// MakeMountPoint creates the mount point path (0700) in the state directory
// root if it is missing, and checks it without following links: a real
// directory of the caller's. Call it before mounting on path, while path
// is not mounted.
func MakeMountPoint(root, path string) error {
	if err := unix.Mkdir(path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("state directory %s: %w", root, &os.PathError{Op: "mkdir", Path: path, Err: err})
	}
	_, err := newChecker(root).lstatCheck(path, mountPoint)
	return err
}
