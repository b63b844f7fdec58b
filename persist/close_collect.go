package persist

import (
	"context"
	"fmt"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// testHookBeforeRead, when set (by tests), runs after a change was decided
// persist and before its content is read: a test can swap or unlink the
// entry there as a racing process would.
var testHookBeforeRead func(root string, c hostile.Change)

// collect walks the changes, decides each, stores the content of what
// persists and stages its records (not yet in effect: the session is not
// closed). Refused and discarded changes are counted, sampled and streamed
// to the session's manifest, never held: close's memory does not grow with
// them. In a dry run nothing is written but an unnamed manifest.
func (e *Env) collect(ctx context.Context, sb *store.Sandbox, o CloseOptions) (*CloseSummary, error) {
	var rules []*exceptions.Exception
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		rules, err = e.activeRules(tx, sb.Name)
		return err
	}); err != nil {
		return nil, err
	}
	sum := &CloseSummary{Sandbox: sb.Name, Session: sb.Session, Generation: sb.Generation, DryRun: o.DryRun}
	var man *manifest
	var err error
	if o.DryRun {
		man, err = e.createTempManifest()
	} else {
		if err := e.sessionDirTaken(sb, sb.Session); err != nil {
			return nil, err
		}
		man, err = e.createManifest(sb.Name, sb.Session)
		sum.Manifest = e.ManifestPath(sb.Name, sb.Session)
	}
	if err != nil {
		if !isNoSpace(err) {
			return nil, err
		}
		man = &manifest{err: err} // a full disk: close goes on without it
	}
	keep := false
	defer func() {
		if man.f != nil && !keep {
			man.f.Close()
		}
	}()
	totals := map[string]*ExceptionTotal{}
	files, bytes := map[string]int64{}, map[string]int64{}
	var disc discardStats
	var refused refusals
	var batch []*store.Record
	now := e.Now()
	// The walk, hashing and blob writing run parked (locks.go): commands
	// on other sandboxes use the ledger meanwhile. A batch's staging
	// reopens it; the next change parks again.
	parked := false
	flush := func() error {
		if len(batch) == 0 || o.DryRun {
			batch = batch[:0]
			return nil
		}
		// New ids, and those in effect once committed in the index from
		// the generation this close makes.
		stage := func(tx *store.Tx) error { return tx.StageRecords(sb.Name, sb.Generation+1, batch, inEffectIndex) }
		var err error
		if token, ok := e.closing[sb.Name]; ok {
			err = e.store.UpdateLeased(sb.Name, e.hostID, token, stage)
		} else {
			err = e.store.Update(stage) // a close driven without a lease (tests)
		}
		if err != nil {
			return err
		}
		parked = false
		failpoint.Hit("close.batch-staged")
		for _, r := range batch {
			sum.Persisted = append(sum.Persisted, PersistedFile{Record: r.ID, Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: r.Size, Digest: r.Digest, Exception: r.Exception, Status: r.Status,
				mode: r.Mode, uid: r.UID, gid: r.GID, mtime: r.Mtime})
		}
		batch = batch[:0]
		return nil
	}
	var seen int64
	var att attention
	// What the recovery tree will hold on disk (st_blocks), for the cap:
	// discarded, refused, and (overlay) persisted content.
	var discDisk, refusedDisk, refusedSize, persistedDisk int64
	err = e.walkChanges(ctx, sb, func(root string, c hostile.Change) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !parked {
			if err := e.park(); err != nil {
				return err
			}
			parked = true
			failpoint.Hit("close.parked")
		}
		seen++
		if seen%1000 == 0 {
			e.progress.Update(progress.Status{What: "closing " + sb.Name, Items: seen, Unit: "changes read"})
		}
		if isNoop(rules, root, c, now) {
			sum.Unchanged++
			return nil
		}
		d := classify(rules, c, files, bytes, now)
		if d.Verdict == change.VerdictDiscard {
			disc.add(c)
			discDisk += c.Disk
			att.add(c)
			man.add(ManifestEntry{Path: c.Path, PathBytes: exactBytes(c.Path), Kind: c.Kind, Type: c.Type, Size: c.Size, Verdict: change.VerdictDiscard})
			return nil
		}
		r := newRecord(sb, d, now)
		if d.Verdict == change.VerdictPersist && c.Kind != change.KindDelete {
			if testHookBeforeRead != nil {
				testHookBeforeRead(root, c)
			}
			if err := e.readContent(root, d, r, o.DryRun); err != nil {
				return err
			}
		}
		if r.Status == change.StatusRefused {
			// Refusals are not records: a count, a sample, a manifest line.
			ref := Refusal{Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: c.Size, Exception: r.Exception, Reason: r.Reason}
			refused.add(ref)
			refusedDisk += c.Disk
			refusedSize += c.Size
			man.add(ManifestEntry{Path: ref.Path, PathBytes: ref.PathBytes, Kind: ref.Kind, Type: ref.Type, Size: ref.Size, Verdict: change.VerdictRefuse, Reason: ref.Reason, Exception: ref.Exception})
			return nil
		}
		if execDropped(d) {
			sum.ExecDropped++
		}
		t := totals[r.Exception]
		if t == nil {
			t = &ExceptionTotal{Exception: r.Exception}
			totals[r.Exception] = t
		}
		if r.Kind != change.KindDelete && r.Type != change.TypeDir {
			t.Files++
			t.Bytes += r.Size
			persistedDisk += c.Disk
		} else if r.Kind == change.KindDelete {
			t.Deletes++
		}
		if o.DryRun {
			sum.Persisted = append(sum.Persisted, PersistedFile{Path: r.Path, PathBytes: exactBytes(r.Path), Kind: r.Kind, Type: r.Type, Size: r.Size, Exception: r.Exception, Status: r.Status})
			return nil
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
	if err := e.undoAtomic(sum, rules, totals, &refused, man, o.DryRun); err != nil {
		return nil, err
	}
	if err := man.finish(); err != nil {
		if !isNoSpace(err) {
			return nil, fmt.Errorf("write manifest of %s: %w", sb.Name, err)
		}
		sum.ManifestIncomplete = true
	}
	if o.DryRun && man.f != nil && !sum.ManifestIncomplete {
		sum.tmp, keep = man.f, true
	}
	sum.Exceptions = []ExceptionTotal{}
	for _, x := range rules {
		if t := totals[x.ID]; t != nil {
			sum.Exceptions = append(sum.Exceptions, *t)
		}
	}
	refused.fill(sum)
	att.fill(sum)
	sum.Discarded = Discarded{Count: disc.Count, Bytes: disc.Bytes, Top: disc.top(5)}
	if sum.Persisted == nil {
		sum.Persisted = []PersistedFile{}
	}
	sum.Partial = partials(rules, sum)
	if !o.DryRun && man.f != nil {
		var kept int64
		for _, g := range sum.Refusals {
			kept += g.Bytes
		}
		// kept beyond refusedSize: an --atomic rule's undone records,
		// counted whole on disk
		disk := discDisk + refusedDisk + max(kept-refusedSize, 0)
		info := sessionInfo{Closed: now, Snapshotter: e.snap.Kind(), Entries: disc.Count + refused.count, Refused: refused.count,
			Bytes: disc.Bytes + kept, DiscardedBytes: disc.Bytes, DiscardedDiskBytes: &discDisk, Incarnation: incarnation(sb),
			Incomplete: sum.ManifestIncomplete}
		if info.Snapshotter == "overlayfs" {
			for _, t := range sum.Exceptions {
				info.Bytes += t.Bytes // the upper directory keeps them too
			}
			disk += persistedDisk
		}
		info.DiskBytes = &disk
		if err := e.writeSessionInfo(sb.Name, sb.Session, info); err != nil && !isNoSpace(err) {
			return nil, err
		}
	}
	return sum, nil
}
