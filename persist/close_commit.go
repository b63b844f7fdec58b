package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// DirModeBits are the mode bits a directory's record keeps: its
// permission bits, setgid (the group its new files get) and sticky (only
// owners delete in it: /tmp). Never setuid, which means nothing on a
// directory. Files keep their permission bits only (exceptions.ModeBits).
const DirModeBits = 0o3777

// newRecord makes the record of a decided change (persist or refuse).
func newRecord(sb *store.Sandbox, d Classification, now time.Time) *store.Record {
	c := d.Change
	r := &store.Record{
		Sandbox: sb.Name, Session: sb.Session, Path: c.Path, Kind: c.Kind, Type: c.Type,
		Size: c.Size, UID: c.UID, GID: c.GID, Mtime: c.Mtime, Link: c.Link,
		Exception: d.Exception.ID, Review: d.Exception.Review, Created: now,
		Status: change.StatusPending,
	}
	if r.Review == "" {
		r.Review = change.ReviewAfter
	}
	switch {
	case c.Kind == change.KindDelete:
		r.Size, r.Link = 0, ""
	case c.Type == change.TypeDir:
		r.Mode = c.Mode & DirModeBits
		r.Size = 0
		// A directory that was one below too kept what it holds: only its
		// mode or owner changed (what it lost are deletes of their own).
		r.MetaOnly = c.Kind == change.KindModify && c.Below != nil && c.Below.Type == change.TypeDir
	case c.Type == change.TypeSymlink:
		r.Mode = 0o777
	default:
		r.Mode = exceptions.ModeBits(c.Mode, d.Exception.AllowExec)
	}
	if c.Type != change.TypeSymlink {
		r.Link = ""
	}
	if d.Verdict == change.VerdictRefuse {
		r.Status, r.Reason, r.Link = change.StatusRefused, d.Reason, ""
	}
	return r
}

// readContent copies a persisted file through the hostile-tree reader into
// the blob store. A file that turns out unsafe, or that changed since the
// walk saw it, becomes a refusal, and so does content the blob store has
// no room for (no-space): no single entry stops a close. An error is
// returned only when the blob store itself fails.
func (e *Env) readContent(root string, d Classification, r *store.Record, dryRun bool) error {
	if d.Change.Type != change.TypeFile {
		return nil
	}
	lim := d.Exception.EffectiveLimits()
	f, err := hostile.OpenFile(root, d.Change.Path, d.Change, lim.MaxFileSize)
	if err != nil {
		refuseFor(r, err)
		return nil
	}
	defer f.Close()
	if dryRun {
		return nil
	}
	// Content that would take the room the store needs to commit the close
	// is refused: the rollback must still complete on a full disk.
	// The blob is written sparse: it takes at most what the sandbox's
	// file takes on disk (a file whose holes filled since the walk fails
	// Put with ENOSPC, refused below all the same).
	need := min(d.Change.Size, d.Change.Disk)
	if free, err := store.FreeBytes(e.blobs.dir); err == nil && free-need < store.Reserve {
		r.Status, r.Reason, r.Digest = change.StatusRefused, RefuseNoSpace, ""
		return nil
	}
	src := &trackReader{r: f}
	digest, size, err := e.blobs.Put(src)
	switch {
	case err != nil && src.err != nil:
		refuseFor(r, src.err)
		return nil
	case err != nil && isNoSpace(err):
		r.Status, r.Reason, r.Digest = change.StatusRefused, RefuseNoSpace, ""
		return nil
	case err != nil:
		return fmt.Errorf("store content of %q: %w", r.Path, err)
	}
	failpoint.Hit("close.blob-stored")
	if err := f.Verify(); err != nil {
		refuseFor(r, err)
		return nil
	}
	r.Digest, r.Size = digest, size
	return nil
}

// trackReader keeps the error its reader returned (other than io.EOF), so
// a read error of the sandbox's file is told apart from a write error of
// the blob store.
type trackReader struct {
	r   io.Reader
	err error
}

func (t *trackReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// isNoSpace says whether err is a full disk or an exhausted quota.
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// refuseFor turns a reader error on a file the walk saw as a regular file
// within the limits into a refusal of r. What the walk saw was checked by
// classify, so a symlink, special file, larger size or missing
// entry now means the entry changed under close.
func refuseFor(r *store.Record, err error) {
	code := RefuseUnreadable
	switch {
	case errors.Is(err, hostile.ErrTooDeep):
		code = RefuseTooDeep
	case errors.Is(err, hostile.ErrChanged), errors.Is(err, hostile.ErrNotFound),
		errors.Is(err, hostile.ErrSymlink), errors.Is(err, hostile.ErrSpecial),
		errors.Is(err, hostile.ErrTooLarge):
		code = RefuseChanged
	}
	r.Status, r.Reason, r.Digest = change.StatusRefused, code, ""
}

// commitClose makes the close durable in one small transaction: the session
// closed with its summary, the new generation current, the audit entry.
// When the ledger's answer to the COMMIT is lost (store.ErrCommitUnknown)
// it reads the outcome back and commits again only if the close did not
// take place.
func (e *Env) commitClose(ctx context.Context, sb *store.Sandbox, sum *CloseSummary) error {
	err := e.commitClosedOnce(ctx, sb, sum)
	if err == nil {
		e.noteClosed(sb.Name) // the session is the ledger's now (open_journal.go)
	}
	return err
}

// commitClosedOnce commits the close, reading the outcome back when the
// ledger did not answer the COMMIT.
func (e *Env) commitClosedOnce(ctx context.Context, sb *store.Sandbox, sum *CloseSummary) error {
	err := e.commitCloseOnce(sb, sum)
	for try := 1; errors.Is(err, store.ErrCommitUnknown) && try <= commitRetries; try++ {
		// The ledger did not answer the COMMIT: read what it holds, never
		// guess (docs/fleet.md, "Error classes").
		committed, rerr := e.closeCommitted(ctx, sb, sum)
		if rerr != nil {
			return fmt.Errorf("%w; reading the outcome back failed too (%v): run spillway close %s again, it finishes or reports the close", err, rerr, sb.Name)
		}
		if committed {
			return nil
		}
		err = e.commitCloseOnce(sb, sum)
	}
	return err
}

// commitRetries is how many times a close commits again after a commit
// whose answer was lost and that the ledger shows did not take place.
const commitRetries = 3

// ledgerWait is how long closeCommitted waits for a ledger that does not
// answer (a database restarting, say). A variable for tests.
var ledgerWait = time.Minute

// closeCommitted reads back whether sb's close committed, waiting up to
// ledgerWait for the ledger to answer; when it did, sum gets the
// generation it committed.
func (e *Env) closeCommitted(ctx context.Context, sb *store.Sandbox, sum *CloseSummary) (bool, error) {
	deadline := time.Now().Add(ledgerWait)
	for {
		var ses *store.Session
		err := e.store.View(func(tx *store.Tx) (err error) {
			ses, err = tx.GetSession(sb.Name, sb.Session)
			return err
		})
		if err == nil {
			if ses.State == store.StateClosed {
				sum.Generation = ses.ClosedGeneration
				return true, nil
			}
			return false, nil
		}
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrCommitUnknown) || time.Now().After(deadline) {
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// loseCommitAnswer, when a test sets it, is asked at each commit of a
// step ("open", "close") whether to lose the ledger's answer, and when:
// before the commit (nothing written) or after it (committed); it fakes a
// connection lost during COMMIT on either driver.
var loseCommitAnswer func(step string) (lose, afterCommit bool)

// commitUpdate runs fn, the commit of step of sandbox name, which appends
// its audit entry, in an Update, or in an UpdateLeasedAudited when this
// host holds the lease with token (not 0).
func (e *Env) commitUpdate(step, name string, token uint64, fn func(tx *store.Tx) error) error {
	update := func() error { return e.updateAsHolder(e.store.UpdateLeasedAudited, name, token, fn) }
	if loseCommitAnswer != nil {
		if lose, after := loseCommitAnswer(step); lose {
			if after {
				if err := update(); err != nil {
					return err
				}
			}
			return fmt.Errorf("test: %w", store.ErrCommitUnknown)
		}
	}
	return update()
}

// leasedUpdate is store.Store's UpdateLeased or UpdateLeasedAudited.
type leasedUpdate func(sandbox, host string, token uint64, fn func(tx *store.Tx) error) error

// updateAsHolder runs fn, a write of sandbox name's session, through
// leased with token, which checks this host's lease and, on PostgreSQL,
// takes no predicate locks (store.UpdateLeased); without a token (a close
// driven without a lease, in tests) in an Update.
func (e *Env) updateAsHolder(leased leasedUpdate, name string, token uint64, fn func(tx *store.Tx) error) error {
	if token == 0 {
		return e.store.Update(fn)
	}
	return leased(name, e.hostID, token, fn)
}

// commitCloseOnce commits sb's close in one transaction: the staged
// records take effect, the session and the sandbox are closed, the
// generation moves when something persisted, the lease is released.
func (e *Env) commitCloseOnce(sb *store.Sandbox, sum *CloseSummary) error {
	return e.commitUpdate("close", sb.Name, e.closing[sb.Name], func(tx *store.Tx) error { return e.commitCloseTx(tx, sb, sum) })
}

func (e *Env) commitCloseTx(tx *store.Tx, sb *store.Sandbox, sum *CloseSummary) error {
	changed := false
	for _, p := range sum.Persisted {
		if p.Status == change.StatusPending || p.Status == change.StatusApproved {
			changed = true
			break
		}
	}
	// The lease was checked by updateAsHolder, in this transaction.
	if token, ok := e.closing[sb.Name]; ok {
		if err := tx.ReleaseLease(sb.Name, e.hostID, token); err != nil {
			return err
		}
	}
	cur, err := tx.GetSandbox(sb.Name)
	if err != nil {
		return err
	}
	if changed {
		cur.Generation++
	}
	sum.Generation = cur.Generation
	report, err := encodeReport(sum)
	if err != nil {
		return err
	}
	ses, err := tx.GetSession(cur.Name, cur.Session)
	if err != nil {
		return err
	}
	ses.State, ses.Closed, ses.ClosedGeneration, ses.Report = store.StateClosed, e.Now(), cur.Generation, report
	ses.Refusals = refusalSummaries(sum)
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
	_, err = tx.Append(e.Now(), "sandbox.close", cur.Name, map[string]string{
		"session":         fmt.Sprint(cur.Session),
		"generation":      fmt.Sprint(cur.Generation),
		"persisted_files": fmt.Sprint(files),
		"persisted_bytes": fmt.Sprint(bytes),
		"refused":         fmt.Sprint(sum.RefusedCount),
		"discarded":       fmt.Sprint(sum.Discarded.Count),
	})
	return err
}

// alreadyClosed reports the last close of a closed sandbox and finishes any
// snapshot removal a crash left undone.
func (e *Env) alreadyClosed(ctx context.Context, sb *store.Sandbox) (*CloseSummary, error) {
	if err := e.cleanupSandbox(ctx, sb); err != nil {
		return nil, err
	}
	var sum *CloseSummary
	err := e.store.View(func(tx *store.Tx) error {
		ses, err := tx.GetSession(sb.Name, sb.Session)
		if err != nil {
			return err
		}
		if ses.Abandoned != "" {
			// Ended without a close (close --abandon, a takeover): it
			// has no summary to print.
			sum = &CloseSummary{Sandbox: sb.Name, Session: sb.Session, Generation: sb.Generation, Persisted: []PersistedFile{}, Refused: []Refusal{}}
			return nil
		}
		sum, err = e.storedReport(ctx, tx, ses)
		return err
	})
	if err != nil {
		// Say so, but a closed sandbox stays closed: print what is known.
		e.warnf("the summary of session %d of %s cannot be read: %v", sb.Session, sb.Name, err)
		sum = &CloseSummary{Sandbox: sb.Name, Session: sb.Session, Generation: sb.Generation, Persisted: []PersistedFile{}, Refused: []Refusal{}}
	}
	if sum.Refusals == nil {
		// A summary of an older store: every refusal is in Refused.
		var t refusals
		for _, r := range sum.Refused {
			t.add(r)
		}
		all := sum.Refused
		t.fill(sum)
		sum.Refused = all
	}
	sum.AlreadyClosed = true
	sum.Recovery = e.keptOf(sb, sum)
	sum.fillEmpty()
	return sum, nil
}

// refusalSummaries is the bounded summary of a close's refusals that the
// store keeps: per exception and reason, counts and the first paths.
func refusalSummaries(sum *CloseSummary) []store.RefusalSummary {
	var out []store.RefusalSummary
	for _, g := range sum.Refusals {
		rs := store.RefusalSummary{Exception: g.Exception, Reason: g.Reason, Count: g.Count, Bytes: g.Bytes}
		for _, r := range g.First {
			rs.First = append(rs.First, r.Path)
		}
		out = append(out, rs)
	}
	return out
}
