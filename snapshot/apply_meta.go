package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// meta sets owner, mode and times of a non-directory just made (not a
// regular file's mode and owner, set on its descriptor already).
func (a *applier) meta(dfd int, base string, hdr *tar.Header, mode uint32) error {
	special := hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeFifo
	if a.asRoot && !isRegular(hdr.Typeflag) {
		if err := unix.Fchownat(dfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if special {
		// The node was made here a moment ago and is no symlink.
		if err := unix.Fchmodat(dfd, base, mode, 0); err != nil {
			return err
		}
	}
	return setTimes(dfd, base, hdr)
}

func setTimes(dfd int, base string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	return nil
}

// setXattrs sets the entry's extended attributes on fd, less overlay's own;
// attributes the filesystem or the user cannot hold are skipped.
func setXattrs(fd int, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || isOverlayXattr(attr) {
			continue
		}
		if err := unix.Fsetxattr(fd, attr, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("extended attribute %s: %w", attr, err)
		}
	}
	return nil
}

func isOverlayXattr(attr string) bool {
	return strings.HasPrefix(attr, "trusted.overlay.") || strings.HasPrefix(attr, "user.overlay.")
}

// keepDir records a directory's metadata for finish; a later entry of the
// same directory replaces it.
func (a *applier) keepDir(name string, hdr *tar.Header) {
	if i, ok := a.dirIndex[name]; ok {
		a.dirs[i].hdr = hdr
		return
	}
	a.dirIndex[name] = len(a.dirs)
	a.dirs = append(a.dirs, dirMeta{name: name, hdr: hdr})
}

// finish sets the directories' metadata, deepest (latest) first. A
// directory that a later entry replaced is skipped.
func (a *applier) finish() error {
	a.forgetDir()
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		dir, base := ".", "."
		if d.name != "." {
			dir, base = splitName(d.name)
		}
		dfd, err := a.openPath(dir)
		if isGone(err) {
			continue
		}
		if err != nil {
			return entryErr(d.name, err)
		}
		err = a.dirMeta(dfd, base, d.hdr)
		unix.Close(dfd)
		if isGone(err) {
			continue
		}
		if err != nil {
			return entryErr(d.name, err)
		}
	}
	return nil
}

func (a *applier) dirMeta(dfd int, base string, hdr *tar.Header) error {
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setXattrs(fd, hdr); err != nil {
		return err
	}
	if a.asRoot {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return err
	}
	return setTimes(dfd, base, hdr)
}

func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}
