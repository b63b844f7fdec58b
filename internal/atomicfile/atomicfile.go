// Package atomicfile writes a file under a temporary name beside its
// destination and moves it into place whole, so a reader or a crash never
// sees half of it. It is spillway's one way to do that.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// How a committed file takes its place.
type How int

const (
	// Replace renames over whatever is at the destination (a symlink there
	// is replaced, never written through).
	Replace How = iota
	// NoReplace fails with an error matching fs.ErrExist if the
	// destination exists.
	NoReplace
	// Link hard-links the file to the destination, failing with an error
	// matching fs.ErrExist if it exists; the temporary file stays (it can
	// be rewritten and linked again) until Cleanup.
	Link
)

// File is a temporary file that Commit moves into place.
type File struct {
	*os.File
	// Lazy skips the fsync of the file and of its directory: for callers
	// that flush the whole filesystem later (the blob store syncs once per
	// close) and accept that a crash before it loses the file.
	Lazy bool
	dir  string
	gone bool
}

// Create makes a temporary file in dir (mode 0600), named by pattern as
// os.CreateTemp does. Defer Cleanup.
func Create(dir, pattern string) (*File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &File{File: f, dir: dir}, nil
}

// Commit flushes the file (unless Lazy) and moves it to dest, which must
// be in the same directory or at least on the same filesystem; the
// directory holding dest is flushed too, so the new name survives a crash.
func (f *File) Commit(dest string, how How) error {
	if !f.Lazy {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	var err error
	switch how {
	case Replace:
		err = os.Rename(f.Name(), dest)
	case NoReplace:
		err = unix.Renameat2(unix.AT_FDCWD, f.Name(), unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			err = &os.LinkError{Op: "rename", Old: f.Name(), New: dest, Err: os.ErrExist}
		}
	case Link:
		err = os.Link(f.Name(), dest)
	}
	if err != nil {
		return err
	}
	if how != Link {
		f.gone = true
		f.Close()
	}
	if f.Lazy {
		return nil
	}
	return SyncDir(filepath.Dir(dest))
}

// Cleanup closes the file and removes the temporary name if it is still
// there. It is safe to call after Commit and more than once.
func (f *File) Cleanup() {
	f.Close()
	if !f.gone {
		os.Remove(f.Name())
		f.gone = true
	}
}

// SyncDir makes the names in dir (a rename, a link, a new file) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
