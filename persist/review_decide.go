package persist

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/whoami"
	"github.com/spillway/spillway/store"
)

// Decided is what a review decision changed.
type Decided struct {
	Records   []*store.Record  // the decided records, as stored
	Sandboxes []DecidedSandbox // per sandbox, in the order first met
	// Already lists the records given that were decided the same way
	// before (a rerun of a decision that was interrupted between its
	// batches): skipped, as a rerun of approve --all skips them.
	Already []uint64
}

// DecidedSandbox is the effect of a decision on one sandbox.
type DecidedSandbox struct {
	Name       string
	Records    []uint64
	Generation uint64 // the sandbox's generation after the decision
	Changed    bool   // the persisted state changed: a new generation
	// Open is set when the sandbox is open: its root keeps OpenGeneration
	// until it is closed, and the new generation applies at the next open.
	Open           bool
	OpenGeneration uint64
}

// decisionBatch bounds the records decided in one transaction: badger
// refuses transactions over ~10 MB. Each batch is its own generation with
// its own audit entry, so a crash leaves whole batches decided or not.
const decisionBatch = 500

// Approve approves pending records: a `--review before` change enters the
// persisted state in a new generation; a `--review after` one stays.
func (e *Env) Approve(ctx context.Context, ids []uint64, note string) (*Decided, error) {
	return e.setStatus(ctx, ids, change.StatusApproved, note, nil)
}

// ApproveChecked is Approve with check run on each record in the
// transaction that decides it: an error from check decides nothing of
// its batch. A caller that showed the record decides only on what it
// showed, however the ledger changed meanwhile (serve's forms).
func (e *Env) ApproveChecked(ctx context.Context, ids []uint64, note string, check func(*store.Record) error) (*Decided, error) {
	return e.setStatus(ctx, ids, change.StatusApproved, note, check)
}

// ApproveAll approves every pending record of a sandbox.
func (e *Env) ApproveAll(ctx context.Context, sandbox, note string) (*Decided, error) {
	if sandbox == "" {
		return nil, invalidf("approving all needs a sandbox")
	}
	if err := e.lockSandbox(sandbox); err != nil {
		return nil, err
	}
	recs, err := e.ReviewList(ctx, sandbox)
	if err != nil || len(recs) == 0 {
		return &Decided{}, err
	}
	ids := make([]uint64, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return e.setStatus(ctx, ids, change.StatusApproved, note, nil)
}

// Reject rejects pending records: each change leaves the persisted state in a
// new generation (the previous version returns, or the path goes).
func (e *Env) Reject(ctx context.Context, ids []uint64, reason string) (*Decided, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why the change is rejected"}
	}
	return e.setStatus(ctx, ids, change.StatusRejected, reason, nil)
}

// RejectChecked is Reject with check, as ApproveChecked.
func (e *Env) RejectChecked(ctx context.Context, ids []uint64, reason string, check func(*store.Record) error) (*Decided, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why the change is rejected"}
	}
	return e.setStatus(ctx, ids, change.StatusRejected, reason, check)
}

// setStatus takes the lock of every sandbox the records belong to (a
// decision never interleaves with a close of the same sandbox on this
// host), checks every record, so that a bad id changes nothing, then
// decides them in batches.
func (e *Env) setStatus(ctx context.Context, ids []uint64, status change.Status, text string, check func(*store.Record) error) (*Decided, error) {
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return nil, invalidf("give at least one record id")
	}
	if err := e.lockSandboxesOf(ctx, ids); err != nil {
		return nil, err
	}
	closing := map[string]uint64{}
	var already []uint64
	var firstAlready error
	if err := e.store.View(func(tx *store.Tx) error {
		for i, id := range ids {
			if i%1024 == 1023 && ctx.Err() != nil {
				return ctx.Err()
			}
			r, sb, err := decidable(tx, id, status)
			var ad *alreadyDecided
			if errors.As(err, &ad) && ad.status == status {
				already = append(already, id)
				if firstAlready == nil {
					firstAlready = err
				}
				continue
			}
			if err != nil {
				return err
			}
			if check != nil {
				if err := check(r); err != nil {
					return err
				}
			}
			if sb.State == store.StateClosing {
				closing[sb.Name] = sb.Generation
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if len(already) == len(ids) {
		return nil, firstAlready // nothing left to decide: say so, as before
	}
	if len(already) > 0 {
		skip := map[uint64]bool{}
		for _, id := range already {
			skip[id] = true
		}
		ids = slices.DeleteFunc(ids, func(id uint64) bool { return skip[id] })
	}
	if err := e.dropStagedCurrent(ctx, closing); err != nil {
		return nil, err
	}
	out := &Decided{Already: already}
	for len(ids) > 0 {
		// An interrupt between batches is a crash there: whole batches
		// are decided, the rest stays pending.
		if err := ctx.Err(); err != nil {
			return out, err
		}
		n := min(len(ids), decisionBatch)
		if err := e.store.Update(func(tx *store.Tx) error { return e.decideBatch(tx, ids[:n], status, text, check, out) }); err != nil {
			return out, err
		}
		failpoint.Hit("review.committed")
		ids = ids[n:]
	}
	return out, nil
}

// lockSandboxesOf takes the locks of the sandboxes records ids belong to,
// in name order (two decisions never wait for each other in a circle).
// The records are read again under the locks: a close may have run
// meanwhile.
func (e *Env) lockSandboxesOf(ctx context.Context, ids []uint64) error {
	names := map[string]bool{}
	if err := e.store.View(func(tx *store.Tx) error {
		for i, id := range ids {
			if i%1024 == 1023 && ctx.Err() != nil {
				return ctx.Err()
			}
			r, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			names[r.Sandbox] = true
		}
		return nil
	}); err != nil {
		return err
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, n := range sorted {
		if err := e.lockSandbox(n); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) decideBatch(tx *store.Tx, ids []uint64, status change.Status, text string, check func(*store.Record) error, out *Decided) error {
	now, who := e.Now(), whoami.Name()
	if e.reviewer != "" {
		who = e.reviewer
	}
	type sbDecision struct {
		sb      *store.Sandbox
		ids     []uint64
		names   []string
		changed bool
		paths   []string // whose record in effect may have changed
	}
	var order []string
	bySb := map[string]*sbDecision{}
	var recs []*store.Record
	for _, id := range ids {
		r, sb, err := decidable(tx, id, status)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(r); err != nil {
				return err
			}
		}
		d := bySb[sb.Name]
		if d == nil {
			d = &sbDecision{sb: sb}
			bySb[sb.Name] = d
			order = append(order, sb.Name)
		}
		before := InEffect(d.sb, r)
		r.Status, r.DecidedBy, r.DecidedAt = status, who, now
		if status == change.StatusRejected {
			r.Reason = text
		} else {
			r.Note = text
		}
		if err := tx.PutRecord(r); err != nil {
			return err
		}
		if before != InEffect(d.sb, r) {
			d.changed = true
			d.paths = append(d.paths, r.Path)
			if d.sb.State == store.StateOpen {
				// takes effect at the next open, unless the session
				// changes the path again: close says so
				if err := tx.PutMeta(decidedOpenMeta(d.sb.Name, d.sb.Session, r.ID), string(status)+" "+r.Path); err != nil {
					return err
				}
			}
		}
		d.ids, d.names = append(d.ids, r.ID), append(d.names, fmt.Sprintf("r%d", r.ID))
		recs = append(recs, r)
	}
	typ, key := "review.approve", "note"
	if status == change.StatusRejected {
		typ, key = "review.reject", "reason"
	}
	var results []DecidedSandbox
	for _, name := range order {
		d := bySb[name]
		if d.changed {
			if err := refreshCurrent(tx, d.sb, d.sb.Generation+1, d.paths); err != nil {
				return err
			}
			d.sb.Generation++
			if err := tx.PutSandbox(d.sb); err != nil {
				return err
			}
		}
		data := map[string]string{"records": strings.Join(d.names, " "), key: text, "generation": fmt.Sprint(d.sb.Generation)}
		if e.reviewer != "" {
			data["reviewer"] = e.reviewer
		}
		if _, err := tx.Append(e.Now(), typ, name, data); err != nil {
			return err
		}
		results = append(results, DecidedSandbox{Name: name, Records: d.ids, Generation: d.sb.Generation,
			Changed: d.changed, Open: d.sb.State == store.StateOpen, OpenGeneration: d.sb.OpenGeneration})
	}
	out.Records = append(out.Records, recs...)
	out.merge(results)
	return nil
}

// merge adds a batch's results to the decision's.
func (d *Decided) merge(batch []DecidedSandbox) {
	for _, b := range batch {
		found := false
		for i := range d.Sandboxes {
			s := &d.Sandboxes[i]
			if s.Name == b.Name {
				s.Records = append(s.Records, b.Records...)
				s.Generation, s.Changed = b.Generation, s.Changed || b.Changed
				s.Open, s.OpenGeneration = b.Open, b.OpenGeneration
				found = true
			}
		}
		if !found {
			d.Sandboxes = append(d.Sandboxes, b)
		}
	}
}

// decidable returns record id and its sandbox when a reviewer may decide it,
// else an error that names the record and says why not.
func decidable(tx *store.Tx, id uint64, status change.Status) (*store.Record, *store.Sandbox, error) {
	r, err := getRecord(tx, id)
	if err != nil {
		return nil, nil, err
	}
	sb, err := tx.GetSandbox(r.Sandbox)
	if err != nil {
		return nil, nil, noSandbox(r.Sandbox, err)
	}
	verb := "approve"
	if status == change.StatusRejected {
		verb = "reject"
	}
	when := func() string {
		return fmt.Sprintf("by %s on %s", r.DecidedBy, r.DecidedAt.Format("2006-01-02 15:04"))
	}
	switch {
	case r.Status == change.StatusRefused:
		return nil, nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "record r%d was refused at close (%s): it kept no content, there is nothing to %s", id, r.Reason, verb)
	case r.Status == change.StatusApproved || r.Status == change.StatusRejected:
		return nil, nil, &alreadyDecided{id: id, status: r.Status, when: when()}
	case r.Purged:
		return nil, nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "record r%d was purged with its exception %s: there is nothing to %s", id, r.Exception, verb)
	case !Reviewable(sb, r):
		return nil, nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "record r%d belongs to session %d of %s, whose close has not finished (run: spillway close %s)", id, r.Session, sb.Name, sb.Name)
	}
	return r, sb, nil
}

// alreadyDecided refuses to decide a record decided before. It is of
// class errdefs.ErrFailedPrecondition.
type alreadyDecided struct {
	id     uint64
	status change.Status
	when   string // "by USER on DATE"
}

func (e *alreadyDecided) Error() string {
	return fmt.Sprintf("record r%d is already %s (%s)", e.id, e.status, e.when)
}

func (e *alreadyDecided) Unwrap() error { return errdefs.ErrFailedPrecondition }

func uniqueIDs(ids []uint64) []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
