package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/atomicfile"
)

// Reserve is the free space the store needs to open and commit: badger
// maps a memtable file of this size when it opens and writes into it as
// transactions commit. A write into that map where the filesystem has no
// block left kills the process with SIGBUS, not an error, so the store
// never opens with less free than this (see ballast).
const Reserve = 16 << 20

// ballastName is a file of Reserve bytes kept in the store's directory
// while there is room for it: when a sandbox fills the filesystem, Open
// deletes it first, so that close still has the room to commit its
// rollback. The next Open with room to spare makes it again.
const ballastName = "spillway-ballast"

// FreeBytes returns the bytes available to this process on the filesystem
// holding dir.
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// ErrNoSpace is returned by Open when the filesystem holding the store has
// less than Reserve free even without the ballast.
var ErrNoSpace = errors.New("store: the filesystem is full")

// makeRoom frees the ballast when the filesystem of dir has less than
// Reserve free, and fails with ErrNoSpace when even that is not enough.
func makeRoom(dir string) error {
	free, err := FreeBytes(dir)
	if err != nil || free >= Reserve {
		return nil // a store that cannot be measured is opened as before
	}
	ballast := filepath.Join(dir, ballastName)
	if fi, err := os.Lstat(ballast); err == nil && fi.Mode().IsRegular() {
		if err := os.Remove(ballast); err != nil {
			return fmt.Errorf("store: free the ballast: %w", err)
		}
		if free, err = FreeBytes(dir); err != nil || free >= Reserve {
			return nil
		}
	}
	if canAllocate(dir, Reserve) {
		// Blocks the filesystem reserves for root (ext4: 5% by default)
		// are not "available" but are this root process's: a sandbox that
		// filled the disk left them, and the ballast's 16 MiB went back
		// into that reserve. Before, close and rm were refused there.
		return nil
	}
	return fmt.Errorf("%w: %d KiB free in %s, the store needs %d MiB to open: free some space and run the command again", ErrNoSpace, free>>10, dir, Reserve>>20)
}

// canAllocate says whether this process can allocate n bytes in dir: it
// allocates them in a file it removes at once. Only that counts what a
// root process may take of the blocks a filesystem reserves for root,
// less what it keeps from everyone.
func canAllocate(dir string, n int64) bool {
	f, err := os.CreateTemp(dir, ".spillway-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// Blocks just freed (the ballast) are reusable once the journal
	// commits them.
	unix.Syncfs(int(f.Fd()))
	return unix.Fallocate(int(f.Fd()), 0, 0, n) == nil
}

// keepBallast makes the ballast when it is missing and the filesystem has
// room for it and a Reserve beside it. Errors are ignored: the ballast is a
// precaution, never a reason to fail.
func keepBallast(dir string) {
	ballast := filepath.Join(dir, ballastName)
	if _, err := os.Lstat(ballast); err == nil {
		return
	}
	if free, err := FreeBytes(dir); err != nil || free < 2*Reserve {
		return
	}
	f, err := atomicfile.Create(dir, ballastName+".tmp-")
	if err != nil {
		return
	}
	defer f.Cleanup()
	f.Lazy = true // a precaution: losing it in a crash costs nothing
	if err := unix.Fallocate(int(f.Fd()), 0, 0, Reserve); err != nil {
		return
	}
	f.Commit(ballast, atomicfile.Replace)
}
