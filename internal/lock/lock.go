// Package lock serialises spillway commands on one state directory.
package lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/statedir"
)

// Lock is an exclusive flock on a state directory's lock file.
type Lock struct {
	f *os.File
}

// Acquire takes the lock on path, waiting up to timeout for another holder.
// what describes the caller (e.g. "close docs"); it is written into the lock
// file so that a waiting command can say what it waits for. wait is told
// once, when the lock is busy, with the holder's description.
func Acquire(ctx context.Context, path, what string, timeout time.Duration, wait func(holder string)) (*Lock, error) {
	// Never through a symlink, and only a file of ours with one link: the
	// file is truncated and written as whoever runs spillway.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, statedir.SymlinkError(filepath.Dir(path), path)
	}
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := statedir.CheckFile(filepath.Dir(path), f); err != nil {
		f.Close()
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		holder := readHolder(f)
		if !told && wait != nil {
			wait(holder)
			told = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another spillway command holds %s (%s) for more than %s; try again later or raise --lock-timeout", path, holder, timeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d: %s\n", os.Getpid(), what)
	}
	return &Lock{f: f}, nil
}

func readHolder(f *os.File) string {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 512))
	if err != nil || len(b) == 0 {
		return "unknown holder"
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}

// Release drops the lock. It is safe to call twice.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close()
	l.f = nil
	return err
}
