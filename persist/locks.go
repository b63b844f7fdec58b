package persist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/lock"
	"github.com/spillway/spillway/internal/statedir"
	"github.com/spillway/spillway/store"
)

// Three locks, always taken in this order (docs/design.md, "Locks"):
//
//   - ROOT/lock: held shared for the whole command by ordinary commands,
//     exclusive by the root-wide ones (gc, image rm, check, the first
//     build of the current-state index): Exclusive.
//   - ROOT/locks/NAME: held exclusive from first use to the end of the
//     command by every command that changes or mounts sandbox NAME:
//     lockSandbox; ROOT/locks/_image.NAME likewise by an import of image
//     NAME: lockImage. Only a holder removes one (lock.Remove): rm, and
//     gc for names the ledger no longer has.
//   - ROOT/ledger.lock: held while this process has the badger store and
//     the snapshotter's metadata open (both admit one process at a time);
//     park releases it before a long phase, and the next use of either
//     takes it again (enterLedger).
//
// Nobody waits for a lock while holding one that comes after it: a busy
// sandbox lock is waited for after a park, and Exclusive lets go of all
// before it waits.
type envLocks struct {
	ctx     context.Context
	what    string
	timeout time.Duration
	wait    func(holder string)

	root       *lock.Lock
	exclusive  bool
	tmpSkipped bool                  // recoverMounts left tmp/ mounts to a command alone
	sandboxes  map[string]*lock.Lock // by lock file name: a sandbox's, or an image's (imageLockName)

	mu     sync.Mutex // guards ledger
	ledger *lock.Lock
}

// ledgerQuiet is how long a wait for the ledger lock stays unreported:
// its holders keep it for short sections.
const ledgerQuiet = time.Second

func (e *Env) rootLockPath() string   { return filepath.Join(e.root, "lock") }
func (e *Env) ledgerLockPath() string { return filepath.Join(e.root, "ledger.lock") }
func (e *Env) sandboxLocksDir() string {
	return filepath.Join(e.root, "locks")
}

// takeRoot takes ROOT/lock, shared or exclusive.
func (e *Env) takeRoot(exclusive bool) error {
	l, err := lock.Take(e.lk.ctx, lock.Request{Path: e.rootLockPath(), What: e.lk.what, Shared: !exclusive,
		Timeout: e.lk.timeout, Wait: e.lk.wait, Describe: e.sandboxHolders})
	if err != nil {
		return err
	}
	e.lk.root, e.lk.exclusive = l, exclusive
	return nil
}

// sandboxHolders names the holders of sandbox locks, for a command that
// waits for the shared holders of ROOT/lock; when none holds one, the
// processes that hold ROOT/lock itself, or "" (nobody known).
func (e *Env) sandboxHolders() string {
	ents, _ := os.ReadDir(e.sandboxLocksDir())
	var out []string
	for _, d := range ents {
		if h := lock.Holder(filepath.Join(e.sandboxLocksDir(), d.Name())); h != "" {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return flockHolders(e.rootLockPath())
	}
	return strings.Join(out, "; ")
}

// flockHolders names the processes that hold a flock(2) lock on the file
// at p, "pid N: COMMAND" each, from /proc/locks: a shared holder writes
// nothing into the file, and a holder need not be spillway at all. ""
// when none is found (the kernel shows pid 0 for a holder in another pid
// namespace).
func flockHolders(p string) string {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ""
	}
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return ""
	}
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		// "1: FLOCK  ADVISORY  WRITE 22849 fe:00:9983344 0 EOF"; a
		// waiter's line has "->" before FLOCK.
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != id || seen[f[4]] {
			continue
		}
		seen[f[4]] = true
		pid, err := strconv.Atoi(f[4])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		h := fmt.Sprintf("pid %d", pid)
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			h += ": " + escape.Name(strings.TrimSpace(string(comm)))
		}
		out = append(out, h)
	}
	return strings.Join(out, "; ")
}

// enterLedger takes the ledger lock unless this process holds it: the
// store and the snapshotter call it before they reopen.
func (e *Env) enterLedger() error {
	e.lk.mu.Lock()
	defer e.lk.mu.Unlock()
	if e.lk.ledger != nil {
		return nil
	}
	l, err := lock.Take(e.lk.ctx, lock.Request{Path: e.ledgerLockPath(), What: e.lk.what,
		Timeout: e.lk.timeout, Wait: e.lk.wait, Quiet: ledgerQuiet})
	if err != nil {
		return err
	}
	e.lk.ledger = l
	return nil
}

// park closes the badger store and the snapshotter and releases the ledger
// lock, so that commands on other sandboxes may use them while this one
// works on its own files; the next use of either reopens it. Nothing else
// may use the store or the snapshotter meanwhile.
func (e *Env) park() error {
	var errs []error
	if e.snap != nil {
		errs = append(errs, e.snap.Park())
	}
	if e.store != nil {
		errs = append(errs, e.store.Park())
	}
	e.lk.mu.Lock()
	defer e.lk.mu.Unlock()
	errs = append(errs, e.lk.ledger.Release())
	e.lk.ledger = nil
	return errors.Join(errs...)
}

// ParkLedger lets other commands use the ledger while this one only reads
// blobs (persisted cat and export): blobs are content-addressed and only
// gc removes them, under the exclusive root lock this command keeps out
// by holding it shared. The next use of the store or the snapshotter
// takes the ledger again.
func (e *Env) ParkLedger() error { return e.park() }

// Exclusive makes this command the only one on the state directory: it
// waits for every other command to finish (and they wait for it), and
// keeps it to the end. Call it first thing in a root-wide operation: it
// lets go of every lock first (an Env that worked on a sandbox before
// needs no sandbox lock once it holds the whole root).
func (e *Env) Exclusive() error {
	if e.lk.exclusive {
		return nil
	}
	if err := e.park(); err != nil {
		return err
	}
	if err := e.releaseLocks(); err != nil {
		return err
	}
	if err := e.takeRoot(true); err != nil {
		return err
	}
	if e.lk.tmpSkipped {
		// Alone now: the layer-build mounts OpenEnv left alone are stale.
		e.recoverMounts()
	}
	return nil
}

// lockSandbox takes the lock of sandbox name for the rest of the command
// (nothing under the exclusive root lock). A busy lock is waited for
// after a park, never while holding the ledger lock.
func (e *Env) lockSandbox(name string) error {
	if ValidateName("sandbox", name) != nil {
		return nil // no such sandbox: the caller says so
	}
	return e.lockFile(name)
}

// imageLockPrefix starts the lock file name of an image: no sandbox name
// starts with '_' (ValidateName), so ROOT/locks/_image.NAME is never a
// sandbox's lock.
const imageLockPrefix = "_image."

func imageLockName(image string) string { return imageLockPrefix + image }

// isLockName says whether n names a lock file of ROOT/locks.
func isLockName(n string) bool {
	if image, ok := strings.CutPrefix(n, imageLockPrefix); ok {
		return ValidateName("image", image) == nil
	}
	return ValidateName("sandbox", n) == nil
}

// lockImage takes the lock of image name for the rest of the command:
// imports of one image run one at a time, of different images side by
// side (each under the shared root lock).
func (e *Env) lockImage(name string) error {
	if ValidateName("image", name) != nil {
		return nil // the caller refuses the name
	}
	return e.lockFile(imageLockName(name))
}

// lockFile takes ROOT/locks/N for the rest of the command, N a sandbox's
// or an image's lock name.
func (e *Env) lockFile(n string) error {
	if e.lk.exclusive || e.lk.sandboxes[n] != nil {
		return nil
	}
	p, err := e.sandboxLockPath(n)
	if err != nil {
		return err
	}
	l, err := lock.TryAcquire(p, e.lk.what)
	if err != nil {
		return err
	}
	if l == nil {
		if err := e.park(); err != nil {
			return err
		}
		l, err = lock.Take(e.lk.ctx, lock.Request{Path: p, What: e.lk.what, Timeout: e.lk.timeout, Wait: e.lk.wait})
		if err != nil {
			return err
		}
	}
	if e.lk.sandboxes == nil {
		e.lk.sandboxes = map[string]*lock.Lock{}
	}
	e.lk.sandboxes[n] = l
	return nil
}

// lockExceptionSandbox takes the lock of exception id's sandbox, so that
// a revoke never interleaves with a close of it on this host (an unknown
// id: nothing to lock; the caller reports it).
func (e *Env) lockExceptionSandbox(id string) error {
	var sandbox string
	err := e.store.View(func(tx *store.Tx) error {
		x, err := tx.GetException(id)
		if err == nil {
			sandbox = x.Sandbox
		}
		return nil
	})
	if err != nil || sandbox == "" {
		return err
	}
	return e.lockSandbox(sandbox)
}

// trySandbox takes the lock of sandbox name if nobody holds it, for work
// on other sandboxes' leftovers that can wait for a later command: ok is
// false when it is busy. release drops a lock taken here.
func (e *Env) trySandbox(name string) (release func(), ok bool) {
	if e.lk.exclusive || e.lk.sandboxes[name] != nil {
		return func() {}, true
	}
	if ValidateName("sandbox", name) != nil {
		return nil, false
	}
	p, err := e.sandboxLockPath(name)
	if err != nil {
		return nil, false
	}
	l, err := lock.TryAcquire(p, e.lk.what)
	if err != nil || l == nil {
		return nil, false
	}
	return func() { l.Release() }, true
}

// dropSandboxLock removes the lock file of sandbox name, just removed by
// this command, which holds it: ROOT/locks keeps no file per name ever
// used. A command that waited for it locks a new file (lock.Remove).
func (e *Env) dropSandboxLock(name string) error {
	l := e.lk.sandboxes[name]
	if l == nil {
		return nil // under the exclusive lock: gc removes it
	}
	delete(e.lk.sandboxes, name)
	return l.Remove(filepath.Join(e.sandboxLocksDir(), name))
}

// gcLockFiles removes the lock files of sandboxes and images the ledger
// does not have (rm removes its own; a crash, or a command about a name
// that never existed, leaves one). It runs under the exclusive root lock,
// so nobody holds them; each is still taken before it goes. A file it
// cannot take is left, with a warning.
func (e *Env) gcLockFiles() error {
	names, err := e.strayLockNames()
	if err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(e.sandboxLocksDir(), n)
		l, err := lock.TryAcquire(p, e.lk.what)
		if err == nil && l != nil {
			err = l.Remove(p)
		}
		if err != nil {
			e.warnf("lock file %s left in place: %v", p, err)
		}
	}
	return nil
}

// strayLockNames returns the names of ROOT/locks's lock files whose
// sandbox or image the ledger does not have.
func (e *Env) strayLockNames() ([]string, error) {
	ents, err := os.ReadDir(e.sandboxLocksDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	err = e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		for _, sb := range sbs {
			keep[sb.Name] = true
		}
		if err != nil {
			return err
		}
		ims, err := tx.ListImages()
		for _, im := range ims {
			keep[imageLockName(im.Name)] = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range ents {
		if n := d.Name(); !keep[n] && d.Type().IsRegular() && isLockName(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// sandboxLockPath is ROOT/locks/NAME, its directory created and checked.
func (e *Env) sandboxLockPath(name string) (string, error) {
	if err := statedir.MakeMountPoint(e.root, e.sandboxLocksDir()); err != nil {
		return "", fmt.Errorf("sandbox locks: %w", err)
	}
	return filepath.Join(e.sandboxLocksDir(), name), nil
}

// releaseLocks drops every lock, the ledger lock first.
func (e *Env) releaseLocks() error {
	e.lk.mu.Lock()
	errs := []error{e.lk.ledger.Release()}
	e.lk.ledger = nil
	e.lk.mu.Unlock()
	for n, l := range e.lk.sandboxes {
		errs = append(errs, l.Release())
		delete(e.lk.sandboxes, n)
	}
	errs = append(errs, e.lk.root.Release())
	return errors.Join(errs...)
}
