package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// RecoverID is the exception id of the records `recover restore` makes.
const RecoverID = "recover"

// RecoverEntry is one change the recovery area holds.
type RecoverEntry struct {
	Session   uint64          `json:"session"`
	Path      string          `json:"path"`
	PathBytes []byte          `json:"path_bytes,omitempty"` // the exact bytes when path is not valid UTF-8
	Kind      change.Kind     `json:"kind"`
	Type      change.FileType `json:"type"`
	Size      int64           `json:"size"`
	Verdict   change.Verdict  `json:"verdict"`
	Reason    string          `json:"reason"`
	Exception string          `json:"exception,omitempty"`
	Expires   time.Time       `json:"expires"`
}

// RecoverList streams what sandbox's recovery area holds and has not
// expired, session by session (session 0: every one), entry by entry in
// the order close met them; pattern ("" for all) is matched as an
// exception's pattern is, or names a directory to list beneath.
func (e *Env) RecoverList(ctx context.Context, sandbox string, session uint64, pattern string, fn func(RecoverEntry) error) error {
	if pattern != "" && !doublestar.ValidatePattern(pattern) {
		return &InputError{Input: "pattern", Problem: fmt.Sprintf("%q is not a valid pattern", pattern)}
	}
	match := func(p string) bool {
		if pattern == "" {
			return true
		}
		ok, _ := doublestar.Match(pattern, p)
		return ok || strings.HasPrefix(p, strings.TrimSuffix(pattern, "/")+"/")
	}
	return e.eachRecoverable(ctx, sandbox, session, func(_ *recoverySession, x RecoverEntry) error {
		if !match(x.Path) {
			return nil
		}
		return fn(x)
	})
}

// eachRecoverable calls fn for each live entry of sandbox's sessions.
func (e *Env) eachRecoverable(ctx context.Context, sandbox string, session uint64, fn func(*recoverySession, RecoverEntry) error) error {
	sb, err := e.recoverySandbox(sandbox)
	if err != nil {
		return err
	}
	sessions, err := e.recoverySessions(sandbox)
	if err != nil {
		return err
	}
	r, last, now := retentionOf(sb), lastClosed(sb), e.Now()
	newer := newerKept(r, sessions, last, now)
	found := false
	for _, rs := range sortedByNumber(sessions) {
		if (session != 0 && rs.n != session) || (rs.n > last && !rs.info.Fenced) {
			continue
		}
		found = true
		ref, disc := expiry(r, rs, newer[rs.n], last)
		var listed map[string]bool // the manifest's paths, when it was cut short
		if rs.info.Incomplete {
			listed = map[string]bool{}
		}
		var lines int64
		err := e.readManifest(rs, func(m ManifestEntry) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			lines++
			if listed != nil {
				listed[m.Path] = true
			}
			x := RecoverEntry{Session: rs.n, Path: m.Path, PathBytes: exactBytes(m.Path), Kind: m.Kind, Type: m.Type, Size: m.Size,
				Verdict: m.Verdict, Reason: m.Reason, Exception: m.Exception, Expires: ref}
			if m.Verdict == change.VerdictDiscard {
				x.Expires = disc
			}
			if !now.Before(x.Expires) {
				return nil
			}
			return fn(rs, x)
		})
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil || !manifestCut(rs, lines) || !now.Before(ref) {
			if err != nil {
				return err
			}
			continue
		}
		// The close kept more than its manifest lists (the disk was full
		// as it wrote it): what the tree holds beyond the list is kept as
		// refused, so that it can be found and restored.
		if listed == nil {
			listed = map[string]bool{}
			if err := e.readManifest(rs, func(m ManifestEntry) error { listed[m.Path] = true; return nil }); err != nil {
				return err
			}
		}
		err = e.eachUnlisted(ctx, rs, listed, func() RecoverEntry { return RecoverEntry{Expires: ref} }, func(x RecoverEntry) error { return fn(rs, x) })
		if err != nil {
			return err
		}
	}
	if session != 0 && !found {
		return e.noSessionHere(sandbox, session)
	}
	return nil
}

// recoverySandbox is the sandbox whose recovery area ls, export and purge
// read. One the ledger no longer has (removed on another host, whose rm
// left this host's fenced sessions: finishRemoval) stands in as closed
// after every session, with the default retention: its fenced sessions
// stay listed until fencedKeep has passed or they are purged.
func (e *Env) recoverySandbox(sandbox string) (*store.Sandbox, error) {
	sb, err := e.getSandbox(sandbox)
	if !errors.Is(err, errdefs.ErrNotFound) || ValidateName("sandbox", sandbox) != nil {
		return sb, err
	}
	if ses, lerr := e.recoverySessions(sandbox); lerr != nil || len(ses) == 0 {
		return nil, err
	}
	return &store.Sandbox{Name: sandbox, State: store.StateClosed, Session: math.MaxUint64}, nil
}

// noSessionHere is the error for a session this host's recovery area
// does not hold; on a shared ledger the host that had it open may.
func (e *Env) noSessionHere(sandbox string, session uint64) error {
	msg := fmt.Sprintf("%s holds nothing of session %d", e.RecoveryAreaName(sandbox), session)
	if e.sharedLedger() {
		msg += fmt.Sprintf("; each host keeps its own: run this on the host that had session %d open (spillway log %s names it)", session, sandbox)
	}
	return errclass.New(errdefs.ErrNotFound, msg)
}

// sortedByNumber orders one sandbox's sessions by number.
func sortedByNumber(s []*recoverySession) []*recoverySession {
	out := append([]*recoverySession(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].n < out[j-1].n; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// recoverable is one path found in the area, with what lies beneath it.
type recoverable struct {
	rs      *recoverySession
	entry   RecoverEntry   // the path itself (Path == "" when only entries beneath it are listed)
	beneath []RecoverEntry // entries below the path, in walk order
}

// RecoveryAreaName names sandbox's recovery area in messages: on a shared
// ledger, with this host, since each host keeps its own.
func (e *Env) RecoveryAreaName(sandbox string) string {
	if e.sharedLedger() {
		return fmt.Sprintf("the recovery area of %s on this host (%s)", sandbox, escape.Name(e.hostID))
	}
	return "the recovery area of " + sandbox
}

// readManifest calls fn for each entry of a session's manifest; an error
// matching os.ErrNotExist says it has none.
func (e *Env) readManifest(rs *recoverySession, fn func(ManifestEntry) error) error {
	f, err := os.Open(filepath.Join(rs.dir, "manifest.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	return eachManifestEntry(f, fn)
}

// findRecoverable finds p in session (0: the newest session that holds it
// or anything beneath it).
func (e *Env) findRecoverable(ctx context.Context, sandbox string, session uint64, p string) (*recoverable, error) {
	fs, err := e.findRecoverables(ctx, sandbox, session, []string{p})
	if err != nil {
		return nil, err
	}
	return fs[0], nil
}

// findRecoverables finds each of paths as findRecoverable does, reading
// the area's manifests once whatever the number of paths (a restore of
// 1,500 paths given one by one read every manifest 1,500 times). The
// error is the first path's, in the order given.
func (e *Env) findRecoverables(ctx context.Context, sandbox string, session uint64, paths []string) ([]*recoverable, error) {
	type found struct {
		byS    map[uint64]*recoverable
		newest uint64
	}
	want := map[string]*found{} // by path asked for
	for _, p := range paths {
		if !cleanAbs(p) && p != "/" {
			return nil, &InputError{Input: "path", Problem: fmt.Sprintf("%s is not a clean absolute path", escape.Name(p))}
		}
		want[p] = &found{byS: map[uint64]*recoverable{}}
	}
	err := e.eachRecoverable(ctx, sandbox, session, func(rs *recoverySession, x RecoverEntry) error {
		// The entry belongs to every path asked for that is it or one of
		// its ancestors: walk up from it rather than over the paths.
		for a := x.Path; ; a = path.Dir(a) {
			if w := want[a]; w != nil {
				f := w.byS[rs.n]
				if f == nil {
					f = &recoverable{rs: rs}
					w.byS[rs.n] = f
				}
				if a == x.Path {
					f.entry = x
				} else {
					f.beneath = append(f.beneath, x)
				}
				w.newest = max(w.newest, rs.n)
			}
			if a == "/" || !strings.HasPrefix(a, "/") {
				return nil
			}
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]*recoverable, len(paths))
	for i, p := range paths {
		w := want[p]
		if f := w.byS[w.newest]; f != nil {
			out[i] = f
			continue
		}
		where := e.RecoveryAreaName(sandbox)
		if session != 0 {
			where += fmt.Sprintf(", session %d", session)
		}
		if e.sharedLedger() {
			// A fenced or abandoned session's changes are on the host that
			// had it open.
			return nil, errclass.Errorf(errdefs.ErrNotFound, "%s is not in %s; each host keeps its own (see spillway recover ls %s)", escape.Name(p), where, sandbox)
		}
		return nil, errclass.Errorf(errdefs.ErrNotFound, "%s is not in %s (see spillway recover ls %s)", escape.Name(p), where, sandbox)
	}
	return out, nil
}

// all returns the path's entry (when listed) and those beneath it.
func (f *recoverable) all() []RecoverEntry {
	if f.entry.Path == "" {
		return f.beneath
	}
	return append([]RecoverEntry{f.entry}, f.beneath...)
}

// treeOf is the directory holding a session's content, or an error when
// none was kept.
func treeOf(rs *recoverySession, x RecoverEntry) (string, error) {
	tree := filepath.Join(rs.dir, treeDir)
	if _, err := os.Lstat(tree); err != nil {
		return "", errclass.Errorf(errdefs.ErrNotFound, "the content of %s (session %d) was not kept: only its manifest line is", escape.Name(x.Path), rs.n)
	}
	return tree, nil
}

// openEntry opens a file entry's content through the hostile-tree
// reader: never through a symlink, never a special file.
func openEntry(rs *recoverySession, x RecoverEntry) (*hostile.File, error) {
	tree, err := treeOf(rs, x)
	if err != nil {
		return nil, err
	}
	if x.Kind == change.KindDelete {
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "%s was deleted in session %d: there is no content", escape.Name(x.Path), rs.n)
	}
	f, err := hostile.OpenFile(tree, x.Path, hostile.Change{}, math.MaxInt64)
	if err != nil {
		return nil, unsafeEntry(x, err)
	}
	return f, nil
}

// unsafeEntry explains why an entry's content cannot be read.
func unsafeEntry(x RecoverEntry, err error) error {
	switch {
	case errors.Is(err, hostile.ErrSymlink):
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "%s is a symlink: the recovery area never follows one", escape.Name(x.Path))
	case errors.Is(err, hostile.ErrSpecial):
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "%s is a special file (%s): only files and directories are recovered", escape.Name(x.Path), x.Type)
	case errors.Is(err, hostile.ErrNotFound):
		return errclass.Errorf(errdefs.ErrNotFound, "the content of %s (session %d) is gone from the recovery area", escape.Name(x.Path), x.Session)
	case errors.Is(err, hostile.ErrTooDeep):
		return errclass.Errorf(errdefs.ErrFailedPrecondition, "%s is too deep for the host to read", escape.Name(x.Path))
	}
	return fmt.Errorf("read %s from the recovery area: %w", escape.Name(x.Path), err)
}

// RecoverOpen opens the content of path in the recovery area (session 0:
// the newest that holds it) and returns its entry.
func (e *Env) RecoverOpen(ctx context.Context, sandbox, path string, session uint64) (io.ReadCloser, *RecoverEntry, error) {
	f, err := e.findRecoverable(ctx, sandbox, session, path)
	if err != nil {
		return nil, nil, err
	}
	if f.entry.Path == "" || f.entry.Type == change.TypeDir {
		return nil, nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "%s is a directory in the recovery area: list it with spillway recover ls %s %s", escape.Name(path), sandbox, escape.Name(path))
	}
	r, err := openEntry(f.rs, f.entry)
	if err != nil {
		return nil, nil, err
	}
	return r, &f.entry, nil
}

// RecoverPurge forgets sandbox's recovery area now (session 0: all of
// it) and audits it.
func (e *Env) RecoverPurge(sandbox string, session uint64) (Dropped, error) {
	if err := e.lockSandbox(sandbox); err != nil {
		return Dropped{}, err
	}
	var d Dropped
	if _, err := e.recoverySandbox(sandbox); err != nil {
		return d, err
	}
	sessions, err := e.recoverySessions(sandbox)
	if err != nil {
		return d, err
	}
	found := false
	for _, rs := range sessions {
		if session != 0 && rs.n != session {
			continue
		}
		found = true
		if err := e.removeSessionDir(sandbox, rs.n); err != nil {
			return d, err
		}
		// Purged, its files are not to come back from the blobs at the
		// next open or --abandon (keepLostCommit).
		if err := e.dropCommitNote(sandbox, rs.n); err != nil {
			return d, err
		}
		d.Sessions++
		d.Bytes += rs.bytes()
	}
	if session != 0 && !found {
		return d, e.noSessionHere(sandbox, session)
	}
	err = e.store.Update(func(tx *store.Tx) error {
		_, err := tx.Append(e.Now(), "recover.purge", sandbox, map[string]string{
			"session": fmt.Sprint(session), "sessions": fmt.Sprint(d.Sessions), "bytes": fmt.Sprint(d.Bytes),
		})
		return err
	})
	return d, err
}
