package persist

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// CloseOptions change what close does.
type CloseOptions struct {
	DryRun bool
	// BeforeUnmount runs before the root is unmounted, e.g. to refuse while
	// processes still use the sandbox or to stop them.
	BeforeUnmount func(ctx context.Context, sb *store.Sandbox) error
	// Progress is told the number of changes seen so far, now and then.
	Progress func(changes int64)
}

// PersistedFile is one change that crossed an exception.
type PersistedFile struct {
	Record    uint64 `json:"record,omitempty"`
	Path      string `json:"path"`
	PathBytes []byte `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      string `json:"kind"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest,omitempty"`
	Exception string `json:"exception"`
	Status    string `json:"status"`
}

// Refusal is one change that an exception matched but a safety rule or a
// limit stopped.
type Refusal struct {
	Path      string `json:"path"`
	PathBytes []byte `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      string `json:"kind"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	Exception string `json:"exception"`
	Reason    string `json:"reason"`
}

// ExceptionTotal sums what one exception let through in a session.
type ExceptionTotal struct {
	Exception string `json:"exception"`
	Files     int64  `json:"files"`
	Bytes     int64  `json:"bytes"`
}

// Discarded sums what a close threw away.
type Discarded struct {
	Count int64      `json:"count"`
	Bytes int64      `json:"bytes"`
	Top   []DirCount `json:"top"`
}

// CloseSummary is what close reports.
type CloseSummary struct {
	Sandbox       string           `json:"sandbox"`
	Session       uint64           `json:"session"`
	Generation    uint64           `json:"generation"`
	DryRun        bool             `json:"dry_run"`
	AlreadyClosed bool             `json:"already_closed"`
	Persisted     []PersistedFile  `json:"persisted"`
	Exceptions    []ExceptionTotal `json:"exceptions"`
	Refused       []Refusal        `json:"refused"`
	Discarded     Discarded        `json:"discarded"`
}

const recordBatch = 1000

// CloseSandbox persists what the exceptions let through, discards the rest
// and rolls the sandbox back (see the package doc for the protocol).
func (e *Env) CloseSandbox(ctx context.Context, name string, o CloseOptions) (*CloseSummary, error) {
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.Session == 0 {
		return nil, fmt.Errorf("sandbox %s was never opened (open it with: spillway open %s)", name, name)
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
		if _, err := e.Store.DeleteSessionRecordsChunked(name, sb.Session, recordBatch); err != nil {
			return nil, err
		}
		failpoint.Hit("close.records-cleared")
	}
	sum, err := e.collect(ctx, sb, o)
	if err != nil || o.DryRun {
		return sum, err
	}
	// Every blob the records name is durable before they take effect.
	if err := e.Blobs.Sync(); err != nil {
		return nil, err
	}
	if err := e.commitClose(sb, sum); err != nil {
		return nil, err
	}
	failpoint.Hit("close.committed")
	// The discarded files are unlinked in the background: a rollback of
	// many files need not hold up the close (docs/benchmarks.md).
	if err := e.Snap.RemoveDeferred(ctx, sb.Snapshot, e.TrashDir()); err != nil {
		return nil, fmt.Errorf("remove root of %s: %w", name, err)
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
	return sum, nil
}

func (e *Env) markClosing(sb *store.Sandbox) error { return e.setState(sb, store.StateClosing) }

// setState sets the state of the sandbox and its session.
func (e *Env) setState(sb *store.Sandbox, state string) error {
	return e.Store.Update(func(tx *store.Tx) error {
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

// collect walks the changes, decides each, stores the content of what
// persists and stages its records (not yet in effect: the session is not
// closed). In a dry run nothing is written.
func (e *Env) collect(ctx context.Context, sb *store.Sandbox, o CloseOptions) (*CloseSummary, error) {
	var rules []*exceptions.Exception
	if err := e.Store.View(func(tx *store.Tx) error {
		var err error
		rules, err = e.activeRules(tx, sb.Name)
		return err
	}); err != nil {
		return nil, err
	}
	sum := &CloseSummary{Sandbox: sb.Name, Session: sb.Session, Generation: sb.Generation, DryRun: o.DryRun}
	totals := map[string]*ExceptionTotal{}
	files, bytes := map[string]int64{}, map[string]int64{}
	var disc discardStats
	var batch []*store.Record
	now := e.Now()
	flush := func() error {
		if len(batch) == 0 || o.DryRun {
			batch = batch[:0]
			return nil
		}
		err := e.Store.Update(func(tx *store.Tx) error {
			for _, r := range batch {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r.ID = id
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		failpoint.Hit("close.batch-staged")
		for _, r := range batch {
			if r.Status != store.StatusRefused {
				sum.Persisted = append(sum.Persisted, PersistedFile{Record: r.ID, Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: r.Size, Digest: r.Digest, Exception: r.Exception, Status: r.Status})
			}
		}
		batch = batch[:0]
		return nil
	}
	var seen int64
	err := e.walkChanges(ctx, sb, func(root string, c hostile.Change) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		seen++
		if o.Progress != nil && seen%1000 == 0 {
			o.Progress(seen)
		}
		d := decide(rules, c, files, bytes, now)
		if d.Verdict == VerdictDiscard {
			disc.add(c)
			return nil
		}
		r := newRecord(sb, d, now)
		if d.Verdict == VerdictPersist && c.Kind != hostile.KindDelete {
			if err := e.readContent(root, d, r, o.DryRun); err != nil {
				return err
			}
		}
		if r.Status == store.StatusRefused {
			sum.Refused = append(sum.Refused, Refusal{Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: c.Size, Exception: r.Exception, Reason: r.Reason})
		} else {
			t := totals[r.Exception]
			if t == nil {
				t = &ExceptionTotal{Exception: r.Exception}
				totals[r.Exception] = t
				sum.Exceptions = append(sum.Exceptions, ExceptionTotal{})
			}
			if r.Kind != store.KindDelete && r.Type != "dir" {
				t.Files++
				t.Bytes += r.Size
			}
			if o.DryRun {
				sum.Persisted = append(sum.Persisted, PersistedFile{Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: r.Size, Exception: r.Exception, Status: r.Status})
			}
		}
		batch = append(batch, r)
		if len(batch) >= recordBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read changes of %s: %w", sb.Name, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	sum.Exceptions = sum.Exceptions[:0]
	for _, x := range rules {
		if t := totals[x.ID]; t != nil {
			sum.Exceptions = append(sum.Exceptions, *t)
		}
	}
	sum.Discarded = Discarded{Count: disc.Count, Bytes: disc.Bytes, Top: disc.top(5)}
	if sum.Persisted == nil {
		sum.Persisted = []PersistedFile{}
	}
	if sum.Exceptions == nil {
		sum.Exceptions = []ExceptionTotal{}
	}
	if sum.Refused == nil {
		sum.Refused = []Refusal{}
	}
	return sum, nil
}
