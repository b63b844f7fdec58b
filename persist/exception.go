package persist

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/whoami"
	"github.com/spillway/spillway/store"
)

// AddException validates and stores a new rule. Risky patterns are refused
// unless x.Forced; the findings are returned either way.
func (e *Env) AddException(ctx context.Context, x *exceptions.Exception) ([]exceptions.Finding, error) {
	if strings.TrimSpace(x.Reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why this exception exists"}
	}
	if len(x.Patterns) == 0 {
		return nil, invalidf("give at least one PATTERN")
	}
	if x.Review == "" {
		x.Review = change.ReviewAfter
	}
	if x.Review != change.ReviewAfter && x.Review != change.ReviewBefore {
		return nil, &InputError{Input: "review", Problem: fmt.Sprintf("must be after or before, not %q", x.Review)}
	}
	if err := x.Validate(); err != nil {
		return nil, invalidf("%w", err)
	}
	now := e.Now()
	if !x.Expires.IsZero() && !x.Expires.After(now) {
		return nil, &InputError{Input: "expires", Problem: "is in the past"}
	}
	findings := exceptions.Lint(x)
	if len(findings) > 0 && !x.Forced {
		return findings, &RiskyError{Findings: findings}
	}
	// Forced marks a rule that --force let past a check: lint's, or the
	// image's symlinks on its patterns' way.
	asked := x.Forced
	x.Forced = len(findings) > 0
	x.Created = now
	x.CreatedBy = whoami.Name()
	var linked *LinkedPatternError
	switch err := e.checkImageLinks(ctx, x); {
	case errors.As(err, &linked) && asked:
		x.Forced = true
	case err != nil && !asked:
		return nil, err // with --force, a check that cannot run (no image here) is passed, as before
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if _, err := tx.GetSandbox(x.Sandbox); err != nil {
			return noSandbox(x.Sandbox, err)
		}
		id, err := tx.NextExceptionID()
		if err != nil {
			return err
		}
		x.ID = id
		if err := tx.PutException(x); err != nil {
			return err
		}
		data := map[string]string{
			"exception": id, "patterns": strings.Join(x.Patterns, " "), "reason": x.Reason,
			"review": string(x.Review), "forced": fmt.Sprint(x.Forced),
		}
		if !x.Expires.IsZero() {
			data["expires"] = x.Expires.Format("2006-01-02T15:04:05Z07:00")
		}
		_, err = tx.Append(e.Now(), "exception.add", x.Sandbox, data)
		return err
	})
	if err == nil {
		e.warnShadowed(x, now)
	}
	return findings, err
}

// warnShadowed says which of x's patterns an older active rule of its
// sandbox matches first: the oldest matching rule decides (close and diff
// match rules oldest first), so x's review mode and limits never apply
// there. A narrower rule added for review before under a broad rule for
// review after let every such change through unreviewed, silently.
func (e *Env) warnShadowed(x *exceptions.Exception, now time.Time) {
	var rules []*exceptions.Exception
	if err := e.store.View(func(tx *store.Tx) (err error) {
		rules, err = tx.ListExceptions(x.Sandbox)
		return err
	}); err != nil {
		return
	}
	shadows := exceptions.Shadowed(x, rules, now)
	for _, p := range x.Patterns {
		y := shadows[p]
		if y == nil {
			continue
		}
		e.warnf("%s: paths of %s (such as %s) are matched first by the older %s (%s, review %s): the oldest matching exception decides, so %s's review mode and limits do not apply to them; revoke or narrow %s for %s to take effect there",
			x.ID, escape.Name(p), escape.Name(exceptions.SamplePath(p)), y.ID, escape.Name(strings.Join(y.Patterns, " ")), y.Review, x.ID, y.ID, x.ID)
	}
}

// Exceptions lists the rules of a sandbox ("" = all sandboxes); all adds
// revoked and expired ones.
func (e *Env) Exceptions(sandbox string, all bool) ([]*exceptions.Exception, error) {
	var out []*exceptions.Exception
	now := e.Now()
	err := e.store.View(func(tx *store.Tx) error {
		if sandbox != "" {
			if _, err := tx.GetSandbox(sandbox); errors.Is(err, store.ErrNotFound) {
				return noSandbox(sandbox, err)
			}
		}
		xs, err := tx.ListExceptions(sandbox)
		for _, x := range xs {
			if all || x.Active(now) {
				out = append(out, x)
			}
		}
		return err
	})
	return out, err
}

// ExceptionReport is a rule and what it let through.
type ExceptionReport struct {
	Exception *exceptions.Exception
	// PurgeUnfinished: a revoke --purge stopped between its batches; the
	// records it had not reached are still in effect.
	PurgeUnfinished bool
	Sessions        []uint64 // sessions in which it let something through
	Files           int64    // records it let through (not refused)
	Bytes           int64
	Refused         int64
	// IdleSessions counts the closed sessions since the rule was added (or
	// since it last matched) in which it matched nothing.
	IdleSessions int
}

// ShowException reports a rule and its effect.
func (e *Env) ShowException(ctx context.Context, id string) (*ExceptionReport, error) {
	rep := &ExceptionReport{}
	err := e.store.View(func(tx *store.Tx) error {
		x, err := tx.GetException(id)
		if err != nil {
			return noException(id, err)
		}
		rep.Exception = x
		_, purging, err := tx.GetMeta(purgingMeta(id))
		if err != nil {
			return err
		}
		rep.PurgeUnfinished = purging
		seen := map[uint64]bool{}
		var last uint64
		err = tx.ForEachExceptionRecord(ctx, id, func(r *store.Record) error {
			if r.Status == change.StatusRefused {
				rep.Refused++
			} else {
				rep.Files++
				rep.Bytes += r.Size
			}
			if !seen[r.Session] {
				seen[r.Session] = true
				rep.Sessions = append(rep.Sessions, r.Session)
			}
			if r.Session > last {
				last = r.Session
			}
			return nil
		})
		if err != nil {
			return err
		}
		sessions, err := tx.ListSessions(x.Sandbox)
		if err != nil {
			return err
		}
		// Refusals since the bounded summaries are counted per session
		// (older stores have refused records, counted above).
		for _, s := range sessions {
			for _, g := range s.Refusals {
				if g.Exception != id {
					continue
				}
				rep.Refused += g.Count
				if !seen[s.N] {
					seen[s.N] = true
					rep.Sessions = append(rep.Sessions, s.N)
				}
				last = max(last, s.N)
			}
		}
		slices.Sort(rep.Sessions)
		for _, s := range sessions {
			if s.State != store.StateClosed || s.N <= last || s.Closed.Before(x.Created) {
				continue
			}
			if !x.Revoked.IsZero() && s.Opened.After(x.Revoked) {
				continue
			}
			rep.IdleSessions++
		}
		return nil
	})
	return rep, err
}

// RevokeException stops a rule from matching; purge also takes every path it
// let through out of the persisted state, in new generations of up to
// decisionBatch records each (a rule can let through more than one
// transaction holds). An interrupted purge leaves whole batches purged;
// running it again purges the rest.
func (e *Env) RevokeException(ctx context.Context, id, reason string, purge bool) (purged int, err error) {
	if strings.TrimSpace(reason) == "" {
		return 0, &InputError{Input: "reason", Problem: "is required: say why the exception is revoked"}
	}
	if err := e.lockExceptionSandbox(id); err != nil {
		return 0, err
	}
	now := e.Now()
	if purge {
		if err := e.dropStagedCurrentOfException(ctx, id); err != nil {
			return 0, err
		}
	}
	var ids []uint64
	err = e.store.Update(func(tx *store.Tx) error {
		x, err := tx.GetException(id)
		if err != nil {
			return noException(id, err)
		}
		if !x.Revoked.IsZero() && !purge {
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "exception %s was already revoked on %s", id, x.Revoked.Format("2006-01-02 15:04"))
		}
		if x.Revoked.IsZero() {
			x.Revoked, x.RevokedBy, x.RevokeReason = now, whoami.Name(), reason
			if err := tx.PutException(x); err != nil {
				return err
			}
			if _, err := tx.Append(e.Now(), "exception.revoke", x.Sandbox, map[string]string{"exception": id, "reason": reason}); err != nil {
				return err
			}
		}
		if !purge {
			return nil
		}
		if err := tx.ForEachExceptionRecord(ctx, id, func(r *store.Record) error {
			if !r.Purged && r.Status != change.StatusRefused {
				ids = append(ids, r.ID)
			}
			return nil
		}); err != nil {
			return err
		}
		if len(ids) > decisionBatch {
			// Several batches: until the last, exception show and check
			// say the purge is unfinished.
			return tx.PutMeta(purgingMeta(id), fmt.Sprint(len(ids)))
		}
		return nil
	})
	if err != nil || !purge {
		return 0, err
	}
	for first := true; first || len(ids) > 0; first = false {
		if err := ctx.Err(); err != nil {
			// whole batches are purged: running it again purges the rest
			return purged, fmt.Errorf("purged %s of %s, then stopped (run it again to purge the rest): %w", plural(purged, "record"), plural(purged+len(ids), "record"), err)
		}
		n := min(len(ids), decisionBatch)
		var k int
		err := e.store.Update(func(tx *store.Tx) error {
			var err error
			if k, err = e.purgeBatch(tx, id, ids[:n]); err != nil || n < len(ids) {
				return err
			}
			return tx.DeleteMeta(purgingMeta(id)) // the last batch
		})
		if err == nil {
			purged += k
		}
		if err != nil && purged > 0 {
			return purged, fmt.Errorf("purged %s of %s, then: %w (run it again to purge the rest)", plural(purged, "record"), plural(purged+len(ids), "record"), err)
		} else if err != nil {
			return purged, err
		}
		failpoint.Hit("purge.batch")
		ids = ids[n:]
	}
	failpoint.Hit("purge.committed")
	return purged, nil
}

// purgingMeta is the meta key that marks a purge of exception id
// committed in several batches and not finished yet.
func purgingMeta(id string) string { return "purging/" + id }

// PurgeUnfinished returns the ids of the exceptions whose purge was
// interrupted between its batches, in key order.
func (e *Env) PurgeUnfinished(ctx context.Context) ([]string, error) {
	var out []string
	err := e.store.View(func(tx *store.Tx) error {
		return tx.ForEachMeta(ctx, purgingMeta(""), func(k, _ string) error {
			id := strings.TrimPrefix(k, purgingMeta(""))
			// Not one of a removed sandbox: its records went with it.
			if x, err := tx.GetException(id); err == nil {
				if _, err := tx.GetSandbox(x.Sandbox); err == nil {
					out = append(out, id)
				}
			}
			return nil
		})
	})
	return out, err
}

// purgeBatch marks the records ids of exception id purged, takes their
// paths out of the persisted state in a new generation, and audits it. A
// record purged since it was listed is skipped; a batch of none (a rule
// that let nothing through) is audited all the same.
func (e *Env) purgeBatch(tx *store.Tx, id string, ids []uint64) (int, error) {
	x, err := tx.GetException(id)
	if err != nil {
		return 0, noException(id, err)
	}
	var paths []string
	for _, rid := range ids {
		r, err := tx.GetRecord(rid)
		if err != nil {
			return 0, err
		}
		if r.Purged || r.Status == change.StatusRefused {
			continue
		}
		r.Purged = true
		if err := tx.PutRecord(r); err != nil {
			return 0, err
		}
		paths = append(paths, r.Path)
	}
	sb, err := tx.GetSandbox(x.Sandbox)
	if err != nil {
		return 0, err
	}
	if len(paths) > 0 {
		if err := refreshCurrent(tx, sb, sb.Generation+1, paths); err != nil {
			return 0, err
		}
		sb.Generation++
		if err := tx.PutSandbox(sb); err != nil {
			return 0, err
		}
	}
	_, err = tx.Append(e.Now(), "exception.purge", x.Sandbox, map[string]string{
		"exception": id, "records": fmt.Sprint(len(paths)), "generation": fmt.Sprint(sb.Generation),
	})
	return len(paths), err
}

// checkImageLinks refuses a pattern whose fixed prefix goes through a
// symlink of the sandbox's image: it would never match.
func (e *Env) checkImageLinks(ctx context.Context, x *exceptions.Exception) error {
	var img *store.Image
	err := e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(x.Sandbox)
		if err != nil {
			return noSandbox(x.Sandbox, err)
		}
		img, err = e.hostImage(tx, sb.Image)
		return err
	})
	if err != nil {
		return err
	}
	dir, err := e.snap.TreeDir(ctx, img.Snapshot, img.Dir)
	if err != nil {
		return err
	}
	for _, p := range x.Patterns {
		prefix := exceptions.FixedPrefix(p)
		if link, real, ok := linkOnPath(dir, prefix); ok {
			suggest := real + strings.TrimPrefix(p, prefix)
			return &LinkedPatternError{Image: img.Name, Link: link, Pattern: p, Suggest: suggest}
		}
	}
	return nil
}
