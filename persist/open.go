package persist

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Opened describes an open sandbox's root.
type Opened struct {
	Name       string        `json:"name"`
	Path       string        `json:"path"`
	Session    uint64        `json:"session"`
	Generation uint64        `json:"generation"`
	Mounts     []mount.Mount `json:"-"` // as mounted at Path: nodev,nosuid (snapshot.HostMounts)
	Skipped    []string      `json:"-"` // stored paths that were not applied, with why
	Already    bool          `json:"-"` // the sandbox was open already
}

// OpenSandbox prepares a fresh root from the image and the persisted state and
// mounts it. On an open sandbox it returns the same root and starts nothing.
func (e *Env) OpenSandbox(ctx context.Context, name string) (_ *Opened, retErr error) {
	if err := e.lockSandbox(name); err != nil {
		return nil, err
	}
	defer e.progress.Done()
	if _, err := e.getSandbox(name); err != nil {
		return nil, err
	}
	token, err := e.takeLease(name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			e.releaseLeaseIfClosed(name, token)
		}
	}()
	// A root of this host's that another host took over: fence it first
	// (its changes go to the recovery area), so nothing below removes it.
	if err := e.fenceLocal(ctx, name); err != nil {
		return nil, err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if err := e.checkRootHere(ctx, sb); err != nil {
		return nil, err
	}
	if sb.State == store.StateClosing {
		// Finish the interrupted close first.
		if _, err := e.CloseSandbox(ctx, name, CloseOptions{}); err != nil {
			return nil, fmt.Errorf("finish interrupted close of %s: %w", name, err)
		}
		// The close gave the lease back with its commit: take it again,
		// under a new token (the old one is fenced now).
		if token, err = e.takeLease(name); err != nil {
			return nil, err
		}
		if sb, err = e.getSandbox(name); err != nil {
			return nil, err
		}
	}
	if sb.State == store.StateOpen {
		return e.reopen(ctx, sb)
	}
	// The cleanup first: it fences a root of this host's whose session
	// the ledger no longer shows open, into the recovery directory that
	// the checks below must then see.
	if err := e.cleanupSandbox(ctx, sb); err != nil {
		return nil, err
	}
	// Closes of this host's that the ledger lost (ledger_lost.go).
	if err := e.keepLostTakenOver(ctx, sb); err != nil {
		return nil, err
	}
	if err := e.checkNoLaterSessions(ctx, sb); err != nil {
		return nil, err
	}
	var (
		img      *store.Image
		nonEmpty bool
	)
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		if img, err = e.hostImage(tx, sb.Image); err != nil {
			return err
		}
		nonEmpty, err = stateNonEmpty(ctx, tx, sb)
		return err
	}); err != nil {
		return nil, err
	}
	if ok, err := e.snap.Exists(ctx, img.Snapshot); err != nil {
		return nil, err
	} else if !ok {
		// A ledger shared by several hosts: each imports the image once.
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "image %s is not imported on this host (%s): spillway image import %s SOURCE", img.Name, e.hostID, img.Name)
	}
	parent, baseDir := img.Snapshot, img.Dir
	var skipped []string
	if nonEmpty {
		key, dir, sk, err := e.ensureLayer(ctx, sb, img)
		if err != nil {
			return nil, err
		}
		parent, baseDir, skipped = key, dir, sk
	}
	n := sb.Session + 1
	skey := sessionKey(sb.Name, n)
	mounts, err := e.snap.Prepare(ctx, skey, parent)
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w", name, err) // err says "prepare snapshot …"
	}
	failpoint.Hit("open.root-prepared")
	target := e.MountPath(name)
	if err := e.makeMountPoint(target); err != nil {
		e.snap.Remove(ctx, skey)
		return nil, err
	}
	if err := snapshot.MountAll(mounts, target); err != nil {
		e.snap.Remove(ctx, skey)
		return nil, fmt.Errorf("root of %s: %w", name, err) // err says "mount …"
	}
	failpoint.Hit("open.mounted")
	now := e.Now()
	sb.State, sb.Session, sb.OpenGeneration = store.StateOpen, n, sb.Generation
	sb.Path, sb.Snapshot, sb.Layer, sb.BaseDir = target, skey, parent, baseDir
	if parent == img.Snapshot {
		sb.Layer = ""
	}
	err = e.commitUpdate("open", name, token, func(tx *store.Tx) error {
		// sb was read before the root was built: a change of the state
		// committed since (a review decision on another host) must not be
		// overwritten, and the root would not show it.
		cur, err := tx.GetSandbox(name)
		if err != nil {
			return err
		}
		if cur.Generation != sb.Generation || cur.Session+1 != n {
			return errclass.Errorf(errdefs.ErrAborted, "the state of %s changed while it was being opened (generation %d, now %d; session %d, now %d): open it again",
				name, sb.Generation, cur.Generation, n-1, cur.Session)
		}
		ses := &store.Session{Sandbox: name, N: n, State: store.StateOpen, Opened: now, Generation: sb.Generation, Host: e.hostID, Token: token}
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		_, err = tx.Append(e.Now(), "sandbox.open", name, map[string]string{
			"session": fmt.Sprint(n), "generation": fmt.Sprint(sb.Generation), "path": target,
		})
		return err
	})
	if errors.Is(err, store.ErrCommitUnknown) && e.openCommitted(ctx, name, n) {
		err = nil // the ledger did not answer the COMMIT, but it took place
	}
	if err != nil {
		snapshot.Unmount(target)
		e.snap.Remove(ctx, skey)
		return nil, err
	}
	failpoint.Hit("open.committed")
	if err := e.noteOpen(name, n); err != nil {
		return nil, err // open again: the session is open, reopen records it
	}
	return &Opened{Name: name, Path: target, Session: n, Generation: sb.Generation, Mounts: snapshot.HostMounts(mounts), Skipped: skipped}, nil
}

// openCommitted reads back whether this host's open of session n of name
// took place, after a COMMIT the ledger did not answer; false when it
// cannot tell (the ledger still not answering).
func (e *Env) openCommitted(ctx context.Context, name string, n uint64) bool {
	deadline := time.Now().Add(ledgerWait)
	for {
		var ses *store.Session
		err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(name, n); return err })
		switch {
		case err == nil:
			return ses.Host == e.hostID && ses.State == store.StateOpen
		case errors.Is(err, store.ErrNotFound), time.Now().After(deadline), ctx.Err() != nil:
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reopen returns the root of an open sandbox, mounting it again if it was
// unmounted behind spillway's back (e.g. after a reboot).
func (e *Env) reopen(ctx context.Context, sb *store.Sandbox) (*Opened, error) {
	mounts, err := e.snap.Mounts(ctx, sb.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w", sb.Name, err)
	}
	// A session opened before the journal was kept, or whose open ended
	// between its commit and the journal's write.
	if n, ok := e.openHere(sb.Name); !ok || n != sb.Session {
		if err := e.noteOpen(sb.Name, sb.Session); err != nil {
			return nil, err
		}
	}
	// The root of a session of this host's is at this host's mount point,
	// whatever path the (shared) ledger's row says.
	target := e.MountPath(sb.Name)
	mounted, err := snapshot.IsMounted(target)
	if err != nil {
		return nil, err
	}
	if !mounted {
		if err := e.makeMountPoint(target); err != nil {
			return nil, err
		}
		if err := snapshot.MountAll(mounts, target); err != nil {
			return nil, fmt.Errorf("mount root of %s again: %w", sb.Name, err)
		}
	}
	return &Opened{Name: sb.Name, Path: target, Session: sb.Session, Generation: sb.OpenGeneration, Mounts: snapshot.HostMounts(mounts), Already: true}, nil
}

func (e *Env) getSandbox(name string) (*store.Sandbox, error) {
	var sb *store.Sandbox
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		sb, err = tx.GetSandbox(name)
		return err
	})
	if err != nil {
		return nil, noSandbox(name, err)
	}
	if err := checkSandboxRow(sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// checkSandboxRow refuses a sandbox row that a shared ledger may hold
// without spillway having written it (any host with the ledger's
// credentials can write any row; the store checked its name): snapshot
// keys that are not this sandbox's own, which close reads and removes and
// open mounts. A closed sandbox's row keeps the key of its last session,
// which nothing reads but keepRootForRecovery, and that derives it.
func checkSandboxRow(sb *store.Sandbox) error {
	if sb.State != store.StateClosed && sb.Snapshot != "" && sb.Snapshot != sessionKey(sb.Name, sb.Session) {
		return errclass.Errorf(errdefs.ErrDataLoss, "sandbox row %q names snapshot %q, not its session's %q: a row spillway never writes (written by another host of a shared ledger, or by hand): remove or repair it", sb.Name, sb.Snapshot, sessionKey(sb.Name, sb.Session))
	}
	if sb.Layer != "" && !strings.HasPrefix(sb.Layer, sandboxKeyPrefix(sb.Name)+"gen/") {
		return errclass.Errorf(errdefs.ErrDataLoss, "sandbox row %q names layer %q, not one of its own: a row spillway never writes (written by another host of a shared ledger, or by hand): remove or repair it", sb.Name, sb.Layer)
	}
	return nil
}
