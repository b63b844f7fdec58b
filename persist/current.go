package persist

import (
	"context"
	"errors"
	"fmt"
	"sort"

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

// indexedState reads the state of sb from the index: the newest record in
// effect per path, before dropReplaced and dropOrphans.
func indexedState(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (State, error) {
	st := State{}
	err := tx.ForEachCurrentAt(ctx, sb.Name, sb.Generation, func(p string, id uint64) error {
		r, err := tx.GetRecord(id)
		if err != nil {
			return fmt.Errorf("current-state index of %s: %s names record r%d: %w", sb.Name, escape.Name(p), id, err)
		}
		st[p] = r
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
		sbs, err := tx.ListSandboxes()
		for _, sb := range sbs {
			if !currentIsReady(tx, sb.Name) {
				unbuilt = append(unbuilt, sb)
			}
		}
		return err
	}); err != nil {
		return err
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
					if err := tx.PutCurrent(sb.Name, p, max(sb.Generation, 1), st[p].ID); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
			paths = paths[n:]
		}
		if err := e.store.Update(func(tx *store.Tx) error {
			return errors.Join(tx.PutMeta(currentReady(sb.Name), "1"), forgetChangeLog(tx, sb.Name))
		}); err != nil {
			return err
		}
	}
	return nil
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
			var bad []string
			for p, r := range want {
				if got, ok := idx[p]; !ok || got.ID != r.ID {
					bad = append(bad, p)
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
