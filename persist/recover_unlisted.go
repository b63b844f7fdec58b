package persist

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// RefuseUnlisted is the reason of a recovery entry that the close kept but
// could not list: its manifest was cut short (the disk was full), so
// whether the file was refused or discarded is not known. It is kept as
// refused.
const RefuseUnlisted = "unlisted"

// manifestCut says whether a session's manifest lacks entries its close
// kept: the close said so (info.json's incomplete), or the manifest has
// fewer lines than info.json counts (a close before the flag).
func manifestCut(rs *recoverySession, lines int64) bool {
	return rs.hasInfo && (rs.info.Incomplete || lines < rs.info.Entries)
}

// eachUnlisted calls fn for each file or symlink of the session's tree
// that its manifest does not list (listed: the manifest's paths) and that
// the session did not persist (on overlay the tree is the upper directory,
// which holds the persisted files too). Directories are not listed: the
// files beneath them are. The tree is read through the hostile-tree
// reader, never following a link.
func (e *Env) eachUnlisted(ctx context.Context, rs *recoverySession, listed map[string]bool, expires func() RecoverEntry, fn func(RecoverEntry) error) error {
	tree := filepath.Join(rs.dir, treeDir)
	if _, err := os.Lstat(tree); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	persisted := map[string]bool{}
	if err := e.store.View(func(tx *store.Tx) error {
		return tx.ForEachSessionRecord(ctx, rs.sandbox, rs.n, func(r *store.Record) error {
			persisted[r.Path] = true
			return nil
		})
	}); err != nil {
		return err
	}
	return hostile.TreeChanges(ctx, tree, "", func(c hostile.Change) error {
		if listed[c.Path] || persisted[c.Path] || (c.Type != change.TypeFile && c.Type != change.TypeSymlink) {
			return nil
		}
		x := expires()
		x.Session, x.Path, x.PathBytes = rs.n, c.Path, exactBytes(c.Path)
		x.Kind, x.Type, x.Size = change.KindAdd, c.Type, c.Size
		x.Verdict, x.Reason = change.VerdictRefuse, RefuseUnlisted
		return fn(x)
	})
}
