package persist

import (
	"context"
	"fmt"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// checkStates reports, for every sandbox, the records in effect that its
// persisted state leaves out because they lie under a path the state
// deletes or makes a file or a symlink (see Orphan).
func (e *Env) checkStates(ctx context.Context) ([]string, error) {
	var problems []string
	err := e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			st, err := derivedState(ctx, tx, sb)
			if err != nil {
				return err
			}
			st.dropReplaced()
			orphans := st.dropOrphans()
			if err != nil {
				return err
			}
			for _, o := range orphans {
				problems = append(problems, orphanProblem(sb.Name, o))
			}
		}
		return nil
	})
	return problems, err
}

// orphanProblem says which record is left out, under what, and what to do.
func orphanProblem(sandbox string, o Orphan) string {
	what := "makes it a " + string(o.Under.Type)
	if o.Under.Kind == change.KindDelete {
		what = "deletes it"
	}
	hint := "revoking its exception and purging its records drops it"
	if o.Record.Status == change.StatusPending {
		hint = fmt.Sprintf("spillway review reject r%d drops it", o.Record.ID)
	}
	return fmt.Sprintf("sandbox %s: record r%d (%s) lies under %s, and record r%d %s: it is not applied (%s)",
		sandbox, o.Record.ID, escape.Name(o.Record.Path), escape.Name(o.Under.Path), o.Under.ID, what, hint)
}
