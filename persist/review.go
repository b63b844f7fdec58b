package persist

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// Reviewable says whether a pending record waits for a reviewer: it belongs
// to a committed close and was not purged by `exception revoke --purge`.
func Reviewable(sb *store.Sandbox, r *store.Record) bool {
	if r.Status != change.StatusPending || r.Purged {
		return false
	}
	return !(sb.State == store.StateClosing && r.Session == sb.Session)
}

// ReviewList returns the records that wait for review, of one sandbox ("" =
// all), by ascending id.
func (e *Env) ReviewList(ctx context.Context, sandbox string) ([]*store.Record, error) {
	out := []*store.Record{}
	err := e.ReviewEach(ctx, sandbox, 0, func(r *store.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// ReviewEach calls fn for each record that waits for review, as ReviewList
// lists them, without collecting them first: the first page of a million
// pending records prints at once. It starts after the record id after (0:
// at the first), reading nothing before it: the way to the next page.
func (e *Env) ReviewEach(ctx context.Context, sandbox string, after uint64, fn func(*store.Record) error) error {
	var d danglingPending
	err := e.store.View(func(tx *store.Tx) error {
		d = danglingPending{} // a retried read counts afresh
		return reviewEach(ctx, tx, sandbox, after, fn, d.note)
	})
	d.warn(e)
	return err
}

// danglingPending counts the entries of the pending index a review walk
// skipped because they name no record.
type danglingPending struct {
	n     int
	first uint64
}

func (d *danglingPending) note(id uint64) {
	if d.n == 0 {
		d.first = id
	}
	d.n++
}

// warn tells the user about the skipped entries, if any.
func (d *danglingPending) warn(e *Env) {
	switch d.n {
	case 0:
	case 1:
		e.warnf("the pending index names record %d, which does not exist: not listed (a damaged ledger, or a host that wrote rows it should not; spillway check lists such entries)", d.first)
	default:
		e.warnf("the pending index names %d records that do not exist (the first: %d): not listed (a damaged ledger, or a host that wrote rows it should not; spillway check lists such entries)", d.n, d.first)
	}
}

// ReviewEachHost is ReviewEach telling also the host that opened the
// session whose close wrote each record ("" when the session names none),
// read in the same transaction, once per session.
func (e *Env) ReviewEachHost(ctx context.Context, sandbox string, after uint64, fn func(r *store.Record, host string) error) error {
	var d danglingPending
	defer d.warn(e)
	return e.store.View(func(tx *store.Tx) error {
		d = danglingPending{} // a retried read counts afresh
		hosts := map[sessionRef]string{}
		return reviewEach(ctx, tx, sandbox, after, func(r *store.Record) error {
			host, err := recordHost(tx, r, hosts)
			if err != nil {
				return err
			}
			return fn(r, host)
		}, d.note)
	})
}

// reviewEach is ReviewEach within tx, passing to missing the id of each
// entry of the pending index that names no record (skipped).
func reviewEach(ctx context.Context, tx *store.Tx, sandbox string, after uint64, fn func(*store.Record) error, missing func(id uint64)) error {
	sbs := map[string]*store.Sandbox{}
	if sandbox != "" {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		sbs[sandbox] = sb
	}
	return tx.ForEachPendingMissing(ctx, sandbox, after, func(r *store.Record) error {
		if sandbox != "" && r.Sandbox != sandbox {
			// An entry of this sandbox's pending index naming another
			// sandbox's record: spillway never writes one, but any host
			// of a shared ledger can. The record is listed under its
			// own sandbox (the index of all sandboxes), never here: a
			// queue scoped to one sandbox shows only its records.
			return nil
		}
		sb, seen := sbs[r.Sandbox]
		if !seen {
			var err error
			sb, err = tx.GetSandbox(r.Sandbox)
			switch {
			case errdefs.IsNotFound(err):
				sb = nil // a sandbox a fleet import has not finished: not listed yet
			case err != nil:
				return err
			}
			sbs[r.Sandbox] = sb
		}
		if sb == nil {
			return nil
		}
		if Reviewable(sb, r) {
			return fn(r)
		}
		return nil
	}, missing)
}

// ReviewReport is a record as a reviewer sees it: the change, the rule that
// let it through, the version it replaces and what differs.
type ReviewReport struct {
	Record    *store.Record
	Sandbox   *store.Sandbox
	Exception *exceptions.Exception // nil when the rule is gone
	InEffect  bool                  // the record is part of the persisted state now
	// Previous is the version this record replaces: the newest older record
	// of the same path in effect, else the newest older one that kept
	// content; nil when the path had no record before (the image's version,
	// or nothing).
	Previous *store.Record
	Diff     *Diff
}

// ReviewShow reports record id for review.
func (e *Env) ReviewShow(id uint64) (*ReviewReport, error) {
	rep := &ReviewReport{}
	err := e.store.View(func(tx *store.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		rep.Record = r
		if rep.Sandbox, err = tx.GetSandbox(r.Sandbox); err != nil {
			return err
		}
		rep.InEffect = InEffect(rep.Sandbox, r)
		if r.Exception != "" {
			x, err := tx.GetException(r.Exception)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			rep.Exception = x
		}
		hist, err := tx.PathHistory(r.Sandbox, r.Path)
		if err != nil {
			return err
		}
		rep.Previous = previousVersion(rep.Sandbox, hist, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Diff, err = e.diffRecords(rep.Previous, rep.Record)
	return rep, err
}

// previousVersion picks the version r replaces from the path's history.
func previousVersion(sb *store.Sandbox, hist []*store.Record, r *store.Record) *store.Record {
	var anyPrev *store.Record
	for i := len(hist) - 1; i >= 0; i-- {
		h := hist[i]
		if h.ID >= r.ID || h.Status == change.StatusRefused {
			continue
		}
		if InEffect(sb, h) {
			return h
		}
		if anyPrev == nil {
			anyPrev = h
		}
	}
	return anyPrev
}

// getRecord returns record id, with an error a user can act on.
func getRecord(tx *store.Tx, id uint64) (*store.Record, error) {
	r, err := tx.GetRecord(id)
	if err != nil {
		return nil, noRecord(id, err)
	}
	return r, nil
}
