package persist

import (
	"context"
	"errors"
	"fmt"
	"os"

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
	defer e.progress.Done()
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.Session == 0 {
		return nil, &NeverOpenedError{Sandbox: name}
	}
	if sb.State == store.StateClosed {
		return e.alreadyClosed(ctx, sb)
	}
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
		if err := e.unmountRoot(name, sb.Path, sb.State); err != nil {
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
		// them in chunks keeps each transaction small.
		if _, err := e.store.DeleteSessionRecordsChunked(ctx, name, sb.Session, recordBatch); err != nil {
			return nil, err
		}
		if _, err := e.store.DropCurrentAbove(ctx, name, sb.Generation); err != nil {
			return nil, err
		}
		failpoint.Hit("close.records-cleared")
	}
	sum, err := e.collect(ctx, sb, o)
	if err != nil || o.DryRun {
		return sum, err
	}
	// Every blob the records name is durable before they take effect.
	if err := e.blobs.Sync(); err != nil {
		return nil, err
	}
	if err := e.commitClose(sb, sum); err != nil {
		return nil, err
	}
	failpoint.Hit("close.committed")
	// The discarded files are unlinked in the background: a rollback of
	// many files need not hold up the close (docs/benchmarks.md).
	if err := e.snap.RemoveDeferred(ctx, sb.Snapshot, e.TrashDir()); err != nil {
		return nil, fmt.Errorf("root of %s: %w", name, err) // err says "remove snapshot …"
	}
	failpoint.Hit("close.root-removed")
	sb, err = e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if err := e.cleanupSandbox(ctx, sb); err != nil {
		return nil, err
	}
	failpoint.Hit("close.cleaned")
	os.Remove(e.MountPath(name))
	if sb.Session > manifestSessions {
		// Best effort: a manifest left over is removed by a later close.
		e.pruneManifests(name, sb.Session-manifestSessions+1)
	}
	return sum, nil
}

func (e *Env) markClosing(sb *store.Sandbox) error { return e.setState(sb, store.StateClosing) }

// setState sets the state of the sandbox and its session.
func (e *Env) setState(sb *store.Sandbox, state string) error {
	return e.store.Update(func(tx *store.Tx) error {
		cur, err := tx.GetSandbox(sb.Name)
		if err != nil {
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
