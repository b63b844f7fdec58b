package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/store"
)

// CloseOptions change what close does.
type CloseOptions struct {
	DryRun bool
	// BeforeUnmount runs before the root is unmounted, e.g. to refuse while
	// processes still use the sandbox or to stop them.
	BeforeUnmount func(ctx context.Context, sb *store.Sandbox) error
}

const recordBatch = 1000

// CloseSandbox persists what the exceptions let through, discards the rest
// and rolls the sandbox back (see the package doc for the protocol).
func (e *Env) CloseSandbox(ctx context.Context, name string, o CloseOptions) (*CloseSummary, error) {
	if err := e.lockSandbox(name); err != nil {
		return nil, err
	}
	defer e.progress.Done()
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.Session == 0 {
		// Closed since its creation: a close of a closed sandbox says so
		// and succeeds (SPEC), whether or not it was ever opened.
		sum := &CloseSummary{Sandbox: name, AlreadyClosed: true, NeverOpened: true}
		sum.fillEmpty()
		return sum, nil
	}
	if !o.DryRun {
		// This host's root of a session another host took over: fenced.
		if err := e.fenceAbandoned(ctx, name); err != nil {
			return nil, err
		}
	}
	if sb.State == store.StateClosed {
		// A close run again after this host was fenced: the fence, not
		// "already closed" (another host's close).
		fenced, err := e.fencedEarlier(name)
		if err != nil {
			return nil, err
		}
		if fenced != nil {
			return nil, fenced
		}
		return e.alreadyClosed(ctx, sb)
	}
	// The ledger's session of this host's with no root here: the ledger
	// lost this host's commit of it, or the root went otherwise.
	if err := e.checkRootHere(ctx, sb); err != nil {
		return nil, err
	}
	if !o.DryRun {
		token, err := e.sessionLease(name, sb.Session)
		if store.IsFenced(err) {
			return nil, e.fence(ctx, name, sb.Session, err)
		}
		var elsewhere *openOnHostError
		if errors.As(err, &elsewhere) {
			// Another host's session: this host's own may have been
			// fenced before it (a close run again).
			fenced, ferr := e.fencedEarlier(name)
			if ferr != nil {
				return nil, ferr
			}
			if fenced != nil {
				return nil, fenced
			}
		}
		if err != nil {
			return nil, err
		}
		if e.closing == nil {
			e.closing = map[string]uint64{}
		}
		e.closing[name] = token
		defer delete(e.closing, name)
	}
	sum, err := e.closeSession(ctx, sb, o)
	if store.IsFenced(err) {
		return nil, e.fence(ctx, name, sb.Session, err)
	}
	return sum, err
}

// closeSession is CloseSandbox from the check for holders on, for a
// session this host holds the lease of.
func (e *Env) closeSession(ctx context.Context, sb *store.Sandbox, o CloseOptions) (*CloseSummary, error) {
	name := sb.Name
	// This host's session: its root is at this host's mount point, never
	// at a path the (shared) ledger's row names.
	sb.Path = e.MountPath(name)
	if o.BeforeUnmount != nil && sb.State == store.StateOpen && !o.DryRun {
		if err := o.BeforeUnmount(ctx, sb); err != nil {
			return nil, err
		}
	}
	if !o.DryRun {
		// Nothing may hold the root while close reads it: find holders
		// first and change nothing while there are any.
		if err := e.refuseHeld(sb); err != nil {
			return nil, err
		}
		if err := e.refuseForeignMounts(ctx, sb); err != nil {
			return nil, err
		}
		if afterScan != nil {
			afterScan()
		}
		wasOpen := sb.State == store.StateOpen
		if wasOpen {
			if err := e.markClosing(sb); err != nil {
				return nil, err
			}
			failpoint.Hit("close.marked-closing")
		}
		if err := e.unmountRoot(name, e.MountPath(name), sb.State); err != nil {
			// A holder came between the scan and the unmount: the root
			// is intact, so the sandbox is open again.
			if wasOpen {
				err = errors.Join(err, e.setState(sb, store.StateOpen))
				var be *BusyError
				if errors.As(err, &be) {
					be.State = sb.State
				}
			}
			return nil, err
		}
		failpoint.Hit("close.unmounted")
		// Records staged by an earlier try are not in effect; deleting
		// them in chunks keeps each transaction small. Records of this
		// session are staged only once it is closing, so a close that
		// found it open has none to delete.
		if !wasOpen {
			if _, err := e.store.DeleteSessionRecordsChunked(ctx, name, sb.Session, recordBatch); err != nil {
				return nil, err
			}
		}
		if !wasOpen || abandonedBefore(sb) {
			// Only an earlier try of this close, or a session abandoned to
			// this one, can have staged index versions above G: reading
			// the whole index (DropCurrentAbove) is skipped otherwise.
			if _, err := e.store.DropCurrentAbove(ctx, name, sb.Generation); err != nil {
				return nil, err
			}
		}
		failpoint.Hit("close.records-cleared")
	}
	sum, err := e.collect(ctx, sb, o)
	if err == nil {
		err = e.noteDecidedWhileOpen(ctx, sb, sum)
	}
	if err != nil || o.DryRun {
		return sum, err
	}
	// Every blob the records name is durable before they take effect.
	if err := e.blobs.Sync(); err != nil {
		return nil, err
	}
	if err := e.commitClose(ctx, sb, sum); err != nil {
		return nil, err
	}
	failpoint.Hit("close.committed")
	if sum.hadDecidedNotes {
		if err := e.dropDecidedWhileOpen(ctx, name, sb.Session); err != nil {
			e.warnf("close of %s: %v", name, err)
		}
	}
	closed := *sb
	if testHookCloseCommitted != nil {
		testHookCloseCommitted(name)
	}
	sb, err = e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.Session != closed.Session {
		// The lease went with the commit, and another host has opened
		// the sandbox since: what is left here is this close's session,
		// at the generation it committed.
		closed.State, closed.Generation = store.StateClosed, sum.Generation
		sb = &closed
	}
	// Should the ledger lose this commit, this host can tell (ledger_lost.go).
	e.noteCommitted(name, closed.Session, sum.Generation, sum)
	// What close did not persist goes to the recovery area (a rename on
	// overlay) before the root goes.
	if err := e.keepForRecovery(ctx, sb); err != nil {
		return nil, err
	}
	// The discarded files are unlinked in the background: a rollback of
	// many files need not hold up the close (docs/benchmarks.md).
	if err := e.snap.RemoveDeferred(ctx, sb.Snapshot, e.TrashDir()); err != nil {
		return nil, fmt.Errorf("root of %s: %w", name, err) // err says "remove snapshot …"
	}
	failpoint.Hit("close.root-removed")
	if err := e.cleanupSandbox(ctx, sb); err != nil {
		return nil, err
	}
	failpoint.Hit("close.cleaned")
	os.Remove(e.MountPath(name))
	e.retainAfterClose(sb, sum)
	return sum, nil
}

// testHookCloseCommitted, when set, runs right after a close committed
// (tests: another host opens the sandbox in that moment).
var testHookCloseCommitted func(name string)

// retainAfterClose applies the sandbox's retention and the root-wide cap
// after a close and tells the summary what is kept of the session, and
// until when. Trouble here never fails the committed close: it is
// reported, and gc tries again.
func (e *Env) retainAfterClose(sb *store.Sandbox, sum *CloseSummary) {
	if keepsNothing(retentionOf(sb)) && sum.Manifest != "" {
		// Nothing is kept, not even the list: keep it open for the
		// summary's full list of refusals.
		if f, err := os.Open(sum.Manifest); err == nil {
			sum.tmp = f
		}
	}
	if _, err := e.applyRetention(sb.Name); err != nil {
		e.warnf("recovery area of %s: %v", sb.Name, err)
	}
	failpoint.Hit("close.retention-applied")
	if _, err := e.enforceCap(); err != nil {
		e.warnf("recovery area: %v", err)
	}
	sum.Recovery = e.keptOf(sb, sum)
	if _, err := os.Lstat(sum.Manifest); err != nil {
		sum.Manifest = "" // retention took it: the summary's list is all there is
	}
}

// keptOf says what the recovery area keeps of sb's last session, and
// until when.
func (e *Env) keptOf(sb *store.Sandbox, sum *CloseSummary) *RecoveryKept {
	k := &RecoveryKept{Session: sb.Session}
	rs := e.loadSession(sb.Name, sb.Session)
	if _, err := os.Lstat(rs.dir); err == nil {
		now := e.Now()
		r, last := retentionOf(sb), lastClosed(sb)
		newer := 0
		if sessions, err := e.recoverySessions(sb.Name); err == nil {
			newer = newerKept(r, sessions, last, now)[rs.n]
		}
		k.RefusedUntil, k.DiscardedUntil = expiry(r, rs, newer, last)
		if sum.RefusedCount == 0 || !now.Before(k.RefusedUntil) {
			k.RefusedUntil = time.Time{}
		}
		if sum.Discarded.Count == 0 || !now.Before(k.DiscardedUntil) {
			k.DiscardedUntil = time.Time{}
		}
	}
	return k
}

// abandonedBefore says whether the session before sb's was abandoned to
// another host: its close may have staged index versions above the
// generation before it lost the lease. Every close after an abandoned
// session drops them, so older sessions need no look.
func abandonedBefore(sb *store.Sandbox) bool {
	return sb.Session > 1 && slices.Contains(sb.Abandoned, sb.Session-1)
}

func (e *Env) markClosing(sb *store.Sandbox) error { return e.setState(sb, store.StateClosing) }

// setState sets the state of the sandbox and its session.
func (e *Env) setState(sb *store.Sandbox, state string) error {
	return e.updateAsHolder(e.store.UpdateLeased, sb.Name, e.closing[sb.Name], func(tx *store.Tx) error {
		cur, err := tx.GetSandbox(sb.Name)
		if err != nil {
			return err
		}
		if err := checkSandboxRow(cur); err != nil {
			return err
		}
		cur.State = state
		ses, err := tx.GetSession(sb.Name, sb.Session)
		if err != nil {
			return err
		}
		ses.State = state
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		*sb = *cur
		return tx.PutSandbox(cur)
	})
}
