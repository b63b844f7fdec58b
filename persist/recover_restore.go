package persist

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// RestoreOptions say what `recover restore` puts back.
type RestoreOptions struct {
	Paths   []string
	Session uint64            // 0: the newest session that holds each path
	To      string            // one path only: where it goes ("" = where it was)
	Review  change.ReviewMode // change.ReviewAfter (default) or ReviewBefore
	Force   bool              // restore to a target lint finds risky
	Reason  string            // required
}

// RestoreInEffect is the reason restore gives for an entry whose content
// is the version in effect at its target already: restoring it again is
// no change (a second run of the same restore adds nothing).
const RestoreInEffect = "already-in-effect"

// RestorePending is the reason restore gives for an entry an earlier
// restore (review before) already put in the review queue, the same
// version: rerunning a restore killed between its batches adds no second
// pending record.
const RestorePending = "already-pending"

// Skipped is an entry restore left out, and why (a safety rule, or
// RestoreInEffect).
type Skipped struct {
	Path      string `json:"path"`
	PathBytes []byte `json:"path_bytes,omitempty"`
	Reason    string `json:"reason"`
}

// RestoreResult is what a restore put into the persisted state.
type RestoreResult struct {
	Sandbox    string          `json:"sandbox"`
	Generation uint64          `json:"generation"`
	Records    []PersistedFile `json:"records"`
	Skipped    []Skipped       `json:"skipped"`
}

// RecoverRestore puts paths from the recovery area into a closed
// sandbox's persisted state as records of exception "recover" (pending
// review, audited; a new generation). It obeys close's safety rules
// (symlinks never followed nor restored, special files refused, setuid,
// setgid, sticky and execute bits dropped) and the lint of the targets
// (a risky one needs Force), not an exception's limits.
func (e *Env) RecoverRestore(ctx context.Context, sandbox string, o RestoreOptions) (*RestoreResult, error) {
	if err := e.lockSandbox(sandbox); err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.Reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why the content comes back"}
	}
	if o.Review == "" {
		o.Review = change.ReviewAfter
	}
	if o.Review != change.ReviewAfter && o.Review != change.ReviewBefore {
		return nil, &InputError{Input: "review", Problem: fmt.Sprintf("must be after or before, not %q", o.Review)}
	}
	if len(o.Paths) == 0 {
		return nil, invalidf("name the paths to restore")
	}
	if o.To != "" && len(o.Paths) != 1 {
		return nil, invalidf("--to takes one path, not %d", len(o.Paths))
	}
	if o.To != "" && !cleanAbs(o.To) {
		return nil, &InputError{Input: "to", Problem: fmt.Sprintf("%s is not a clean absolute path", escape.Name(o.To))}
	}
	sb, err := e.getSandbox(sandbox)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateClosed {
		if err := e.checkOpenHere(sb, "restore works on a closed sandbox (close it there first)"); err != nil {
			return nil, err
		}
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is %s: restore works on a closed sandbox (close it first)", sandbox, sb.State)
	}
	type item struct {
		rs     *recoverySession
		x      RecoverEntry
		target string
	}
	var items []item
	var targets []string
	fs, err := e.findRecoverables(ctx, sandbox, o.Session, o.Paths)
	if err != nil {
		return nil, err
	}
	for i, p := range o.Paths {
		f := fs[i]
		to := p
		if o.To != "" {
			to = o.To
		}
		targets = append(targets, escapePattern(to))
		for _, x := range f.all() {
			t := to + strings.TrimPrefix(x.Path, p)
			if p == "/" {
				t = strings.TrimSuffix(to, "/") + x.Path
			}
			items = append(items, item{f.rs, x, t})
		}
	}
	if findings := exceptions.LintPatterns(targets, false, false); len(findings) > 0 && !o.Force {
		return nil, &RiskyError{Findings: findings, Restore: true}
	}
	res := &RestoreResult{Sandbox: sandbox, Records: []PersistedFile{}, Skipped: []Skipped{}}
	var state State
	pending := map[string]*store.Record{} // restores held for review, by path
	if err := e.store.View(func(tx *store.Tx) error {
		if state, err = LoadState(ctx, tx, sb); err != nil {
			return err
		}
		return tx.ForEachPending(ctx, sandbox, func(r *store.Record) error {
			if r.Exception == RecoverID && r.Review == change.ReviewBefore && !r.Purged {
				pending[r.Path] = r
			}
			return nil
		})
	}); err != nil {
		return nil, err
	}
	reach := e.newReachable(ctx, sb, state)
	for _, it := range items {
		if it.x.Kind != change.KindDelete && it.x.Type == change.TypeDir {
			reach.dirs[it.target] = true
		}
	}
	for _, it := range items {
		if it.x.Kind == change.KindDelete {
			continue // a delete under a link removes nothing the open applies
		}
		if err := reach.check(it.target); err != nil {
			return nil, err
		}
	}
	now := e.Now()
	var recs []*store.Record
	for _, it := range items {
		r, why, err := e.restoreRecord(sb, it.rs, it.x, it.target, state, o, now)
		if err == nil && r != nil && r.Type == change.TypeDir && r.Kind != change.KindDelete {
			r.Kind, r.MetaOnly = keptDir(r.Kind, it.target, state, reach)
		}
		if err != nil {
			return nil, err
		}
		if p := pending[it.target]; why == "" && p != nil && p.Kind == r.Kind && p.Type == r.Type && p.Digest == r.Digest && p.Mode == r.Mode {
			why = RestorePending
		}
		if why != "" {
			res.Skipped = append(res.Skipped, Skipped{Path: it.x.Path, PathBytes: exactBytes(it.x.Path), Reason: why})
			continue
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 && allInEffect(res.Skipped) {
		res.Generation = sb.Generation // nothing changes: no record, no generation
		return res, nil
	}
	if len(recs) == 0 {
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "nothing to restore: %s", skippedText(res.Skipped))
	}
	if err := e.blobs.Sync(); err != nil {
		return nil, err
	}
	// The recovery sessions the entries came from (--session, or the
	// newest holding each path), for the audit entry.
	var from []string
	for _, it := range items {
		if n := fmt.Sprint(it.rs.n); !slices.Contains(from, n) {
			from = append(from, n)
		}
	}
	// Batches of restoreBatchSize records, each a generation with its audit
	// entry, as revoke --purge does: one transaction of 3,000 records was
	// "transaction too big" on badger, and nothing was restored. A restore
	// interrupted between batches is finished by running it again (the
	// entries in effect are skipped).
	audit := map[string]string{
		"paths": strings.Join(o.Paths, " "), "to": o.To, "session": from[0],
		"skipped": fmt.Sprint(len(res.Skipped)), "review": string(o.Review), "forced": fmt.Sprint(o.Force),
		"reason": o.Reason,
	}
	if len(from) > 1 {
		audit["sessions"] = strings.Join(from, " ") // the entries came from several
	}
	batches := (len(recs) + restoreBatchSize - 1) / restoreBatchSize
	for start := 0; start < len(recs); start += restoreBatchSize {
		batch := recs[start:min(start+restoreBatchSize, len(recs))]
		if batches > 1 {
			audit["batch"] = fmt.Sprintf("%d of %d", start/restoreBatchSize+1, batches)
		}
		if err := e.restoreBatch(sandbox, batch, audit, now, &res.Generation); err != nil {
			if start > 0 {
				return nil, fmt.Errorf("%w (%d of %d records restored, in generation %d: run the same restore again to finish it)", err, start, len(recs), res.Generation)
			}
			return nil, err
		}
		failpoint.Hit("recover.batch")
	}
	failpoint.Hit("recover.committed")
	for _, r := range recs {
		res.Records = append(res.Records, PersistedFile{Record: r.ID, Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: r.Size, Digest: r.Digest, Exception: r.Exception, Status: r.Status})
	}
	return res, nil
}

// restoreBatchSize is how many records one transaction of a restore commits.
const restoreBatchSize = 500

// restoreBatch commits a batch of a restore's records: the records, a new
// generation (into *gen) and the audit entry, audit's data with the
// batch's records and generation.
func (e *Env) restoreBatch(sandbox string, recs []*store.Record, audit map[string]string, now time.Time, gen *uint64) error {
	return e.store.Update(func(tx *store.Tx) error {
		cur, err := tx.GetSandbox(sandbox)
		if err != nil {
			return err
		}
		if cur.State != store.StateClosed {
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is %s: restore works on a closed sandbox (close it first)", sandbox, cur.State)
		}
		for _, r := range recs {
			if r.ID, err = tx.NextRecordID(); err != nil {
				return err
			}
			r.Session = cur.Session
			if err := tx.PutRecord(r); err != nil {
				return err
			}
			if e.sharedLedger() {
				// the host that restores it, whichever opened cur.Session
				if err := tx.PutMeta(restoredByMeta(sandbox, r.ID), e.hostID); err != nil {
					return err
				}
			}
			if inEffectIndex(r) {
				if err := tx.PutCurrent(sandbox, r.Path, cur.Generation+1, r.ID); err != nil {
					return err
				}
			}
		}
		cur.Generation++
		*gen = cur.Generation
		if err := tx.PutSandbox(cur); err != nil {
			return err
		}
		data := maps.Clone(audit)
		data["records"], data["record_ids"] = fmt.Sprint(len(recs)), recordIDs(recs)
		data["generation"] = fmt.Sprint(cur.Generation)
		_, err = tx.Append(now, "recover.restore", sandbox, data)
		return err
	})
}

// keptDir returns the kind of a restored directory's record at target
// and whether it is MetaOnly: a directory the next open has there already
// (one of the state, one that holds records of the state, or the image's)
// keeps what it holds — a restore adds, it never empties a directory.
func keptDir(kind change.Kind, target string, state State, reach *reachable) (change.Kind, bool) {
	if cur := state[target]; cur != nil && (cur.Kind == change.KindDelete || cur.Type != change.TypeDir) {
		return kind, false // a delete, a file or a link: the directory replaces it
	}
	if reach.existingDir(target) {
		return change.KindModify, true
	}
	return kind, false
}

// restoreRecord makes the record of one entry restored at target, storing
// its content; why says why it is skipped instead.
func (e *Env) restoreRecord(sb *store.Sandbox, rs *recoverySession, x RecoverEntry, target string, state State, o RestoreOptions, now time.Time) (*store.Record, string, error) {
	r := &store.Record{Sandbox: sb.Name, Path: target, Kind: x.Kind, Type: x.Type, Exception: RecoverID,
		Review: o.Review, Created: now, Status: change.StatusPending, Mtime: now}
	if x.Kind != change.KindDelete {
		r.Kind = change.KindAdd
		if _, ok := state[target]; ok || x.Kind == change.KindModify && o.To == "" {
			r.Kind = change.KindModify
		}
	}
	cur := state[target]
	switch {
	case x.Kind == change.KindDelete:
		if cur != nil && cur.Kind == change.KindDelete {
			return nil, RestoreInEffect, nil
		}
		return r, "", nil
	case x.Type == change.TypeDir:
		// The directory's mode and owner as the recovery area keeps them
		// (0755 and root's where it kept no directory).
		r.Mode = 0o755
		if tree, err := treeOf(rs, x); err == nil {
			if en, err := hostile.Entry(tree, x.Path); err == nil && en.Type == change.TypeDir {
				r.Mode, r.UID, r.GID = en.Mode&DirModeBits, en.UID, en.GID
			}
		}
		if cur != nil && cur.Kind != change.KindDelete && cur.Type == change.TypeDir && cur.Mode == r.Mode && cur.UID == r.UID && cur.GID == r.GID {
			return nil, RestoreInEffect, nil
		}
		return r, "", nil
	case x.Type == change.TypeSymlink:
		return nil, RefuseSymlink, nil
	case x.Type != change.TypeFile:
		return nil, RefuseSpecial, nil
	}
	tree, err := treeOf(rs, x)
	if err != nil {
		return nil, "", err
	}
	f, err := hostile.OpenFile(tree, x.Path, hostile.Change{}, math.MaxInt64)
	switch {
	case errors.Is(err, hostile.ErrSymlink):
		return nil, RefuseSymlink, nil
	case errors.Is(err, hostile.ErrSpecial):
		return nil, RefuseSpecial, nil
	case errors.Is(err, hostile.ErrTooDeep):
		return nil, RefuseTooDeep, nil
	case err != nil:
		return nil, "", unsafeEntry(x, err)
	}
	defer f.Close()
	st := f.Stat()
	digest, size, err := e.blobs.Put(f)
	if err != nil {
		return nil, "", fmt.Errorf("restore %s: %w", escape.Name(x.Path), err)
	}
	if err := f.Verify(); err != nil {
		return nil, RefuseChanged, nil
	}
	r.Digest, r.Size = digest, size
	r.Mode = exceptions.ModeBits(st.Mode, false)
	r.UID, r.GID = st.Uid, st.Gid
	r.Mtime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
	if cur != nil && cur.Kind != change.KindDelete && cur.Type == change.TypeFile &&
		cur.Digest == r.Digest && cur.Mode == r.Mode && cur.UID == r.UID && cur.GID == r.GID {
		return nil, RestoreInEffect, nil // its blob is shared with cur's: nothing to drop
	}
	return r, "", nil
}

// allInEffect says whether every skipped entry is already in effect (and
// there is at least one).
func allInEffect(s []Skipped) bool {
	for _, x := range s {
		if x.Reason != RestoreInEffect && x.Reason != RestorePending {
			return false
		}
	}
	return len(s) > 0
}

func skippedText(s []Skipped) string {
	var parts []string
	for i, x := range s {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(s)-3))
			break
		}
		parts = append(parts, escape.Name(x.Path)+" ("+x.Reason+")")
	}
	return strings.Join(parts, ", ")
}

// escapePattern makes a path a pattern that matches only itself (for lint).
func escapePattern(p string) string {
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[]{}\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// recordIDs lists records as "r1 r2 …" (the audit entry of a restore names
// the records it made, so a past generation's state can leave them out).
func recordIDs(recs []*store.Record) string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = fmt.Sprintf("r%d", r.ID)
	}
	return strings.Join(ids, " ")
}
