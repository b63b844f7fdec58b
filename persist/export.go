package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/sandboxpath"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// ExportSet is what an export writes: the entries of one persisted state
// at or under one path, derived once.
type ExportSet struct {
	Sandbox    string
	Path       string        // the exported path ("/" for the whole state)
	Generation uint64        // the generation of the state
	Root       *store.Record // the record at Path itself; nil for "/" or a directory of the image
	Entries    []*store.Record
	// Entries are the records strictly under Path, by path (parents
	// first), without deletions: a deleted path is absent.
}

// ExportStats counts what an export wrote.
type ExportStats struct {
	Files int   `json:"files"`
	Dirs  int   `json:"dirs"`
	Links int   `json:"links"`
	Bytes int64 `json:"bytes"`
}

// Export derives the state at at once and selects what lies at or under
// p. p not in the state, or deleted there, is an error.
func (e *Env) Export(ctx context.Context, sandbox, p string, at At) (*ExportSet, error) {
	if p != "/" && !sandboxpath.IsClean(p) {
		return nil, invalidf("%s is not a clean absolute path", escape.Name(p))
	}
	st, gen, err := e.StateAt(ctx, sandbox, at)
	if err != nil {
		return nil, err
	}
	set := &ExportSet{Sandbox: sandbox, Path: p, Generation: gen, Root: st[p]}
	prefix := strings.TrimSuffix(p, "/") + "/"
	for _, r := range st.Sorted() {
		if strings.HasPrefix(r.Path, prefix) && r.Kind != change.KindDelete {
			set.Entries = append(set.Entries, r)
		}
	}
	switch {
	case set.Root != nil && set.Root.Kind == change.KindDelete:
		return nil, errclass.Errorf(errdefs.ErrNotFound, "%s is deleted in the persisted state of %s", escape.Name(p), sandbox)
	case set.Root != nil && set.Root.Type != change.TypeDir:
		set.Entries = nil // a file or link: its own record only
	case set.Root == nil && len(set.Entries) == 0 && p != "/":
		return nil, errclass.Errorf(errdefs.ErrNotFound, "%s is not in the persisted state of %s", escape.Name(p), sandbox)
	}
	return set, nil
}

// rel returns r's path below the exported path, as a writer path ("/x/y").
func (s *ExportSet) rel(r *store.Record) string {
	if s.Path == "/" {
		return r.Path
	}
	return r.Path[len(s.Path):]
}

// owner returns the owner to give an exported entry: the recorded one as
// root, else the user's own (a chown to someone else is not permitted).
func owner(r *store.Record) (uint32, uint32) {
	if os.Geteuid() == 0 {
		return r.UID, r.GID
	}
	return uint32(os.Getuid()), uint32(os.Getgid())
}

// ExportDir writes a directory export beneath dest, a directory that
// exists, through descriptors (hostile.Writer): no component below dest
// is resolved through a symlink, a link planted in dest's tree is
// replaced, never followed, and each file is written to a temporary name
// renamed into place once every byte matched its digest. Directories the
// state does not record (those of the image) are made 0755. It runs with
// the ledger parked (ParkLedger).
func (e *Env) ExportDir(ctx context.Context, s *ExportSet, dest string) (*ExportStats, error) {
	if s.Root != nil && s.Root.Type != change.TypeDir {
		return nil, invalidf("%s is a %s, not a directory", escape.Name(s.Path), s.Root.Type)
	}
	if err := e.ParkLedger(); err != nil {
		return nil, err
	}
	w, err := hostile.NewWriter(dest)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	w.KeepDirs = true // the host's directories are not the sandbox's to replace
	// An export killed before left its temporary files (an export --force
	// runs again): each directory written into is cleared of them.
	if err := w.RemoveTemps("/"); err != nil {
		return nil, err
	}
	st := &ExportStats{}
	made := map[string]bool{}
	var dirs []*store.Record
	for i, r := range s.Entries {
		if i%256 == 255 && ctx.Err() != nil {
			return st, ctx.Err()
		}
		p := s.rel(r)
		for _, a := range ancestors(p) {
			if !made[a] {
				uid, gid := owner(&store.Record{})
				if err := w.Mkdir(a, 0o755, uid, gid); err != nil {
					return st, exportErr(r, err)
				}
				if err := w.RemoveTemps(a); err != nil {
					return st, exportErr(r, err)
				}
				made[a] = true
			}
		}
		uid, gid := owner(r)
		switch r.Type {
		case change.TypeDir:
			err = w.Mkdir(p, r.Mode&DirModeBits, uid, gid)
			if err == nil && !made[p] {
				err = w.RemoveTemps(p)
			}
			made[p] = true
			dirs = append(dirs, r)
			st.Dirs++
		case change.TypeSymlink:
			err = w.Symlink(p, r.Link, uid, gid)
			if err == nil {
				err = w.Chtimes(p, r.Mtime)
			}
			st.Links++
		case change.TypeFile:
			err = e.exportFile(w, p, r, uid, gid)
			st.Files++
			st.Bytes += r.Size
		default:
			err = fmt.Errorf("cannot export a %s", r.Type)
		}
		if err != nil {
			return st, exportErr(r, err)
		}
	}
	// Children change their directory's mtime: directories last, deepest
	// first.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := w.Chtimes(s.rel(dirs[i]), dirs[i].Mtime); err != nil {
			return st, exportErr(dirs[i], err)
		}
	}
	return st, nil
}

func (e *Env) exportFile(w *hostile.Writer, p string, r *store.Record, uid, gid uint32) error {
	src, err := e.OpenRecord(r)
	if err != nil {
		return err
	}
	defer src.Close()
	return w.WriteFile(p, src, r.Mode&0o777, uid, gid, r.Mtime)
}

// exportErr names the record an error is about, unless it does already.
func exportErr(r *store.Record, err error) error {
	if strings.HasPrefix(err.Error(), "record r") || errors.Is(err, context.Canceled) {
		return err
	}
	return recordErr(r, err)
}

// ancestors lists the directories on the way to p ("/a/b/c": "/a", "/a/b").
func ancestors(p string) []string {
	var out []string
	for a := path.Dir(p); a != "/" && a != "."; a = path.Dir(a) {
		out = append(out, a)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
