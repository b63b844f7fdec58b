package persist

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"

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
			st.dropReplaced(tx)
			orphans := st.dropOrphans()
			if err != nil {
				return err
			}
			for _, o := range orphans {
				problems = append(problems, orphanProblem(sb.Name, o))
			}
			problems = append(problems, e.underImageLinks(ctx, tx, sb, st)...)
		}
		return nil
	})
	return problems, err
}

// underImageLinks reports the records of st that lie under a symlink of
// sb's image that no persisted directory replaces: the open applies none
// of them. (Nothing when the image is not on this host.)
func (e *Env) underImageLinks(ctx context.Context, tx *store.Tx, sb *store.Sandbox, st State) []string {
	img, err := e.hostImage(tx, sb.Image)
	if err != nil {
		return nil
	}
	dir, err := e.snap.TreeDir(ctx, img.Snapshot, img.Dir)
	if err != nil {
		return nil
	}
	links := map[string]string{} // parent directory → the image's symlink on its way ("": none)
	var problems []string
	for _, p := range slices.Sorted(maps.Keys(st)) {
		r := st[p]
		if r.Kind == change.KindDelete || !cleanAbs(p) {
			continue
		}
		parent := path.Dir(p)
		link, seen := links[parent]
		if !seen {
			link = unreplacedLink(dir, st, parent)
			links[parent] = link
		}
		if link == "" {
			continue
		}
		hint := "revoking its exception and purging its records drops it"
		if r.Status == change.StatusPending {
			hint = fmt.Sprintf("spillway review reject r%d drops it", r.ID)
		}
		problems = append(problems, fmt.Sprintf("sandbox %s: record r%d (%s) lies under %s, a symlink of image %s: it is not applied (%s)",
			sb.Name, r.ID, escape.Name(p), escape.Name(link), img.Name, hint))
	}
	return problems
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
