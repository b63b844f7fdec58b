package persist

import (
	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// RefuseAtomic is the reason of a change of an --atomic rule that would
// have persisted, held back because another change of the rule was refused
// in the same session.
const RefuseAtomic = "atomic"

// Partial is an exception that persisted only some of what it matched in
// a session; the rest is in the recovery area.
type Partial struct {
	Exception string `json:"exception"`
	Persisted int64  `json:"persisted"` // changes persisted
	Changes   int64  `json:"changes"`   // changes the rule matched
	Atomic    bool   `json:"atomic"`    // the rule is --atomic: none persisted
}

// undoAtomic takes back what an --atomic rule persisted in a session in
// which one of its changes was refused: the staged records are deleted
// (their blobs are left to gc), and each change becomes a refusal of
// reason "atomic", listed in the manifest, so that its content stays in
// the recovery area with the rest.
func (e *Env) undoAtomic(sum *CloseSummary, rules []*exceptions.Exception, totals map[string]*ExceptionTotal, ref *refusals, man *manifest, dryRun bool) error {
	failed := map[string]bool{}
	for _, x := range rules {
		if !x.Atomic {
			continue
		}
		for _, g := range ref.groups {
			if g.Exception == x.ID {
				failed[x.ID] = true
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	var keep []PersistedFile
	var drop []uint64
	var dropPaths []string
	for _, p := range sum.Persisted {
		if !failed[p.Exception] {
			keep = append(keep, p)
			continue
		}
		if p.Record != 0 {
			drop = append(drop, p.Record)
			dropPaths = append(dropPaths, p.Path)
		}
		r := Refusal{Path: p.Path, PathBytes: p.PathBytes, Kind: p.Kind, Type: p.Type, Size: p.Size, Exception: p.Exception, Reason: RefuseAtomic}
		if p.Kind == change.KindDelete {
			r.Size = 0
		}
		ref.add(r)
		man.add(ManifestEntry{Path: r.Path, PathBytes: r.PathBytes, Kind: r.Kind, Type: r.Type, Size: r.Size, Verdict: change.VerdictRefuse, Reason: RefuseAtomic, Exception: r.Exception})
	}
	for id := range failed {
		delete(totals, id)
	}
	sum.Persisted = keep
	if dryRun {
		return nil
	}
	for len(drop) > 0 {
		n := min(len(drop), recordBatch)
		if err := e.store.Update(func(tx *store.Tx) error {
			for i, id := range drop[:n] {
				if err := tx.DeleteRecord(id); err != nil {
					return err
				}
				// and the index version close staged for it
				if err := tx.DeleteCurrentVersion(sum.Sandbox, dropPaths[i], sum.Generation+1); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		drop, dropPaths = drop[n:], dropPaths[n:]
	}
	return nil
}

// partials lists the rules that persisted part of what they matched.
func partials(rules []*exceptions.Exception, sum *CloseSummary) []Partial {
	persisted, refused := map[string]int64{}, map[string]int64{}
	for _, p := range sum.Persisted {
		persisted[p.Exception]++
	}
	for _, g := range sum.Refusals {
		refused[g.Exception] += g.Count
	}
	out := []Partial{}
	for _, x := range rules {
		if refused[x.ID] == 0 {
			continue
		}
		if persisted[x.ID] == 0 && !x.Atomic {
			continue // nothing persisted: the refusals say it all
		}
		out = append(out, Partial{Exception: x.ID, Persisted: persisted[x.ID], Changes: persisted[x.ID] + refused[x.ID], Atomic: x.Atomic})
	}
	return out
}
