package persist

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// Persisted returns the current persisted state of a sandbox, by path.
func (e *Env) Persisted(ctx context.Context, sandbox string) ([]*store.Record, error) {
	out := []*store.Record{}
	err := e.PersistedEach(ctx, sandbox, func(r *store.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// PersistedEach calls fn, in path order, for every record of the current
// persisted state of a sandbox, streamed from the current-state index:
// the first rows come before the last are read, and the cost follows the
// state, never the history. fn may return store.ErrStop to end early.
func (e *Env) PersistedEach(ctx context.Context, sandbox string, fn func(*store.Record) error) error {
	err := e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		return eachCurrent(ctx, tx, sb, fn)
	})
	if errors.Is(err, store.ErrStop) {
		return nil
	}
	return err
}

// eachCurrent calls fn, in path order, for every record of sb's state.
func eachCurrent(ctx context.Context, tx *store.Tx, sb *store.Sandbox, fn func(*store.Record) error) error {
	if !currentIsReady(tx, sb.Name) {
		st, err := LoadState(ctx, tx, sb)
		if err != nil {
			return err
		}
		for _, r := range st.Sorted() {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	// One range scan: the index holds a copy of each record in effect.
	vis := store.StateFilter{Seen: tx}
	return tx.ForEachCurrentRecordAt(ctx, sb.Name, sb.Generation, func(r *store.Record) error {
		if !vis.Keep(r) {
			return nil
		}
		return fn(r)
	})
}

// currentRecord returns the record of path in the current state (nil when
// none), from the index: the path's entry and its ancestors' (what
// dropReplaced and dropOrphans look at), never the whole state.
func currentRecord(ctx context.Context, tx *store.Tx, sb *store.Sandbox, p string) (*store.Record, error) {
	if !currentIsReady(tx, sb.Name) {
		st, err := LoadState(ctx, tx, sb)
		return st[p], err
	}
	if !cleanAbs(p) {
		return nil, nil
	}
	var chain []string
	for a := p; a != "/" && a != "."; a = path.Dir(a) {
		chain = append(chain, a)
	}
	vis := store.StateFilter{Seen: tx}
	var out *store.Record
	for i := len(chain) - 1; i >= 0; i-- {
		id, ok, err := tx.CurrentAt(sb.Name, chain[i], sb.Generation)
		if err != nil || !ok {
			if err == nil && i == 0 {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		r, err := tx.GetRecord(id)
		if err != nil {
			return nil, fmt.Errorf("current-state index of %s: %s names record r%d: %w", sb.Name, escape.Name(chain[i]), id, err)
		}
		if vis.Keep(r) && i == 0 {
			out = r
		}
	}
	return out, nil
}

// PersistedVersion returns the record of path in the current state, or the
// version that session n recorded when n > 0.
func (e *Env) PersistedVersion(ctx context.Context, sandbox, path string, n uint64) (*store.Record, error) {
	var out *store.Record
	err := e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		if n == 0 {
			var err error
			if out, err = currentRecord(ctx, tx, sb, path); err != nil {
				return err
			}
		} else {
			hist, err := tx.PathHistory(sandbox, path)
			if err != nil {
				return err
			}
			for _, r := range hist {
				if r.Session == n && r.Status != change.StatusRefused {
					out = r
				}
			}
		}
		if out == nil {
			if n > 0 {
				return fmt.Errorf("%s has no persisted version of %q from session %d", sandbox, path, n)
			}
			return fmt.Errorf("%q is not in the persisted state of %s (see spillway persisted ls %s)", path, sandbox, sandbox)
		}
		return nil
	})
	return out, err
}

// History returns every record of path across sessions, oldest first.
func (e *Env) History(ctx context.Context, sandbox, path string) ([]*store.Record, error) {
	var out []*store.Record
	err := e.store.View(func(tx *store.Tx) error {
		if _, err := tx.GetSandbox(sandbox); err != nil {
			return noSandbox(sandbox, err)
		}
		var err error
		out, err = tx.PathHistory(sandbox, path)
		return err
	})
	return out, err
}
