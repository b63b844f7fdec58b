package persist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// newRecord makes the record of a decided change (persist or refuse).
func newRecord(sb *store.Sandbox, d Decision, now time.Time) *store.Record {
	c := d.Change
	r := &store.Record{
		Sandbox: sb.Name, Session: sb.Session, Path: c.Path, Kind: c.Kind, Type: c.Type,
		Size: c.Size, UID: c.UID, GID: c.GID, Mtime: c.Mtime, Link: c.Link,
		Exception: d.Exception.ID, Review: d.Exception.Review, Created: now,
		Status: store.StatusPending,
	}
	if r.Review == "" {
		r.Review = exceptions.ReviewAfter
	}
	switch {
	case c.Kind == hostile.KindDelete:
		r.Size, r.Link = 0, ""
	case c.Type == hostile.TypeDir:
		r.Mode = c.Mode & 0o777
		r.Size = 0
	case c.Type == hostile.TypeSymlink:
		r.Mode = 0o777
	default:
		r.Mode = exceptions.ModeBits(c.Mode, d.Exception.AllowExec)
	}
	if c.Type != hostile.TypeSymlink {
		r.Link = ""
	}
	if d.Verdict == VerdictRefuse {
		r.Status, r.Reason, r.Link = store.StatusRefused, d.Reason, ""
	}
	return r
}

// readContent copies a persisted file through the hostile-tree reader into
// the blob store. A file that turns out unsafe becomes a refusal.
func (e *Env) readContent(root string, d Decision, r *store.Record, dryRun bool) error {
	if d.Change.Type != hostile.TypeFile {
		return nil
	}
	lim := d.Exception.EffectiveLimits()
	f, err := hostile.OpenFile(root, d.Change.Path, d.Change, lim.MaxFileSize)
	if err != nil {
		return refuseFor(r, err)
	}
	defer f.Close()
	if dryRun {
		return nil
	}
	digest, size, err := e.Blobs.Put(f)
	if err != nil {
		return refuseFor(r, err)
	}
	failpoint.Hit("close.blob-stored")
	if err := f.Verify(); err != nil {
		return refuseFor(r, err)
	}
	r.Digest, r.Size = digest, size
	return nil
}

// refuseFor turns a reader error into a refusal of r; other errors stop close.
func refuseFor(r *store.Record, err error) error {
	code := ""
	switch {
	case errors.Is(err, hostile.ErrSymlink):
		code = RefuseSymlink
	case errors.Is(err, hostile.ErrHardlink):
		code = RefuseHardlink
	case errors.Is(err, hostile.ErrSpecial):
		code = RefuseSpecial
	case errors.Is(err, hostile.ErrTooLarge):
		code = RefuseTooLarge
	case errors.Is(err, hostile.ErrChanged), errors.Is(err, hostile.ErrNotFound):
		code = RefuseChanged
	case errors.Is(err, hostile.ErrTooDeep):
		code = RefuseTooDeep
	default:
		return fmt.Errorf("read %q: %w", r.Path, err)
	}
	r.Status, r.Reason, r.Digest = store.StatusRefused, code, ""
	return nil
}

// commitClose makes the close durable in one small transaction: the session
// closed with its summary, the new generation current, the audit entry.
func (e *Env) commitClose(sb *store.Sandbox, sum *CloseSummary) error {
	changed := false
	for _, p := range sum.Persisted {
		if p.Status == store.StatusPending || p.Status == store.StatusApproved {
			changed = true
			break
		}
	}
	return e.Store.Update(func(tx *store.Tx) error {
		cur, err := tx.GetSandbox(sb.Name)
		if err != nil {
			return err
		}
		if changed {
			cur.Generation++
		}
		sum.Generation = cur.Generation
		js, err := json.Marshal(sum)
		if err != nil {
			return err
		}
		ses, err := tx.GetSession(cur.Name, cur.Session)
		if err != nil {
			return err
		}
		ses.State, ses.Closed, ses.ClosedGeneration, ses.Summary = store.StateClosed, e.Now(), cur.Generation, js
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		cur.State, cur.Path = store.StateClosed, ""
		if err := tx.PutSandbox(cur); err != nil {
			return err
		}
		var files, bytes int64
		for _, t := range sum.Exceptions {
			files += t.Files
			bytes += t.Bytes
		}
		_, err = tx.Append("sandbox.close", cur.Name, map[string]string{
			"session":         fmt.Sprint(cur.Session),
			"generation":      fmt.Sprint(cur.Generation),
			"persisted_files": fmt.Sprint(files),
			"persisted_bytes": fmt.Sprint(bytes),
			"refused":         fmt.Sprint(len(sum.Refused)),
			"discarded":       fmt.Sprint(sum.Discarded.Count),
		})
		return err
	})
}

// alreadyClosed reports the last close of a closed sandbox and finishes any
// snapshot removal a crash left undone.
func (e *Env) alreadyClosed(ctx context.Context, sb *store.Sandbox) (*CloseSummary, error) {
	if err := e.cleanupSandbox(ctx, sb); err != nil {
		return nil, err
	}
	sum := &CloseSummary{}
	err := e.Store.View(func(tx *store.Tx) error {
		ses, err := tx.GetSession(sb.Name, sb.Session)
		if err != nil {
			return err
		}
		return json.Unmarshal(ses.Summary, sum)
	})
	if err != nil {
		sum = &CloseSummary{Sandbox: sb.Name, Session: sb.Session, Generation: sb.Generation, Persisted: []PersistedFile{}, Refused: []Refusal{}}
	}
	sum.AlreadyClosed = true
	return sum, nil
}
