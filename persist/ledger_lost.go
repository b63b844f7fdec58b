package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/change"
)

// A ledger can lose a commit it acknowledged: a failover to a standby
// that had not received it (asynchronous replication), or a restore of an
// older backup. It then shows a session of this host's as open (or
// closing) whose close this host finished: the root is gone, so nothing
// of the session can be closed here again. This host knows which close
// committed: after each commit it writes a note of the generation, and a
// list of the files the close persisted (commitNotesDir). open and close
// then say what happened instead of failing on the missing root, and
// `close --abandon` ends the session in the ledger, keeping in the
// recovery area what the lost commit had persisted, copied from the
// blobs.

// commitNotesDir is where this host keeps the notes of its closes of
// sandbox: ROOT/commits/SANDBOX/N (the generation session N's close
// committed, and when) and N.jsonl (what it persisted, a lostFile a
// line). They live apart from the recovery area, whose retention removes
// a session's directory as soon as the next close (and whose settings may
// keep nothing): a ledger may lose two closes, or be restored from a
// backup days old. A later close removes the notes older than
// commitNoteKeep, gc too, rm all of the sandbox's, and `recover purge` a
// purged session's.
func (e *Env) commitNotesDir(sandbox string) string {
	return filepath.Join(e.root, commitNotesName, sandbox)
}

// commitNotesName is the state directory's directory of commit notes.
const commitNotesName = "commits"

// commitNoteKeep is how long a close's note outlives the next close.
const commitNoteKeep = 7 * 24 * time.Hour

// LedgerLostReason is the manifest reason of a change whose persisting
// commit the ledger lost, kept by `close --abandon`.
const LedgerLostReason = "ledger-lost"

// abandonedHerePrefix begins the Abandoned reason of a session its own
// host ended with `close --abandon` (not a takeover: no fence follows).
const abandonedHerePrefix = "ended on its host: "

// commitNotePath and persistedListPath are session n's note and list.
func (e *Env) commitNotePath(sandbox string, n uint64) string {
	return filepath.Join(e.commitNotesDir(sandbox), strconv.FormatUint(n, 10))
}

func (e *Env) persistedListPath(sandbox string, n uint64) string {
	return e.commitNotePath(sandbox, n) + ".jsonl"
}

// noteCommitted records that this host's close of session n of sandbox
// committed generation g, with the list of the regular files it persisted
// and their digests, so that what a lost commit persisted can be taken
// back from the blobs; then it removes the notes of earlier closes older
// than commitNoteKeep. Trouble is only warned about: the close is done.
func (e *Env) noteCommitted(sandbox string, n, g uint64, sum *CloseSummary) {
	dir := e.commitNotesDir(sandbox)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		err = writeLazy(dir, filepath.Base(e.persistedListPath(sandbox, n)), persistedList(sum))
	}
	if err == nil {
		err = writeLazy(dir, filepath.Base(e.commitNotePath(sandbox, n)), fmt.Appendf(nil, "%d %s\n", g, e.Now().UTC().Format(time.RFC3339)))
	}
	if err == nil {
		err = e.pruneCommitNotes(sandbox, n)
	}
	if err != nil {
		e.warnf("recovery area of %s session %d: %v", sandbox, n, err)
	}
}

// pruneCommitNotes removes the notes (and lists) of sandbox's sessions
// before n written more than commitNoteKeep ago, by their files' times.
func (e *Env) pruneCommitNotes(sandbox string, n uint64) error {
	ents, err := os.ReadDir(e.commitNotesDir(sandbox))
	if err != nil {
		return err
	}
	for _, ent := range ents {
		m, err := strconv.ParseUint(strings.TrimSuffix(ent.Name(), ".jsonl"), 10, 64)
		if err != nil || m >= n {
			continue
		}
		// A note's age is its file's (written with the commit): every
		// close runs this, and reads no note.
		fi, err := ent.Info()
		if err != nil || e.Now().Sub(fi.ModTime()) < commitNoteKeep {
			continue
		}
		if err := os.Remove(filepath.Join(e.commitNotesDir(sandbox), ent.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// dropCommitNote removes session n's note and list (recover purge).
func (e *Env) dropCommitNote(sandbox string, n uint64) error {
	for _, p := range []string{e.commitNotePath(sandbox, n), e.persistedListPath(sandbox, n)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// lostFile is a line of a persisted list: a regular file a close
// persisted.
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

// persistedList is a persisted list's content for sum, each line as
// encoding/json would write a lostFile, without reflection (a close may
// persist millions of files).
func persistedList(sum *CloseSummary) []byte {
	var b []byte
	for _, p := range sum.Persisted {
		if p.Type != change.TypeFile || p.Digest == "" || p.Kind == change.KindDelete {
			continue
		}
		b = appendPathJSON(b, p.Path, p.PathBytes)
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
	b, err := readPrivate(e.commitNotePath(sandbox, n))
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
