package persist

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// A ledger can lose a commit it acknowledged: a failover to a standby
// that had not received it (asynchronous replication), or a restore of an
// older backup. It then shows a session of this host's as open (or
// closing) whose close this host finished: the root is gone, so nothing
// of the session can be closed here again. This host knows which close
// committed: after each commit it writes the generation into the
// session's recovery directory (committedFile). open and close then say
// what happened instead of failing on the missing root, and `close
// --abandon` ends the session in the ledger, keeping in the recovery
// area what the lost commit had persisted (on overlay, where the
// session's tree holds it).

// committedFile, in a session's recovery directory, holds the generation
// its close committed and when, written after the commit (lazily: a host
// that crashes before it is written only says less).
const committedFile = "committed"

// LedgerLostReason is the manifest reason of a change whose persisting
// commit the ledger lost, kept by `close --abandon`.
const LedgerLostReason = "ledger-lost"

// abandonedHerePrefix begins the Abandoned reason of a session its own
// host ended with `close --abandon` (not a takeover: no fence follows).
const abandonedHerePrefix = "ended on its host: "

// noteCommitted records that this host's close of session n of sandbox
// committed generation g. When the session's recovery tree will not hold
// what the close persisted (native snapshotter, or nothing refused or
// discarded: no tree), it also lists the persisted files with their
// digests (persistedListFile), so that what a lost commit persisted can
// be taken back from the blobs. Trouble is only warned about: the close
// is done.
func (e *Env) noteCommitted(sandbox string, n, g uint64, sum *CloseSummary) {
	dir := e.sessionDir(sandbox, n)
	if _, err := os.Lstat(dir); err != nil {
		return // a dry run's, or no recovery directory: nothing to note in
	}
	rs := e.loadSession(sandbox, n)
	var err error
	if !(rs.hasInfo && rs.info.Snapshotter == "overlayfs" && rs.info.Entries > 0) {
		err = writeLazy(dir, persistedListFile, persistedList(sum))
	}
	if err == nil {
		err = writeLazy(dir, committedFile, fmt.Appendf(nil, "%d %s\n", g, e.Now().UTC().Format(time.RFC3339)))
	}
	if err != nil {
		e.warnf("recovery area of %s session %d: %v", sandbox, n, err)
	}
}

// persistedListFile, in a session's recovery directory, lists the
// regular files its close persisted (lostFile, one JSON object a line),
// written with the committed note when the session's tree will not hold
// them.
const persistedListFile = "persisted.jsonl"

// lostFile is a line of persistedListFile.
type lostFile struct {
	Path      string `json:"path"`
	PathBytes []byte `json:"path_bytes,omitempty"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	Mode      uint32 `json:"mode"` // permission bits, as recorded
	UID       uint32 `json:"uid"`
	GID       uint32 `json:"gid"`
	Mtime     int64  `json:"mtime"` // nanoseconds since the epoch
}

// persistedList is persistedListFile's content for sum, each line as
// encoding/json would write a lostFile, without reflection (a close may
// persist millions of files).
func persistedList(sum *CloseSummary) []byte {
	var b []byte
	for _, p := range sum.Persisted {
		if p.Type != change.TypeFile || p.Digest == "" || p.Kind == change.KindDelete {
			continue
		}
		b = append(b, `{"path":`...)
		b = appendJSONString(b, p.Path)
		if p.PathBytes != nil {
			b = append(b, `,"path_bytes":"`...)
			b = base64.StdEncoding.AppendEncode(b, p.PathBytes)
			b = append(b, '"')
		}
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, p.Size, 10)
		b = append(b, `,"digest":`...)
		b = appendJSONString(b, p.Digest)
		b = append(b, `,"mode":`...)
		b = strconv.AppendUint(b, uint64(p.mode), 10)
		b = append(b, `,"uid":`...)
		b = strconv.AppendUint(b, uint64(p.uid), 10)
		b = append(b, `,"gid":`...)
		b = strconv.AppendUint(b, uint64(p.gid), 10)
		b = append(b, `,"mtime":`...)
		var ns int64
		if !p.mtime.IsZero() {
			ns = p.mtime.UnixNano()
		}
		b = strconv.AppendInt(b, ns, 10)
		b = append(b, "}\n"...)
	}
	return b
}

// writeLazy writes data to dir/name whole, by a rename, not flushed.
func writeLazy(dir, name string, data []byte) error {
	f, err := atomicfile.Create(dir, "."+name+".tmp-")
	if err != nil {
		return err
	}
	f.Lazy = true
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit(filepath.Join(dir, name), atomicfile.Replace)
}

// committedHere returns the generation this host's close of session n of
// sandbox committed, and when; ok is false when this host has no such
// note.
func (e *Env) committedHere(sandbox string, n uint64) (g uint64, at time.Time, ok bool) {
	b, err := readPrivate(filepath.Join(e.sessionDir(sandbox, n), committedFile))
	if err != nil {
		return 0, time.Time{}, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, time.Time{}, false
	}
	g, err = strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	at, err = time.Parse(time.RFC3339, f[1])
	return g, at, err == nil
}

// NoRootError is an open or close of a session the ledger shows open (or
// closing) on this host, whose root this host does not have. It matches
// errdefs.ErrFailedPrecondition.
type NoRootError struct {
	Sandbox string
	Session uint64
	Host    string
	State   string // the ledger's: open or closing
	// Ledger is the generation the ledger holds; Committed (non-zero) the
	// one this host's close of the session committed, at At.
	Ledger, Committed uint64
	At                time.Time
}

func (e *NoRootError) Error() string {
	end := fmt.Sprintf("end the session in the ledger with: spillway close %s --abandon --reason TEXT", e.Sandbox)
	if e.Committed != 0 {
		return fmt.Sprintf("sandbox %s: the ledger shows session %d %s on this host (%s) at generation %d, but this host closed it and committed generation %d at %s: the ledger lost that commit (a database failover to a standby that had not received it, or a restore of an older backup); %s (what the commit persisted is then kept in this host's recovery area where it still holds the session's files: spillway recover ls %s --session %d)",
			e.Sandbox, e.Session, e.State, escape.Name(e.Host), e.Ledger, e.Committed, e.At.UTC().Format("2006-01-02 15:04:05 UTC"), end, e.Sandbox, e.Session)
	}
	return fmt.Sprintf("sandbox %s: the ledger shows session %d %s on this host (%s), but this host has no root of it (its state directory was replaced or cleaned, or the ledger lost this host's close of it): nothing of it can be closed here; %s",
		e.Sandbox, e.Session, e.State, escape.Name(e.Host), end)
}

func (e *NoRootError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// checkRootHere returns a *NoRootError when the ledger shows sb open or
// closing on this host and this host has no root of that session. A
// close's root goes only after its commit, so a close interrupted before
// it always finds its root.
func (e *Env) checkRootHere(ctx context.Context, sb *store.Sandbox) error {
	if sb.State == store.StateClosed || sb.Session == 0 {
		return nil
	}
	// The root first: it is local, and almost always there.
	if ok, err := e.snap.Exists(ctx, sessionKey(sb.Name, sb.Session)); err != nil || ok {
		return err
	}
	var ses *store.Session
	if err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(sb.Name, sb.Session); return err }); err != nil {
		return err
	}
	if ses.Host != e.hostID || ses.Abandoned != "" {
		return nil // another host's, or not open: not this check's
	}
	nr := &NoRootError{Sandbox: sb.Name, Session: sb.Session, Host: e.hostID, State: sb.State, Ledger: sb.Generation}
	// The note says this host's close of the session committed; the
	// ledger showing the session not closed is the loss (whatever its
	// generation is now: a review decision may have raised it since).
	if g, at, ok := e.committedHere(sb.Name, sb.Session); ok {
		nr.Committed, nr.At = g, at
	}
	return nr
}

// Abandoned is what `close --abandon` did.
type Abandoned struct {
	Sandbox    string `json:"sandbox"`
	Session    uint64 `json:"session"`
	Generation uint64 `json:"generation"` // the ledger's, at which the sandbox is now closed
	// LostGeneration (non-zero) is the generation this host's close of
	// the session committed and the ledger lost; Kept counts the files of
	// that commit kept in the recovery area (reason ledger-lost).
	LostGeneration uint64 `json:"lost_generation,omitempty"`
	Kept           int64  `json:"kept"`
}

// AbandonSession ends, in the ledger, this host's session of a sandbox
// whose root this host no longer has (a *NoRootError): the session
// closes without persisting anything, the sandbox stays at the ledger's
// generation, the lease is released, and the ledger's audit log says who
// did it and why. When this host's close of the session committed a
// generation the ledger lost, what that close persisted is listed in the
// session's recovery manifest (reason ledger-lost) and kept as a fenced
// session is: `recover restore` brings it back, reviewable.
func (e *Env) AbandonSession(ctx context.Context, name, reason string) (*Abandoned, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, &InputError{Input: "reason", Problem: "is required: say why the session is abandoned"}
	}
	if err := e.lockSandbox(name); err != nil {
		return nil, err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.State == store.StateClosed {
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "sandbox %s is closed: there is no session to abandon", name)
	}
	nrErr := e.checkRootHere(ctx, sb)
	nr, ok := nrErr.(*NoRootError)
	if !ok {
		if nrErr != nil {
			return nil, nrErr
		}
		var ses *store.Session
		if err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(name, sb.Session); return err }); err != nil {
			return nil, err
		}
		if ses.Host != e.hostID {
			return nil, &openOnHostError{Sandbox: name, Host: ses.Host}
		}
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "session %d of %s has its root on this host: close it (spillway close %s); --abandon only ends a session whose root this host no longer has", sb.Session, name, name)
	}
	n := sb.Session
	if later := e.laterSessionsHere(name, n); len(later) > 0 {
		// The ledger lost more than this session of this host's: the
		// next open would reuse those sessions' numbers and recovery
		// directories. Not handled: refuse, losing nothing.
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "this host's recovery area holds sessions %v of %s, after session %d, which the ledger does not know: it lost more than one of this host's sessions; --abandon handles one lost session only, and leaves them untouched (see docs/fleet.md, \"When a failover loses a commit\")", later, name, n)
	}
	var token uint64
	if err := e.store.View(func(tx *store.Tx) error {
		ses, err := tx.GetSession(name, n)
		if ses != nil {
			token = ses.Token
		}
		return err
	}); err != nil {
		return nil, err
	}
	if token == 0 {
		// A session opened before leases existed: take the lease now,
		// as its close would (sessionLease).
		if token, err = e.takeLease(name); err != nil {
			return nil, err
		}
	}
	out := &Abandoned{Sandbox: name, Session: n, LostGeneration: nr.Committed}
	// The local part first: it is idempotent, so an abandon that stops
	// after it (or whose ledger update fails) can be run again.
	if nr.Committed != 0 {
		kept, err := e.keepLostCommit(ctx, name, n)
		out.Kept = kept
		if err != nil {
			return nil, fmt.Errorf("keep what session %d of %s persisted before the ledger lost it: %w (nothing was changed in the ledger)", n, name, err)
		}
	}
	err = e.store.UpdateLeasedAudited(name, e.hostID, token, func(tx *store.Tx) error {
		// The ledger's host row must name this state directory: a root
		// that is not the one which opened the session has no say on it.
		if _, err := tx.HeartbeatFrom(e.hostID, e.rootID, e.hostTTL); err != nil {
			return err
		}
		sb, err := tx.GetSandbox(name)
		if err != nil {
			return err
		}
		if sb.State == store.StateClosed || sb.Session != n {
			return errclass.Errorf(errdefs.ErrConflict, "sandbox %s changed meanwhile: run again", name)
		}
		ses, err := tx.GetSession(name, n)
		if err != nil {
			return err
		}
		if err := abandonSession(tx, sb, ses, abandonedHerePrefix+reason); err != nil {
			return err
		}
		if err := tx.ReleaseLease(name, e.hostID, token); err != nil {
			return err
		}
		out.Generation = sb.Generation
		data := map[string]string{"session": fmt.Sprint(n), "host": e.hostID, "reason": reason, "generation": fmt.Sprint(sb.Generation)}
		if nr.Committed != 0 {
			data["lost_generation"] = fmt.Sprint(nr.Committed)
		}
		_, err = tx.Append(tx.Now(), "session.abandon", name, data)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Forget the open-session journal only if it names this session: a
	// later one of this host's (its open lost with the close) keeps its
	// root, which cleanup then fences instead of removing.
	if m, ok := e.openHere(name); ok && m == n {
		e.noteClosed(name)
	}
	return out, nil
}

// laterSessionsHere lists the sessions of sandbox after n that this
// host's recovery area holds, ascending (names only: an open runs it).
func (e *Env) laterSessionsHere(sandbox string, n uint64) []uint64 {
	ents, err := os.ReadDir(filepath.Join(e.recoveryDir(), sandbox))
	if err != nil {
		return nil
	}
	var later []uint64
	for _, d := range ents {
		if m, err := strconv.ParseUint(d.Name(), 10, 64); err == nil && d.IsDir() && m > n {
			later = append(later, m)
		}
	}
	slices.Sort(later)
	return later
}

// keepLostCommit lists in session n's recovery manifest what its close
// persisted and the ledger lost, reason ledger-lost, and keeps the session
// as a fenced one is (fencedKeep from now), whatever the sandbox's
// retention. Two sources, as noteCommitted left them:
//   - on overlay, when the close refused or discarded something, the
//     session's tree is its whole upper directory: each regular file of it
//     the manifest does not list yet is added (symlinks, which restore
//     refuses, deletions and directories are not content it can bring
//     back);
//   - otherwise persistedListFile names the files and their blobs: each is
//     copied from the blob store into the tree (created if need be), its
//     digest checked, and added.
//
// Entries already listed are skipped, so it can run again; it returns
// how many entries of the session are kept as ledger-lost, from this run
// or an earlier one.
func (e *Env) keepLostCommit(ctx context.Context, name string, n uint64) (int64, error) {
	rs := e.loadSession(name, n)
	if !rs.hasInfo {
		return 0, nil
	}
	tree := filepath.Join(rs.dir, treeDir)
	listed := map[string]bool{}
	// The manifest's counts, recounted on every run: an earlier run may
	// have stopped between its append and info.json.
	var entries, refused, kept int64
	if f, err := os.Open(filepath.Join(rs.dir, "manifest.jsonl")); err == nil {
		err = eachManifestEntry(f, func(x ManifestEntry) error {
			listed[x.Path] = true
			entries++
			if x.Verdict == change.VerdictRefuse {
				refused++
			}
			if x.Reason == LedgerLostReason {
				kept++
			}
			return nil
		})
		f.Close()
		if err != nil {
			return 0, err
		}
	}
	var lines []byte
	var added, bytes int64
	add := func(path string, size int64) {
		x := ManifestEntry{Path: path, PathBytes: exactBytes(path), Kind: change.KindAdd, Type: change.TypeFile, Size: size, Verdict: change.VerdictRefuse, Reason: LedgerLostReason}
		lines = append(x.appendJSON(lines), '\n')
		listed[path] = true
		added++
		bytes += size
	}
	list, err := readPersistedList(filepath.Join(rs.dir, persistedListFile))
	if err != nil {
		return 0, err
	}
	switch {
	case list != nil:
		if err := os.Mkdir(tree, 0o700); err != nil && !os.IsExist(err) {
			return 0, err
		}
		for _, lf := range list {
			if listed[lf.Path] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if err := e.copyLostFile(tree, lf); err != nil {
				e.warnf("recovery area of %s session %d: %s: %v", name, n, escape.Name(lf.Path), err)
				continue
			}
			add(lf.Path, lf.Size)
		}
		if added > 0 {
			// One flush for every copy, before the manifest names them.
			if err := syncFS(tree); err != nil {
				return 0, err
			}
		}
	case rs.info.Snapshotter == "overlayfs" && !rs.discardedGone:
		if _, err := os.Lstat(tree); err != nil {
			break
		}
		err := hostile.TreeChanges(ctx, tree, "", func(c hostile.Change) error {
			if !listed[c.Path] && !c.TooDeep && !c.Changed && c.Type == change.TypeFile {
				add(c.Path, c.Size)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if added > 0 {
		if err := appendPrivate(filepath.Join(rs.dir, "manifest.jsonl"), lines); err != nil {
			return 0, err
		}
	}
	if added == 0 && rs.info.Fenced && rs.info.Entries == entries {
		return kept, nil // kept before: its time runs from then
	}
	info := rs.info
	info.Entries, info.Refused = entries+added, refused+added
	if list != nil {
		info.Bytes += bytes // copied in; on overlay the tree held them already
	}
	// Kept as a fenced session is, for fencedKeep from now (not from the
	// lost close, which may be older than that).
	info.Fenced, info.Closed = true, e.Now()
	return kept + added, e.writeSessionInfo(name, n, info)
}

// readPersistedList reads persistedListFile; nil when there is none.
func readPersistedList(p string) ([]lostFile, error) {
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list := []lostFile{}
	dec := json.NewDecoder(f)
	for dec.More() {
		var lf lostFile
		if err := dec.Decode(&lf); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if lf.PathBytes != nil {
			lf.Path = string(lf.PathBytes)
		}
		list = append(list, lf)
	}
	return list, nil
}

// copyLostFile copies lf's blob to lf.Path beneath tree with the
// recorded mode bits, owner and mtime (restore takes the copy's),
// creating the directories on the way (0700) and never following a
// symlink or leaving tree: a component that is not a directory is an
// error and nothing is written. A regular file already there (a copy of
// an earlier try, or on native a persisted file the close moved in with
// a discarded directory) is kept when its bytes are lf's, read through
// the hostile reader. The copy's digest and size must be lf's. The
// caller syncs the tree.
func (e *Env) copyLostFile(tree string, lf lostFile) error {
	rel := strings.TrimPrefix(lf.Path, "/")
	if lf.Path == "" || lf.Path[0] != '/' || rel == "" || filepath.Clean(lf.Path) != lf.Path {
		return fmt.Errorf("not a clean absolute path")
	}
	dir, err := unix.Open(tree, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	parts := strings.Split(rel, "/")
	for _, c := range parts[:len(parts)-1] {
		if err := unix.Mkdirat(dir, c, 0o700); err != nil && err != unix.EEXIST {
			unix.Close(dir)
			return err
		}
		next, err := unix.Openat(dir, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		dir = next
	}
	defer unix.Close(dir)
	last := parts[len(parts)-1]
	fd, err := unix.Openat(dir, last, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err == unix.EEXIST {
		return sameAsLost(tree, lf)
	}
	if err != nil {
		return err
	}
	src, err := e.blobs.Open(lf.Digest)
	if err != nil {
		unix.Close(fd)
		unix.Unlinkat(dir, last, 0)
		return err
	}
	defer src.Close()
	dst := os.NewFile(uintptr(fd), lf.Path)
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(dst, h), src)
	if err == nil && ("sha256:"+hex.EncodeToString(h.Sum(nil)) != lf.Digest || size != lf.Size) {
		err = fmt.Errorf("blob %s does not hold the %d bytes recorded", lf.Digest, lf.Size)
	}
	if err == nil {
		err = unix.Fchown(fd, int(lf.UID), int(lf.GID))
	}
	if err == nil {
		err = unix.Fchmod(fd, lf.Mode&0o777)
	}
	if err == nil && lf.Mtime != 0 {
		ts := unix.NsecToTimespec(lf.Mtime)
		err = unix.UtimesNanoAt(dir, last, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(dir, last, 0)
	}
	return err
}

// sameAsLost says, as an error, whether the regular file at lf.Path
// beneath tree holds lf's bytes (nil: it does).
func sameAsLost(tree string, lf lostFile) error {
	f, err := hostile.OpenFile(tree, lf.Path, hostile.Change{}, lf.Size)
	if err != nil {
		return fmt.Errorf("something else is there: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if "sha256:"+hex.EncodeToString(h.Sum(nil)) != lf.Digest || size != lf.Size {
		return fmt.Errorf("a different file is there")
	}
	return nil
}

// keepLostTakenOver keeps, for an open, what a close of this host's had
// persisted when the ledger lost that commit and another host then took
// the sandbox over (the session abandoned to it): the close path says so
// through fencedBefore, an open warns. Sessions kept before are passed
// over.
func (e *Env) keepLostTakenOver(ctx context.Context, sb *store.Sandbox) error {
	for _, n := range sb.Abandoned {
		g, _, ok := e.committedHere(sb.Name, n)
		if !ok || e.loadSession(sb.Name, n).info.Fenced {
			continue
		}
		var ses *store.Session
		if err := e.store.View(func(tx *store.Tx) (err error) { ses, err = tx.GetSession(sb.Name, n); return err }); err != nil {
			return err
		}
		if ses.Host != e.hostID || strings.HasPrefix(ses.Abandoned, abandonedHerePrefix) {
			continue
		}
		if _, err := e.keepLostCommit(ctx, sb.Name, n); err != nil {
			e.warnf("recovery area of %s session %d: %v", sb.Name, n, err)
		}
		fs := &FencedSession{Err: fmt.Errorf("sandbox %s", sb.Name), Sandbox: sb.Name, Session: n, Entries: e.loadSession(sb.Name, n).info.Entries, LostGeneration: g}
		e.warnf("%v", fs)
	}
	return nil
}

// LaterSessionsError is an open of a sandbox for which this host's
// recovery area holds sessions after the ledger's last one: the ledger
// lost their open and close (each is then kept like a lost commit), or
// they are left from an earlier sandbox of the same name. The next open
// would reuse the first one's number and recovery directory. It matches
// errdefs.ErrFailedPrecondition.
type LaterSessionsError struct {
	Sandbox  string
	Ledger   uint64   // the ledger's last session
	Sessions []uint64 // this host's, after it
}

func (e *LaterSessionsError) Error() string {
	n := e.Sessions[0]
	return fmt.Sprintf("sandbox %s: this host's recovery area holds session %d, after the ledger's last session (%d): the ledger lost that session (a database failover to a standby that had not received it, or a restore of an older backup), or it is left from an earlier sandbox of this name; the next open would reuse its number. Take what you need from it (spillway recover ls %s --session %d; recover restore or export with --session %d), then spillway recover purge %s --session %d, and open again",
		e.Sandbox, n, e.Ledger, e.Sandbox, n, n, e.Sandbox, n)
}

func (e *LaterSessionsError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// checkNoLaterSessions returns a *LaterSessionsError when this host's
// recovery area holds sessions of the closed sandbox sb after its last,
// first keeping what those with a committed note had persisted (so that
// recover ls shows it). Sessions of an earlier sandbox of the same name
// (removed on another host, whose rm could not reach this host's area)
// are removed, as rm removes them on its own host, and said so.
func (e *Env) checkNoLaterSessions(ctx context.Context, sb *store.Sandbox) error {
	sessions, err := e.recoverySessions(sb.Name)
	if err != nil {
		return err
	}
	var later []uint64
	for _, rs := range sortedByNumber(sessions) {
		if rs.earlierIncarnation(sb) {
			if err := e.removeSessionDir(sb.Name, rs.n); err != nil {
				return err
			}
			e.warnf("removed session %d of an earlier sandbox named %s (removed on another host) from this host's recovery area", rs.n, sb.Name)
			continue
		}
		if rs.n > sb.Session {
			later = append(later, rs.n)
		}
	}
	if len(later) == 0 {
		return nil
	}
	for _, n := range later {
		if _, _, ok := e.committedHere(sb.Name, n); ok {
			if _, err := e.keepLostCommit(ctx, sb.Name, n); err != nil {
				e.warnf("recovery area of %s session %d: %v", sb.Name, n, err)
			}
		}
	}
	return &LaterSessionsError{Sandbox: sb.Name, Ledger: sb.Session, Sessions: later}
}

// earlierIncarnation says whether the session belongs to a sandbox of
// sb's name that existed before sb: its info names another incarnation,
// or (info written before incarnations were) it closed before sb was
// created.
func (rs *recoverySession) earlierIncarnation(sb *store.Sandbox) bool {
	if !rs.hasInfo {
		return false
	}
	if rs.info.Incarnation != 0 {
		return rs.info.Incarnation != incarnation(sb)
	}
	return rs.info.Closed.Before(sb.Created)
}
