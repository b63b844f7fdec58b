// Package openfile opens a regular file of a directory someone else may
// have prepared, without following a symlink and without ever opening
// anything else (a FIFO, a socket, a device node, whose open runs driver
// code).
package openfile

import (
	"errors"

	"golang.org/x/sys/unix"
)

var (
	// ErrSymlink is a symlink where a regular file was wanted.
	ErrSymlink = errors.New("a symlink")
	// ErrNotRegular is a directory, FIFO, socket or device where a
	// regular file was wanted.
	ErrNotRegular = errors.New("not a regular file")
)

// RegularAt opens name in the directory dirfd for reading: first O_PATH
// (which opens nothing), checks that it is a regular file, then opens it
// O_RDONLY|O_NONBLOCK and checks that the second open found the same
// inode. It returns the descriptor and the file's stat. A symlink is
// ErrSymlink, anything else not regular ErrNotRegular (st then says what
// it is); other errors are the system's (unix.ENOENT for a missing one).
func RegularAt(dirfd int, name string) (fd int, st unix.Stat_t, err error) {
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, err
	}
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return -1, st, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return -1, st, ErrSymlink
	default:
		return -1, st, ErrNotRegular
	}
	fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = ErrSymlink // swapped for a symlink since
		}
		return -1, st, err
	}
	var again unix.Stat_t
	if err := unix.Fstat(fd, &again); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	if again.Dev != st.Dev || again.Ino != st.Ino || again.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, st, ErrNotRegular // replaced between the two opens
	}
	return fd, again, nil
}
