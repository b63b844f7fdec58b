package persist

import (
	"context"
	"path"
	"slices"
	"sort"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/sandboxpath"
	"github.com/spillway/spillway/store"
)

// InEffect says whether a record is part of the persisted state, given the
// sandbox it belongs to (records of a close that has not committed are not).
func InEffect(sb *store.Sandbox, r *store.Record) bool {
	if sb.State == store.StateClosing && r.Session == sb.Session {
		return false
	}
	if slices.Contains(sb.Abandoned, r.Session) && r.Exception != RecoverID {
		// Staged by a host that lost its lease (lease.go). Not a record
		// recover restore wrote after: it takes the sandbox's last session,
		// abandoned when nothing was closed since the fence or --abandon.
		return false
	}
	if r.Purged || r.Pruned {
		return false // a pruned version never comes back: its content is gone
	}
	switch r.Status {
	case change.StatusApproved:
		return true
	case change.StatusPending:
		return r.Review != change.ReviewBefore
	}
	return false
}

// State is the persisted state of a sandbox: path → the record that put it
// there. Deleted paths of the image are kept as delete records.
type State map[string]*store.Record

// LoadState returns the persisted state of a sandbox.
func LoadState(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (State, error) {
	st, _, err := loadState(ctx, tx, sb)
	return st, err
}

// Orphan is a record in effect that the state leaves out: it lies under
// Under, an older record in effect that deletes that path or makes it a
// file or a symlink (e.g. a directory record was rejected, and the link it
// had replaced came back). spillway check reports each.
type Orphan struct {
	Record *store.Record
	Under  *store.Record
}

// recordState derives the state from the records alone, never the index.
func recordState(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (State, error) {
	st, err := derivedState(ctx, tx, sb)
	if err != nil {
		return nil, err
	}
	st.dropReplaced(tx)
	st.dropOrphans()
	return st, nil
}

// loadState reads the state from the current-state index (current.go),
// or derives it from the records where the index is not built yet, and
// returns the orphans it left out.
func loadState(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (State, []Orphan, error) {
	var st State
	var err error
	if currentIsReady(tx, sb.Name) {
		st, err = indexedState(ctx, tx, sb)
	} else {
		st, err = derivedState(ctx, tx, sb)
	}
	if err != nil {
		return nil, nil, err
	}
	st.dropReplaced(tx)
	return st, st.dropOrphans(), nil
}

// dropReplaced removes entries that a newer record on an ancestor replaced
// (store.Replaces): a delete removes the subtree, a file replaces a
// directory, a new directory starts empty of what its session saw, a
// directory whose mode or owner alone changed replaces what the record it
// changed did; seen (a *Tx) reads when sessions opened and paths' history.
func (st State) dropReplaced(opened store.Seen) {
	var gone []string
	for p, r := range st {
		for a := path.Dir(p); a != "/" && a != "."; a = path.Dir(a) {
			if anc, ok := st[a]; ok && store.Replaces(anc, r, opened) {
				gone = append(gone, p)
				break
			}
		}
	}
	for _, p := range gone {
		delete(st, p)
	}
}

// dropOrphans removes, and returns sorted by path, the entries that lie
// under an entry that is not a directory (a delete, a file, a symlink):
// the state stays one a tree can hold, so no child is ever written through
// a link or beside a deletion.
func (st State) dropOrphans() []Orphan {
	var out []Orphan
	for p, r := range st {
		for a := path.Dir(p); a != "/" && a != "."; a = path.Dir(a) {
			if anc, ok := st[a]; ok && (anc.Kind == change.KindDelete || anc.Type != change.TypeDir) {
				out = append(out, Orphan{Record: r, Under: anc})
				break
			}
		}
	}
	for _, o := range out {
		delete(st, o.Record.Path)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Record.Path < out[j].Record.Path })
	return out
}

// Sorted returns the state's records ordered by path, parents first.
func (st State) Sorted() []*store.Record {
	out := make([]*store.Record, 0, len(st))
	for _, r := range st {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Files counts the paths the state puts in place (not deletions) and bytes.
func (st State) Files() (files, bytes int64) {
	for _, r := range st {
		if r.Kind != change.KindDelete && r.Type != change.TypeDir {
			files++
			bytes += r.Size
		}
	}
	return
}

// cleanAbs says whether p is a clean absolute path inside a sandbox.
func cleanAbs(p string) bool {
	return p != "/" && sandboxpath.IsClean(p)
}

// exactBytes returns s's bytes when JSON cannot hold s exactly, else nil.
func exactBytes(s string) []byte {
	_, b := escape.JSON(s)
	return b
}
