package persist

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// The current-state index (store/current.go) holds, per sandbox and path,
// the newest record in effect, versioned by generation. It is what
// LoadState reads: current-state commands (open, ls, persisted ls/cat,
// check's blob census) cost what the state costs, never what the history
// costs. Every change to what is in effect writes the new versions at the
// next generation, in the transactions that change the records:
//
//   - close: each staged record in effect once committed, at G+1, in the
//     batch that stages it (a crash leaves versions above G, dropped when
//     the close runs again);
//   - approve, reject, revoke --purge: the paths whose records changed,
//     recomputed from each path's history (PathHistory: the cost follows
//     the change), at G+1, in the transaction that makes G+1 current.
//
// The derivation that the index stands for (loadState: the newest record
// in effect per path) is kept: `check` compares the two, and a sandbox
// whose index is not marked ready (a store written before the index) has
// it built once from its records when the state directory is opened.

// currentReady names the meta key that says sandbox's index is complete.
func currentReady(sandbox string) string { return "current-ready:" + sandbox }

// inEffectIndex says whether r belongs in the index of a sandbox whose
// close of r's session has committed (InEffect without the closing test).
func inEffectIndex(r *store.Record) bool {
	return InEffect(&store.Sandbox{}, r)
}

// refreshCurrent recomputes the index versions at gen of the given paths
// from their histories, as seen by a reader of sb.
func refreshCurrent(tx *store.Tx, sb *store.Sandbox, gen uint64, paths []string) error {
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		hist, err := tx.PathHistory(sb.Name, p)
		if err != nil {
			return err
		}
		var id uint64
		for _, r := range hist {
			if InEffect(sb, r) {
				id = r.ID
			}
		}
		if err := tx.PutCurrent(sb.Name, p, gen, id); err != nil {
			return err
		}
	}
	return nil
}

// indexedState reads the state of sb from the index (its copies of the
// records): the newest record in effect per path, before dropReplaced and
// dropOrphans.
func indexedState(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (State, error) {
	st := State{}
	err := tx.ForEachCurrentRecordAt(ctx, sb.Name, sb.Generation, func(r *store.Record) error {
		st[r.Path] = r
		return nil
	})
	return st, err
}

// derivedState is the newest record in effect per path, from the history.
func derivedState(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (State, error) {
	st := State{}
	err := tx.ForEachRecord(ctx, sb.Name, func(r *store.Record) error {
		if InEffect(sb, r) {
			st[r.Path] = r // records come in id order: the newest wins
		}
		return nil
	})
	return st, err
}

// currentIsReady says whether sb's index is complete.
func currentIsReady(tx *store.Tx, sandbox string) bool {
	_, ok, err := tx.GetMeta(currentReady(sandbox))
	return err == nil && ok
}

// buildCurrent builds the index of every sandbox that lacks one (a store
// written before it), from the records, in transactions of bounded size.
func (e *Env) buildCurrent(ctx context.Context) error {
	var unbuilt []*store.Sandbox
	if err := e.store.View(func(tx *store.Tx) error {
		// Two range scans, not a lookup per sandbox (10,000 sandboxes
		// on PostgreSQL: 10,000 round trips at every command).
		ready := map[string]bool{}
		if err := tx.ForEachMeta(ctx, currentReady(""), func(k, _ string) error {
			ready[strings.TrimPrefix(k, currentReady(""))] = true
			return nil
		}); err != nil {
			return err
		}
		// Names only: decoding every sandbox's row cost most of a
		// review ls with 10,000 sandboxes.
		names, err := tx.SandboxNames()
		if err != nil {
			return err
		}
		for _, name := range names {
			if ready[name] {
				continue
			}
			sb, err := tx.GetSandbox(name)
			if err != nil {
				return err
			}
			unbuilt = append(unbuilt, sb)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(unbuilt) > 0 && !e.lk.exclusive {
		// Built once, alone: no other command may change the ledger meanwhile.
		if err := e.Exclusive(); err != nil {
			return err
		}
		return e.buildCurrent(ctx)
	}
	for _, sb := range unbuilt {
		if _, err := e.store.DropCurrent(ctx, sb.Name); err != nil {
			return err
		}
		var st State
		if err := e.store.View(func(tx *store.Tx) (err error) {
			st, err = derivedState(ctx, tx, sb)
			return err
		}); err != nil {
			return err
		}
		paths := make([]string, 0, len(st))
		for p := range st {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for len(paths) > 0 {
			n := min(len(paths), 10000)
			if err := e.store.Update(func(tx *store.Tx) error {
				for _, p := range paths[:n] {
					// The index of sb was dropped above: no version to replace.
					if err := tx.PutCurrentNew(sb.Name, max(sb.Generation, 1), st[p]); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
			paths = paths[n:]
		}
		// The counters, which PutCurrentNew leaves alone, from the index.
		if err := e.store.Update(func(tx *store.Tx) error {
			if err := errors.Join(tx.PutMeta(currentReady(sb.Name), "1"), forgetChangeLog(tx, sb.Name)); err != nil {
				return err
			}
			return setCounts(ctx, tx, sb)
		}); err != nil {
			return err
		}
	}
	return e.buildCounts(ctx)
}

// countsReady names the meta key that says every sandbox's counters are
// kept (stores written before them have them built once).
const countsReady = "counts-ready"

// buildCounts writes the counters of every sandbox from its state and its
// pending records, once per store.
func (e *Env) buildCounts(ctx context.Context) error {
	return e.store.Update(func(tx *store.Tx) error {
		if _, ok, err := tx.GetMeta(countsReady); err != nil || ok {
			return err
		}
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if err := setCounts(ctx, tx, sb); err != nil {
				return err
			}
		}
		return tx.PutMeta(countsReady, "1")
	})
}

// setCounts writes sb's counters from its state and its pending records.
func setCounts(ctx context.Context, tx *store.Tx, sb *store.Sandbox) error {
	c, pending, err := recount(ctx, tx, sb)
	if err != nil {
		return err
	}
	if sb.Generation > 0 {
		if err := tx.SetCounts(sb.Name, sb.Generation, c); err != nil {
			return err
		}
	}
	return tx.SetPendingCount(sb.Name, pending)
}

// recount counts sb's state (from the index) and its pending records.
func recount(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (store.Counts, int64, error) {
	var c store.Counts
	st, err := LoadState(ctx, tx, sb)
	if err != nil {
		return c, 0, err
	}
	c.Files, c.Bytes = st.Files()
	var pending int64
	err = tx.ForEachPending(ctx, sb.Name, func(r *store.Record) error {
		if !r.Purged {
			pending++
		}
		return nil
	})
	return c, pending, err
}

// stateCounts returns sb's counters: files and bytes in its state and the
// records waiting for review, read in O(1) where they are kept.
func stateCounts(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (store.Counts, int64, error) {
	return stateCountsRead(ctx, tx, sb, nil)
}

// eachStateCounts is stateCounts of each of sbs in a few round trips,
// not four a sandbox: on PostgreSQL `ls` of 10,000 sandboxes made 40,000.
func eachStateCounts(ctx context.Context, tx *store.Tx, sbs []*store.Sandbox, fn func(sb *store.Sandbox, c store.Counts, pending int64) error) error {
	names := []string{countsReady}
	for _, sb := range sbs {
		names = append(names, currentReady(sb.Name))
	}
	if err := tx.ReadAheadMeta(names); err != nil {
		return err
	}
	if err := tx.ReadAheadPending(sbs); err != nil {
		return err
	}
	counts, err := tx.CountsOfEach(ctx, sbs)
	if err != nil {
		return err
	}
	for i, sb := range sbs {
		c, pending, err := stateCountsRead(ctx, tx, sb, &counts[i])
		if err != nil {
			return err
		}
		if err := fn(sb, c, pending); err != nil {
			return err
		}
	}
	return nil
}

// stateCountsRead is stateCounts with sb's counters already read (nil:
// not yet), which it uses where the counters are ready.
func stateCountsRead(ctx context.Context, tx *store.Tx, sb *store.Sandbox, read *store.Counts) (store.Counts, int64, error) {
	if _, ok, err := tx.GetMeta(countsReady); err != nil || !ok || !currentIsReady(tx, sb.Name) {
		if err != nil {
			return store.Counts{}, 0, err
		}
		c, pending, err := recount(ctx, tx, sb)
		if err == nil && sb.State == store.StateClosing {
			pending, err = pendingOutsideClose(ctx, tx, sb, pending)
		}
		return c, pending, err
	}
	var c store.Counts
	var err error
	if read != nil {
		c = *read
	} else if c, err = tx.CountsAt(sb.Name, sb.Generation); err != nil {
		return c, 0, err
	}
	pending, err := tx.PendingCount(sb.Name)
	if err == nil && sb.State == store.StateClosing {
		pending, err = pendingOutsideClose(ctx, tx, sb, pending)
	}
	return c, pending, err
}

// pendingOutsideClose takes from pending the records of the close that has
// not committed (not reviewable yet).
func pendingOutsideClose(ctx context.Context, tx *store.Tx, sb *store.Sandbox, pending int64) (int64, error) {
	err := tx.ForEachSessionRecord(ctx, sb.Name, sb.Session, func(r *store.Record) error {
		if r.Status == change.StatusPending && !r.Purged {
			pending--
		}
		return nil
	})
	return pending, err
}

// checkCounts compares each sandbox's counters with a recount of its
// records (state) and its pending records.
func checkCounts(ctx context.Context, tx *store.Tx, sb *store.Sandbox, want State) ([]string, error) {
	if _, ok, err := tx.GetMeta(countsReady); err != nil || !ok {
		return nil, err
	}
	var problems []string
	c, err := tx.CountsAt(sb.Name, sb.Generation)
	if err != nil {
		return []string{fmt.Sprintf("sandbox %s: %v", sb.Name, err)}, nil
	}
	st := State{}
	for p, r := range want {
		st[p] = r
	}
	st.dropReplaced(tx)
	st.dropOrphans()
	files, bytes := st.Files()
	if c.Files != files || c.Bytes != bytes {
		problems = append(problems, fmt.Sprintf("sandbox %s: counters say %s, %s; its records %s, %s", sb.Name, plural(c.Files, "file"), plural(c.Bytes, "byte"), plural(files, "file"), plural(bytes, "byte")))
	}
	kept, err := tx.PendingCount(sb.Name)
	if err != nil {
		return append(problems, fmt.Sprintf("sandbox %s: %v", sb.Name, err)), nil
	}
	var pending int64
	if err := tx.ForEachRecord(ctx, sb.Name, func(r *store.Record) error {
		if r.Status == change.StatusPending && !r.Purged {
			pending++
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if kept != pending {
		problems = append(problems, fmt.Sprintf("sandbox %s: pending counter says %d, its records %d", sb.Name, kept, pending))
	}
	return problems, nil
}

// checkCurrent compares each sandbox's index with the state its records
// derive, and reports every path where they differ.
func (e *Env) checkCurrent(ctx context.Context) ([]string, error) {
	var problems []string
	err := e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if !currentIsReady(tx, sb.Name) {
				continue // its state is derived from the records until the next command builds it
			}
			idx, err := indexedState(ctx, tx, sb)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			want, err := derivedState(ctx, tx, sb)
			if err != nil {
				return err
			}
			cp, err := checkCounts(ctx, tx, sb, want)
			if err != nil {
				return err
			}
			problems = append(problems, cp...)
			var bad []string
			for p, r := range want {
				if got, ok := idx[p]; !ok || got.ID != r.ID {
					bad = append(bad, p)
				} else if !store.SameCopy(got, r) {
					problems = append(problems, fmt.Sprintf("sandbox %s: current-state index holds a copy of r%d at %s that differs from the record", sb.Name, r.ID, escape.Name(p)))
				}
			}
			for p := range idx {
				if _, ok := want[p]; !ok {
					bad = append(bad, p)
				}
			}
			sort.Strings(bad)
			for _, p := range bad {
				var got, w uint64
				if r := idx[p]; r != nil {
					got = r.ID
				}
				if r := want[p]; r != nil {
					w = r.ID
				}
				problems = append(problems, fmt.Sprintf("sandbox %s: current-state index has r%d at %s, its records r%d (0: none)", sb.Name, got, escape.Name(p), w))
			}
		}
		return nil
	})
	return problems, err
}

// dropStagedCurrent drops the index versions that an unfinished close of
// each sandbox (name → current generation) staged above its generation,
// before a review decision or a purge writes that generation itself. The
// close, when it runs again, stages them anew above the new generation.
func (e *Env) dropStagedCurrent(ctx context.Context, closing map[string]uint64) error {
	for name, gen := range closing {
		if _, err := e.store.DropCurrentAbove(ctx, name, gen); err != nil {
			return err
		}
	}
	return nil
}

// dropStagedCurrentOfException is dropStagedCurrent for the sandbox of
// exception id, if it is closing.
func (e *Env) dropStagedCurrentOfException(ctx context.Context, id string) error {
	closing := map[string]uint64{}
	err := e.store.View(func(tx *store.Tx) error {
		x, err := tx.GetException(id)
		if err != nil {
			return nil // the purge reports it
		}
		sb, err := tx.GetSandbox(x.Sandbox)
		if err == nil && sb.State == store.StateClosing {
			closing[sb.Name] = sb.Generation
		}
		return nil
	})
	if err != nil {
		return err
	}
	return e.dropStagedCurrent(ctx, closing)
}

// rebuildCurrent forgets sandbox's index and builds it again from the
// records (for records written past the index, as tests do).
func (e *Env) rebuildCurrent(ctx context.Context, sandbox string) error {
	if err := e.store.Update(func(tx *store.Tx) error { return tx.DeleteMeta(currentReady(sandbox)) }); err != nil {
		return err
	}
	return e.buildCurrent(ctx)
}
