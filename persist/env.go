package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/names"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/internal/statedir"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Options say where the state lives and how to reach it.
type Options struct {
	Root        string        // state directory
	Snapshotter string        // "", snapshot.KindOverlay or snapshot.KindNative
	LockTimeout time.Duration // how long to wait for another command
	What        string        // this command, for a waiting command's message
	Wait        func(holder string)
	// Warn, when set, is told about trouble that does not stop the
	// command, e.g. a stale mount that is busy and was left in place.
	Warn func(msg string)
	// Progress, when set, is told how far long operations have come
	// (import, open applying the persisted state, close reading changes).
	Progress progress.Progress
	// HostID is this host's id in a shared ledger ("": the one the root
	// recorded, else the hostname); HostTTL how long it counts as live
	// after a heartbeat (0: store.DefaultHostTTL).
	HostID  string
	HostTTL time.Duration
	// Store is the ledger's URL (store.OpenURL): "" the badger store in
	// Root, or postgres://… (snapshots, blobs and mounts stay in Root).
	Store string
	// Pools, when set, keeps a PostgreSQL ledger's connections open after
	// the Env closes, for a process that opens an Env per request
	// (NewPools); its owner closes it.
	Pools *Pools
	// Blobs is the blob store's URL: "" blobs/ in Root, or dir:///PATH.
	Blobs string
	// LedgerOnly opens the ledger and the blobs alone, for a command that
	// only reads records, their content or audit entries (review ls,
	// review show, log): no snapshotter, no stale-mount recovery, no
	// build of the current-state index or counters, which it never
	// reads. Such an Env serves ReviewEach, ReviewEachHost, ReviewShow,
	// OpenRecord, HostOf and ForEachEvent.
	LedgerOnly bool
	// Heartbeat opens for the fleet agent's heartbeat: on a shared ledger
	// (Store postgres://…) of a root that has its host and root ids, it
	// takes neither ROOT/lock nor ledger.lock, so that gc, check or image
	// rm, which hold ROOT/lock as long as they run, never hold up the
	// heartbeat that keeps this host live (a host that looked dead would
	// lose its sandboxes while their users work). Use with LedgerOnly.
	Heartbeat bool
}

// Env is an opened state directory: its locks (locks.go), the store, the
// snapshotter and the blob store. Close releases all of them.
type Env struct {
	root  string
	store *store.Store
	snap  *snapshot.Manager
	blobs *Blobs
	clock func() time.Time // Now; tests move it

	lk        envLocks
	warn      func(msg string)
	reviewer  string // SetReviewer: who decides reviews ("": the OS user)
	hostID    string // this host in the ledger (lease.go)
	hostIDNew bool   // hostID is not recorded in the root yet (recordHostID)
	// idsWritten lists the id files recordHostID wrote into a new root:
	// a heartbeat that finds the host id taken removes them again
	// (heartbeat), so that the next try may give another id.
	idsWritten []string
	idsRemoved bool   // heartbeat removed idsWritten
	rootID     string // the state directory's random id (rootIDFile)
	ledgerID   string // the shared ledger's id, once recorded (ledgerIDFile)
	unlocked   bool   // opened without ROOT/lock and ledger.lock (Options.Heartbeat)
	hostTTL    time.Duration
	closing    map[string]uint64 // sandbox → lease token of the close under way
	// blobsShared: the blob directory is not the root's own (--blobs), so
	// other hosts may be writing blobs their ledger commit will name: gc
	// leaves young ones alone (SharedBlobGrace).
	blobsShared bool
	progress    progress.Progress // never nil: progress.None by default
}

const metaSnapshotter = "snapshotter"

// DefaultLockTimeout is how long a command waits for another one on the same
// state directory when Options.LockTimeout is not set.
const DefaultLockTimeout = 30 * time.Second

// ErrNoRoot reports Options without a state directory.
var ErrNoRoot = errors.New("no state directory")

// OpenEnv locks the state directory and opens what is in it. The snapshotter
// choice is recorded at first use; a later different choice is an error.
func OpenEnv(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Root == "" {
		return nil, ErrNoRoot
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	if err := refuseRootInSandbox(root); err != nil {
		return nil, err
	}
	// The state directory and the path to it must be ours (or root's for
	// the path): see internal/statedir.
	if err := statedir.Prepare(root); err != nil {
		return nil, err
	}
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	e := &Env{root: root, clock: func() time.Time { return time.Now().UTC() }, warn: o.Warn, progress: progress.Or(o.Progress), hostTTL: o.HostTTL}
	e.lk = envLocks{ctx: context.WithoutCancel(ctx), what: o.What, timeout: timeout, wait: o.Wait}
	unlocked := o.Heartbeat && o.LedgerOnly && o.Store != "" && !strings.HasPrefix(o.Store, "badger:") && hasIDs(root)
	e.unlocked = unlocked
	if !unlocked {
		if err := e.takeRoot(false); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			// A new root's first command that fails records nothing: not
			// its ids, nor a blob directory (docs/fleet.md).
			e.removeNewIDs()
			e.Close()
		}
	}()
	if !unlocked {
		if err := e.enterLedger(); err != nil {
			return nil, err
		}
	}
	if err := statedir.Check(root); err != nil {
		return nil, err
	}
	if err := e.resolveHostID(o.HostID); err != nil {
		return nil, err
	}
	blobDir, err := blobsDir(root, o.Blobs)
	if err != nil {
		return nil, err
	}
	if o.Store == "" {
		if err := refuseNewLedgerInUsedRoot(root); err != nil {
			return nil, err
		}
	}
	e.store, err = o.Pools.Open(store.WithNotice(ctx, e.warn), o.Store, filepath.Join(root, "store"))
	if err != nil {
		return nil, err
	}
	e.store.SetReopen(e.enterLedger)
	if err := e.recordHostID(); err != nil {
		return nil, err
	}
	recordBlobs, err := e.checkBlobsDir(blobDir, o.Blobs)
	if err != nil {
		return nil, err
	}
	if e.sharedLedger() {
		if err := e.checkLedger(); err != nil {
			return nil, err
		}
		// Entries of a ledger several hosts share name their writer.
		e.store.SetAuditHost(e.hostID, e.rootID)
	}
	e.blobsShared = o.Blobs != ""
	if err := e.checkRecordedStore(blobDir, recordBlobs); err != nil {
		return nil, err
	}
	e.blobs, err = NewBlobs(blobDir)
	if err != nil {
		return nil, err
	}
	if recordBlobs {
		if err := e.recordBlobsDir(); err != nil {
			return nil, err
		}
	}
	if o.LedgerOnly {
		return e.openLedgerOnly(o.Snapshotter)
	}
	kind, err := e.chooseSnapshotter(o.Snapshotter)
	if err != nil {
		return nil, err
	}
	e.snap, err = snapshot.Open(ctx, filepath.Join(root, "snapshots", kind), kind, timeout)
	if err != nil {
		return nil, err
	}
	e.snap.SetReopen(e.enterLedger)
	for _, d := range []string{e.mntDir(), e.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	e.recoverMounts()
	if err := e.buildCurrent(ctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("build the current-state index: %w", err)
	}
	if err := e.fixHeldPast(ctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("check the persisted state for records held past a new directory: %w", err)
	}
	return e, nil
}

// openLedgerOnly ends OpenEnv for Options.LedgerOnly. A snapshotter asked
// for is still checked against the recorded one, as for any command.
func (e *Env) openLedgerOnly(snapshotter string) (*Env, error) {
	if snapshotter != "" {
		if _, err := e.chooseSnapshotter(snapshotter); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) chooseSnapshotter(asked string) (string, error) {
	var recorded string
	key := metaSnapshotter
	if e.store.Driver() != "badger" {
		// A ledger shared by several hosts: each root chooses its own.
		key += "/" + e.hostID
	}
	err := e.store.View(func(tx *store.Tx) error {
		v, _, err := tx.GetMeta(key)
		recorded = v
		return err
	})
	if err != nil {
		return "", err
	}
	switch asked {
	case "", snapshot.KindOverlay, snapshot.KindNative:
	default:
		return "", invalidf("unknown snapshotter %q: use overlayfs or native", asked)
	}
	if recorded != "" {
		if asked != "" && asked != recorded {
			return "", fmt.Errorf("state directory %s uses the %s snapshotter, not %s", e.root, recorded, asked)
		}
		return recorded, nil
	}
	kind := asked
	if kind == "" {
		kind = snapshot.Detect(e.root)
	} else if kind == snapshot.KindOverlay {
		if err := snapshot.CheckOverlay(e.root); err != nil {
			return "", err
		}
	}
	err = e.store.Update(func(tx *store.Tx) error { return tx.PutMeta(key, kind) })
	return kind, err
}

// Now is the time as the Env sees it (UTC).
func (e *Env) Now() time.Time { return e.clock() }

// Close releases everything Env holds. It is safe twice.
func (e *Env) Close() error {
	var errs []error
	if e.snap != nil {
		errs = append(errs, e.snap.Close())
		e.snap = nil
	}
	if e.store != nil {
		errs = append(errs, e.store.Close())
		e.store = nil
	}
	errs = append(errs, e.releaseLocks())
	return errors.Join(errs...)
}

func (e *Env) mntDir() string { return filepath.Join(e.root, "mnt") }
func (e *Env) tmpDir() string { return filepath.Join(e.root, "tmp") }

// TrashDir holds removed roots whose files a background rm deletes.
func (e *Env) TrashDir() string { return filepath.Join(e.root, "trash") }

// MountPath is where the root of an open sandbox is mounted.
func (e *Env) MountPath(sandbox string) string { return filepath.Join(e.mntDir(), sandbox) }

// makeMountPoint creates or checks target before a sandbox root is mounted
// on it: a real directory of ours, never a symlink that would carry the
// mount over a host directory.
func (e *Env) makeMountPoint(target string) error { return statedir.MakeMountPoint(e.root, target) }

// ValidateName checks an image or sandbox name.
func ValidateName(kind, name string) error {
	if !names.Valid(name) {
		return invalidf("invalid %s name %q: use letters, digits, '.', '_' and '-' (up to 63, starting with a letter or digit)", kind, name)
	}
	return nil
}

// Snapshot keys, derived so that a crashed command can find its leftovers.
func imageKey(name string) string                { return "img/" + name }
func layerKey(sandbox string, gen uint64) string { return fmt.Sprintf("sbx/%s/gen/%d", sandbox, gen) }
func sessionKey(sandbox string, n uint64) string { return fmt.Sprintf("sbx/%s/session/%d", sandbox, n) }
func sandboxKeyPrefix(sandbox string) string     { return "sbx/" + sandbox + "/" }

// recoverMounts removes mounts that a crashed command left: layer builds
// under tmp/, and roots under mnt/ of sandboxes that are neither open nor
// closing (a closing sandbox's close unmounts its root once nothing holds
// it). It never fails the command: a mount it cannot remove (busy, say) is
// left in place and reported; spillway check lists it. One sandbox's stale
// mount thus never stops a command about another.
func (e *Env) recoverMounts() {
	mounts, err := snapshot.MountsUnder(e.root)
	if err != nil {
		e.warnf("cannot look for stale mounts: %v", err)
		return
	}
	// Candidates first, each sandbox's lock taken before its state is
	// read: a command that holds it may be mounting it right now.
	tmp, mnt := resolved(e.tmpDir())+"/", resolved(e.mntDir())+"/"
	var stale []string
	for _, m := range mounts {
		switch {
		case strings.HasPrefix(m, tmp):
			if !e.lk.exclusive {
				e.lk.tmpSkipped = true
				continue // maybe another command's layer build
			}
		case strings.HasPrefix(m, mnt):
			release, ok := e.trySandbox(strings.TrimPrefix(m, mnt))
			if !ok {
				continue // another command works on it
			}
			defer release()
		default:
			continue
		}
		stale = append(stale, m)
	}
	if len(stale) == 0 {
		return
	}
	keep := map[string]bool{}
	for name := range e.openSessions() {
		keep[resolved(e.MountPath(name))] = true // open_journal.go
	}
	err = e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		for _, sb := range sbs {
			if sb.State == store.StateOpen || sb.State == store.StateClosing {
				keep[resolved(e.MountPath(sb.Name))] = true
			}
		}
		return err
	})
	if err != nil {
		e.warnf("cannot look for stale mounts: %v", err)
		return
	}
	for _, m := range stale {
		if keep[m] {
			continue
		}
		name := strings.TrimPrefix(m, mnt)
		if err := e.unmountRoot(name, m, ""); err != nil {
			var be *BusyError
			if errors.As(err, &be) {
				err = errors.New(be.List())
			}
			e.warnf("stale mount %s left in place (spillway check lists it): %v", escape.Name(m), err)
			continue
		}
		if strings.HasPrefix(m, tmp) {
			os.Remove(m)
		}
	}
}

func (e *Env) warnf(format string, args ...any) {
	if e.warn != nil {
		e.warn(fmt.Sprintf(format, args...))
	}
}

// leftovers says whether any snapshot key starts with prefix.
func (e *Env) leftovers(ctx context.Context, prefix string) (bool, error) {
	keys, err := e.snap.Keys(ctx)
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			return true, nil
		}
	}
	return false, nil
}

// refuseNewLedgerInUsedRoot refuses to create the badger store of a state
// directory that has been used without one: it has a host id (recorded
// once a ledger opened) but no store/, so its ledger is a shared one
// (--store was forgotten) or its store/ was deleted. Either way a new,
// empty ledger would show none of its sandboxes, and commands would go on
// as if that were so.
func refuseNewLedgerInUsedRoot(root string) error {
	if _, err := os.Lstat(filepath.Join(root, "store")); !errors.Is(err, os.ErrNotExist) {
		return nil // there, or not ours to judge: Open says what is wrong
	}
	if _, err := os.Lstat(filepath.Join(root, hostIDFile)); err != nil {
		return nil // a new state directory
	}
	return &InputError{Input: "store", Problem: fmt.Sprintf("is not given, and the state directory %s keeps no ledger of its own (it has a host id and no store/): its ledger is shared; give --store postgres://… (or SPILLWAY_STORE) as its earlier commands did (nothing was created; a new ledger of its own: --store badger://%s)", root, filepath.Join(root, "store"))}
}
