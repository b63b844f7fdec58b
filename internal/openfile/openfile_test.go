package openfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// RegularAt opens a regular file, and refuses a symlink, a FIFO (without
// blocking on it) and a directory without opening them for reading.
func TestRegularAt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	fd, st, err := RegularAt(dfd, "file")
	if err != nil || st.Size != 2 {
		t.Fatalf("file: %v, size %d", err, st.Size)
	}
	unix.Close(fd)
	for name, want := range map[string]error{"link": ErrSymlink, "fifo": ErrNotRegular, "sub": ErrNotRegular, "missing": unix.ENOENT} {
		if _, _, err := RegularAt(dfd, name); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}
