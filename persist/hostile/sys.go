package hostile

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// noOpenat2 is set once openat2 has returned ENOSYS.
var noOpenat2 atomic.Bool

// openat2 opens rel beneath dirfd without following any symlink or
// crossing a mount. rel is relative; with the fallback it is resolved one
// component at a time with openat(O_NOFOLLOW), checking that each
// intermediate component is a directory on the device of dirfd.
func openat2(dirfd int, rel string, flags int) (int, error) {
	if !noOpenat2.Load() {
		f := flags | unix.O_CLOEXEC
		if f&unix.O_DIRECTORY == 0 {
			// With O_DIRECTORY, O_NOFOLLOW|O_PATH on a trailing link would
			// say ENOTDIR; RESOLVE_NO_SYMLINKS says ELOOP as wanted.
			f |= unix.O_NOFOLLOW
		}
		how := unix.OpenHow{Flags: uint64(f), Resolve: resolveFlags}
		for {
			fd, err := unix.Openat2(dirfd, rel, &how)
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			if err == unix.ENOSYS {
				noOpenat2.Store(true)
				break
			}
			return fd, err
		}
	}
	return openatFallback(dirfd, rel, flags)
}

func openatFallback(dirfd int, rel string, flags int) (int, error) {
	var dst unix.Stat_t
	if err := fstat(dirfd, &dst); err != nil {
		return -1, err
	}
	cur, own := dirfd, false
	defer func() {
		if own {
			unix.Close(cur)
		}
	}()
	for {
		name, rest, more := cut(rel)
		if name == "" || name == "." || name == ".." {
			return -1, unix.EXDEV // what openat2 RESOLVE_BENEATH says for an escape
		}
		f := flags
		if more {
			f = unix.O_PATH | unix.O_DIRECTORY
		}
		fd, err := openatRetry(cur, name, f|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			if err == unix.ENOTDIR {
				// O_DIRECTORY|O_NOFOLLOW on a symlink: tell it apart.
				var st unix.Stat_t
				if fstatat(cur, name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					return -1, unix.ELOOP
				}
			}
			return -1, err
		}
		var st unix.Stat_t
		if err := fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Dev != dst.Dev {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		if flags&unix.O_PATH != 0 && st.Mode&unix.S_IFMT == unix.S_IFLNK && !more {
			return fd, nil // O_PATH|O_NOFOLLOW on a link, as openat2 does
		}
		if !more {
			return fd, nil
		}
		if own {
			unix.Close(cur)
		}
		cur, own = fd, true
		rel = rest
	}
}

func cut(rel string) (name, rest string, more bool) {
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			return rel[:i], rel[i+1:], true
		}
	}
	return rel, "", false
}

func openatRetry(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

func fstat(fd int, st *unix.Stat_t) error {
	for {
		err := unix.Fstat(fd, st)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// openDir opens the directory name (one component) below dirfd for
// reading and checks that it is the inode want describes (when want is
// not nil).
func openDir(dirfd int, name string, want *unix.Stat_t) (int, error) {
	fd, err := openat2(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	if want != nil {
		var st unix.Stat_t
		if err := fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Dev != want.Dev || st.Ino != want.Ino {
			unix.Close(fd)
			return -1, ErrChanged
		}
	}
	return fd, nil
}

// readNames returns the names in the directory open at fd, sorted by
// bytes, without "." and "..".
func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		b := buf[:n]
		for len(b) > 0 {
			if len(b) < 19 {
				return nil, errors.New("hostile: short dirent")
			}
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < 19 || reclen > len(b) {
				return nil, errors.New("hostile: bad dirent length")
			}
			raw := b[19:reclen]
			for i, c := range raw {
				if c == 0 {
					raw = raw[:i]
					break
				}
			}
			b = b[reclen:]
			if s := string(raw); s != "." && s != ".." && s != "" {
				names = append(names, s)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// isWhiteout reports whether st is an overlay whiteout (char device 0/0).
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// opaqueValue returns the one-byte value of the overlay.opaque xattr attr
// of the directory open at fd, as the kernel reads it: 'y' (opaque), 'x'
// (holds xattr whiteouts), or 0 (absent, or not one byte long).
func opaqueValue(fd int, attr string) (byte, error) {
	var buf [1]byte
	for {
		n, err := unix.Fgetxattr(fd, attr, buf[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == nil:
			if n == 1 {
				return buf[0], nil
			}
			return 0, nil
		case err == unix.ENODATA || err == unix.ENOTSUP || err == unix.ERANGE:
			return 0, nil
		default:
			return 0, fmt.Errorf("hostile: read %s: %w", attr, err)
		}
	}
}

// hasXattr says whether the file open at fd has the xattr attr.
func hasXattr(fd int, attr string) (bool, error) {
	for {
		_, err := unix.Fgetxattr(fd, attr, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err == nil:
			return true, nil
		case err == unix.ENODATA || err == unix.ENOTSUP:
			return false, nil
		default:
			return false, fmt.Errorf("hostile: read %s: %w", attr, err)
		}
	}
}

func typeOf(mode uint32) change.FileType {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return change.TypeFile
	case unix.S_IFDIR:
		return change.TypeDir
	case unix.S_IFLNK:
		return change.TypeSymlink
	case unix.S_IFIFO:
		return change.TypeFIFO
	case unix.S_IFSOCK:
		return change.TypeSocket
	default:
		return change.TypeDevice
	}
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// belowFrom describes the version of an entry below, in root.
func belowFrom(st *unix.Stat_t, root string) *Below {
	return &Below{Type: typeOf(st.Mode), Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: st.Size, Root: root}
}

func changeFrom(kind change.Kind, path string, st *unix.Stat_t) Change {
	return Change{
		Kind:  kind,
		Path:  path,
		Type:  typeOf(st.Mode),
		Size:  st.Size,
		Disk:  st.Blocks * 512,
		Mode:  st.Mode,
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)),
		Nlink: uint64(st.Nlink),
		Dev:   uint64(st.Dev),
		Ino:   uint64(st.Ino),
	}
}

// readlinkat reads the target of the link name in dirfd.
func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err == unix.EINTR {
			size /= 2
			continue
		}
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size > 1<<20 {
			return "", unix.ENAMETOOLONG
		}
	}
}

// tooDeep reports whether path (depth components) is beyond the limits.
func tooDeep(path string, depth int) bool {
	return len(path) >= PathMax || depth > MaxDepth
}

func sortStrings(s []string) { sort.Strings(s) }

// dirMetaChanged says whether a directory's permission bits, setgid or
// sticky bit (the bits a directory's record keeps: persist.DirModeBits)
// or owner differ from its version below.
func dirMetaChanged(st, below *unix.Stat_t) bool {
	return st.Mode&0o3777 != below.Mode&0o3777 || st.Uid != below.Uid || st.Gid != below.Gid
}
