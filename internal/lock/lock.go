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

// Lock is a flock on a lock file of a state directory.
type Lock struct {
	f      *os.File
	shared bool
}

// Request says which lock to take and how long to wait for it.
type Request struct {
	Path    string        // the lock file, created if missing
	What    string        // the caller (e.g. "close docs"), written into the file
	Shared  bool          // a shared lock: many holders, none exclusive
	Timeout time.Duration // how long to wait for a holder
	// Wait is told once, when the lock is busy, with the holder's
	// description.
	Wait func(holder string)
	// Quiet delays Wait: it is told only once the wait lasted this long
	// (for locks held for short sections), or when it gives up.
	Quiet time.Duration
	// Describe names the holders when the file names none (shared holders
	// write nothing into it); nil: "unknown holder".
	Describe func() string
}

// Acquire takes the exclusive lock on path, waiting up to timeout for another
// holder. what describes the caller (e.g. "close docs"); it is written into
// the lock file so that a waiting command can say what it waits for. wait is
// told once, when the lock is busy, with the holder's description.
func Acquire(ctx context.Context, path, what string, timeout time.Duration, wait func(holder string)) (*Lock, error) {
	return Take(ctx, Request{Path: path, What: what, Timeout: timeout, Wait: wait})
}

// Take takes the lock r asks for, waiting up to r.Timeout.
func Take(ctx context.Context, r Request) (*Lock, error) {
	f, err := openFile(r.Path)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if r.Shared {
		how = unix.LOCK_SH
	}
	start := time.Now()
	deadline := start.Add(r.Timeout)
	told := false
	for {
		busy, err := try(f, how)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", r.Path, err)
		}
		if !busy {
			if f, err = stillThere(f, r.Path); err != nil {
				return nil, err
			}
			if f != nil {
				break
			}
			// Its holder removed the file meanwhile: lock the new one.
			if f, err = openFile(r.Path); err != nil {
				return nil, err
			}
			continue
		}
		holder := readHolder(f)
		if holder == "" && r.Describe != nil {
			holder = r.Describe()
		}
		holder = shortHolder(holder)
		if holder == "" {
			holder = "unknown holder"
		}
		late := time.Now().After(deadline)
		if !told && r.Wait != nil && (late || time.Since(start) >= r.Quiet) {
			r.Wait(holder)
			told = true
		}
		if late {
			f.Close()
			return nil, &HeldError{Path: r.Path, Holder: holder, Timeout: r.Timeout}
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	l := &Lock{f: f, shared: r.Shared}
	l.describe(r.What)
	return l, nil
}

// TryAcquire takes the exclusive lock on path only if it is free at once:
// it returns nil, nil when another holder has it.
func TryAcquire(path, what string) (*Lock, error) {
	for {
		f, err := openFile(path)
		if err != nil {
			return nil, err
		}
		busy, err := try(f, unix.LOCK_EX)
		if err != nil || busy {
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("lock %s: %w", path, err)
			}
			return nil, nil
		}
		if f, err = stillThere(f, path); err != nil {
			return nil, err
		}
		if f != nil {
			l := &Lock{f: f}
			l.describe(what)
			return l, nil
		}
	}
}

// stillThere returns f, just locked, if it is still the file at path; else
// it closes f and returns nil: the holder before us removed the file
// (Remove), so a lock on f would exclude nobody.
func stillThere(f *os.File, path string) (*os.File, error) {
	same, err := sameFile(f, path)
	if same {
		return f, nil
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return nil, nil
}

// sameFile says whether f is the file at path (same device and inode);
// a path that is gone is not.
func sameFile(f *os.File, path string) (bool, error) {
	var held, now unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &held); err != nil {
		return false, err
	}
	if err := unix.Lstat(path, &now); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	return now.Dev == held.Dev && now.Ino == held.Ino, nil
}

// Remove deletes the lock file at path, which l must hold, and releases
// l: a command that waited for it finds the file gone and locks a new one
// (Take and TryAcquire check, once they hold a lock, that its file is
// still at path). Only a holder removes a lock file.
func (l *Lock) Remove(path string) error {
	if l == nil || l.f == nil {
		return nil
	}
	var err error
	if same, serr := sameFile(l.f, path); serr != nil {
		err = serr
	} else if same {
		if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	}
	return errors.Join(err, l.Release())
}

// Holder returns the description the exclusive holder of path wrote ("" if
// none, or if the file cannot be read).
func Holder(path string) string {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	return readHolder(f)
}

// openFile opens (creating) the lock file path: never through a symlink,
// and only a file of ours with one link, since it is truncated and
// written as whoever runs spillway.
//
// A holder may remove the file between its open here and the check (its
// link count is then 0): that file is opened afresh, not refused.
func openFile(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.ELOOP) {
			return nil, statedir.SymlinkError(filepath.Dir(path), path)
		}
		if err != nil {
			return nil, fmt.Errorf("open lock: %w", err)
		}
		if err := statedir.CheckFile(filepath.Dir(path), f); err != nil {
			var st unix.Stat_t
			gone := unix.Fstat(int(f.Fd()), &st) == nil && st.Nlink == 0
			f.Close()
			if gone {
				continue // removed since the open
			}
			return nil, err
		}
		return f, nil
	}
}

// try attempts the flock how without waiting; busy when another holds it.
func try(f *os.File, how int) (busy bool, err error) {
	err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EINTR):
		return true, nil
	}
	return false, err
}

// describe writes who holds an exclusive lock into its file.
func (l *Lock) describe(what string) {
	if l.shared {
		return
	}
	if err := l.f.Truncate(0); err == nil {
		fmt.Fprintf(l.f, "pid %d: %s\n", os.Getpid(), what)
	}
}

// HeldError says another command held a lock for longer than the wait.
type HeldError struct {
	Path    string
	Holder  string // "pid N: COMMAND", shortened
	Timeout time.Duration
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("another spillway command holds %s (%s) for more than %s; try again later or raise --lock-timeout", e.Path, e.Holder, e.Timeout)
}

// maxHolder bounds a holder's description in messages: a command's whole
// argv (a script given to sh -c) ran to kilobytes over many lines.
const maxHolder = 160

// shortHolder is a holder's description on one line, at most maxHolder
// characters.
func shortHolder(h string) string {
	h = strings.Join(strings.Fields(h), " ")
	if r := []rune(h); len(r) > maxHolder {
		h = string(r[:maxHolder]) + "…"
	}
	return h
}

func readHolder(f *os.File) string {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 512))
	if err != nil || len(b) == 0 {
		return ""
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}

// Release drops the lock. It is safe to call twice.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	if !l.shared {
		_ = l.f.Truncate(0)
	}
	err := l.f.Close()
	l.f = nil
	return err
}
