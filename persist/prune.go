package persist

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/store"
)

// ErrPruned says a version's content was dropped by a prune; it matches
// errdefs.ErrNotFound.
var ErrPruned = errclass.New(errdefs.ErrNotFound, "its content was pruned: this version can no longer be shown or exported")

// pruneBatch bounds the records pruned in one transaction (badger refuses
// transactions over ~10 MB) and the digests one audit entry lists.
const pruneBatch = 500

// PruneResult is what a prune did.
type PruneResult struct {
	Sandbox string `json:"sandbox"`
	Keep    int    `json:"keep"`
	// Pruned counts the versions whose content was dropped, Bytes their
	// sizes and Digests the distinct digests among them.
	Pruned  int   `json:"pruned"`
	Bytes   int64 `json:"bytes"`
	Digests int   `json:"digests"`
	// Kept counts the versions not in effect that keep their content
	// (the newest Keep of each path); Protected the versions kept because
	// they are in effect, pending, or would come back if the pending
	// records of their path were rejected.
	Kept      int `json:"kept"`
	Protected int `json:"protected"`
}

// Prune drops the content of all but the newest keep versions of each
// path of a sandbox that are not in effect. It never drops a version in
// effect, a pending one, or one that rejecting the pending records of its
// path would bring back. The records stay (marked pruned, without a
// digest); the audit log keeps their digests, one "persisted.prune" entry
// per batch of records; gc then frees the blobs no record keeps.
func (e *Env) Prune(ctx context.Context, sandbox string, keep int) (*PruneResult, error) {
	if err := e.lockSandbox(sandbox); err != nil {
		return nil, err
	}
	if keep < 0 {
		return nil, &InputError{Input: "keep", Problem: "must be 0 or more"}
	}
	res := &PruneResult{Sandbox: sandbox, Keep: keep}
	var victims []*store.Record
	err := e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		if sb.State == store.StateClosing {
			return &NotClosedError{Sandbox: sandbox, State: sb.State, Op: "prune"}
		}
		byPath := map[string][]*store.Record{}
		err = tx.ForEachRecord(ctx, sandbox, func(r *store.Record) error {
			if r.Digest != "" || InEffect(sb, r) || r.Status == change.StatusPending {
				byPath[r.Path] = append(byPath[r.Path], r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, hist := range byPath {
			victims = append(victims, pruneVictims(sb, hist, keep, res)...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(victims, func(i, j int) bool { return victims[i].ID < victims[j].ID })
	digests := map[string]bool{}
	for len(victims) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(len(victims), pruneBatch)
		if err := e.store.Update(func(tx *store.Tx) error { return e.pruneBatch(tx, sandbox, keep, victims[:n], res, digests) }); err != nil {
			return res, err
		}
		victims = victims[n:]
	}
	res.Digests = len(digests)
	return res, nil
}

// pruneVictims returns the versions of one path (records in id order) whose
// content goes, and counts the others in res.
func pruneVictims(sb *store.Sandbox, hist []*store.Record, keep int, res *PruneResult) []*store.Record {
	protected := map[uint64]bool{}
	// The newest version in effect stays; while it is pending, rejecting
	// it brings back the one before, which stays too, and so on down to
	// the first approved one.
	for i := len(hist) - 1; i >= 0; i-- {
		r := hist[i]
		if !InEffect(sb, r) {
			continue
		}
		protected[r.ID] = true
		if r.Status != change.StatusPending {
			break
		}
	}
	var out []*store.Record
	kept := 0
	for i := len(hist) - 1; i >= 0; i-- {
		r := hist[i]
		switch {
		case r.Digest == "" || r.Pruned:
		case protected[r.ID] || r.Status == change.StatusPending:
			res.Protected++
		case kept < keep:
			kept++
			res.Kept++
		default:
			out = append(out, r)
		}
	}
	return out
}

// pruneBatch drops the content of one batch of records and audits it with
// their digests.
func (e *Env) pruneBatch(tx *store.Tx, sandbox string, keep int, batch []*store.Record, res *PruneResult, digests map[string]bool) error {
	var names, sums []string
	var bytes int64
	for _, v := range batch {
		r, err := tx.GetRecord(v.ID)
		if err != nil {
			return noRecord(v.ID, err)
		}
		if r.Pruned || r.Digest != v.Digest || r.Status != v.Status {
			continue // changed since it was chosen: leave it
		}
		names, sums = append(names, fmt.Sprintf("r%d", r.ID)), append(sums, r.Digest)
		digests[r.Digest] = true
		bytes += r.Size
		r.Digest, r.Pruned = "", true
		if err := tx.PutRecord(r); err != nil {
			return err
		}
	}
	if len(names) == 0 {
		return nil
	}
	if _, err := tx.Append(e.Now(), "persisted.prune", sandbox, map[string]string{
		"keep": fmt.Sprint(keep), "count": fmt.Sprint(len(names)), "bytes": fmt.Sprint(bytes),
		"records": strings.Join(names, " "), "digests": strings.Join(sums, " "),
	}); err != nil {
		return err
	}
	res.Pruned += len(names)
	res.Bytes += bytes
	return nil
}
