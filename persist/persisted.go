package persist

import (
	"context"
	"fmt"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// Persisted returns the current persisted state of a sandbox, by path.
func (e *Env) Persisted(ctx context.Context, sandbox string) ([]*store.Record, error) {
	var out []*store.Record
	err := e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(sandbox)
		if err != nil {
			return noSandbox(sandbox, err)
		}
		st, err := LoadState(ctx, tx, sb)
		if err != nil {
			return err
		}
		out = st.Sorted()
		return nil
	})
	return out, err
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
			st, err := LoadState(ctx, tx, sb)
			if err != nil {
				return err
			}
			out = st[path]
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
