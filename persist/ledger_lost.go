package persist

import (
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
