package sparse

import "golang.org/x/sys/unix"

// FD is a bare file descriptor as a File.
type FD int

// WriteAt writes all of p at off, retrying on EINTR and short writes.
func (fd FD) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pwrite(int(fd), p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// Truncate sets the file's size.
func (fd FD) Truncate(size int64) error { return unix.Ftruncate(int(fd), size) }
