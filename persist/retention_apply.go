package persist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/store"
)

// Dropped is what the retention rules removed from the recovery area.
type Dropped struct {
	Sessions  int   `json:"sessions"`  // session directories removed whole
	Discarded int   `json:"discarded"` // sessions whose discarded content was removed
	Bytes     int64 `json:"bytes"`
}

func (d *Dropped) add(o Dropped) {
	d.Sessions += o.Sessions
	d.Discarded += o.Discarded
	d.Bytes += o.Bytes
}

// lastClosed is the newest closed session of sb.
func lastClosed(sb *store.Sandbox) uint64 {
	if sb.State == store.StateClosed {
		return sb.Session
	}
	return sb.Session - 1
}

// expiry returns until when a session's refused and discarded content
// is kept under r (zero time: already gone), given how many newer
// sessions of its sandbox the area still holds and sb's newest closed
// session. Only sessions that keep refused content count against
// --keep-sessions: before, every session did, so a refused file promised
// "until" a week was gone after seven sessions that kept nothing.
func expiry(r Retention, rs *recoverySession, newer int, last uint64) (refused, discarded time.Time) {
	if rs.info.Fenced {
		// Not the ledger's to expire (fencedKeep): everything in it is refused.
		return rs.info.Closed.Add(max(fencedKeep, r.KeepRefused)), time.Time{}
	}
	if r.KeepSessions <= 0 || newer >= r.KeepSessions {
		return time.Time{}, time.Time{}
	}
	if r.KeepRefused > 0 {
		refused = rs.info.Closed.Add(r.KeepRefused)
	}
	if r.KeepDiscarded > 0 && rs.n == last && !rs.discardedGone {
		discarded = rs.info.Closed.Add(r.KeepDiscarded)
	}
	return refused, discarded
}

// liveness says whether a session's refused and discarded content are
// still kept (expiry), newer sessions of its sandbox kept.
func liveness(r Retention, rs *recoverySession, newer int, last uint64, now time.Time) (refused, discarded bool) {
	ref, disc := expiry(r, rs, newer, last)
	refused, discarded = now.Before(ref), now.Before(disc)
	if rs.hasInfo && rs.info.Refused == 0 {
		refused = false // nothing refused: the session lives as long as its discarded content
	}
	return refused, discarded
}

// newerKept returns, for each session of one sandbox's area, how many
// newer sessions of it keep refused content (expiry's newer): counted
// newest first. Discarded content (junk in /tmp, kept for the last
// session only), fenced sessions and those a crashed close left do not
// count: they push no refused file out.
func newerKept(r Retention, sessions []*recoverySession, last uint64, now time.Time) map[uint64]int {
	out := map[uint64]int{}
	kept := 0
	for _, rs := range slices.Backward(sortedByNumber(sessions)) {
		out[rs.n] = kept
		if rs.info.Fenced || rs.n > last {
			continue
		}
		if ref, _ := liveness(r, rs, kept, last, now); ref {
			kept++
		}
	}
	return out
}

// applyRetention drops what sandbox's settings no longer keep: sessions
// past the count, content past its time, and discarded content of any
// session but the newest. (With nothing left of a session, its manifest
// goes too.)
func (e *Env) applyRetention(sandbox string) (Dropped, error) {
	var d Dropped
	sb, err := e.getSandbox(sandbox)
	if err != nil {
		return d, err
	}
	r := retentionOf(sb)
	sessions, err := e.recoverySessions(sandbox)
	if err != nil {
		return d, err
	}
	now := e.Now()
	last := lastClosed(sb)
	newer := newerKept(r, sessions, last, now)
	for _, rs := range sessions {
		if rs.n > last && !rs.info.Fenced {
			continue // the session a crashed close left: its close finishes it
		}
		refLive, discLive := liveness(r, rs, newer[rs.n], last, now)
		switch {
		case !refLive && !discLive:
			if rs.info.Refused > 0 && !rs.info.Fenced && now.Before(rs.info.Closed.Add(r.KeepRefused)) {
				e.warnf("dropped the refused content of session %d of %s before its time: the recovery area keeps the refused content of the %s newest sessions with some (spillway config %s --keep-sessions N)", rs.n, sandbox, strconv.Itoa(r.KeepSessions), sandbox)
			}
			if err := e.removeSessionDir(sandbox, rs.n); err != nil {
				return d, err
			}
			d.Sessions++
			d.Bytes += rs.bytes()
		case !discLive && !rs.discardedGone:
			if _, err := e.dropDiscarded(rs, false); err != nil {
				return d, err
			}
			var freed int64
			if err := e.recountAfterDrop(rs, &freed, rs.diskBytes()); err != nil {
				return d, err
			}
			d.Discarded++
			d.Bytes += rs.info.DiscardedBytes
		}
	}
	return d, nil
}

// enforceCap brings the area under the root-wide cap, counting what its
// content takes on disk: first it drops discarded content, largest first
// (content nobody chose to keep, such as junk a sandbox wrote to /tmp to
// push other sandboxes' sessions out); then it removes whole sessions,
// oldest close first, saying which on stderr. It skips the sessions of a
// sandbox another command holds (a later close or gc removes them).
func (e *Env) enforceCap() (Dropped, error) {
	var d Dropped
	limit, _, err := e.keepBytes()
	if err != nil {
		return d, err
	}
	sessions, err := e.recoverySessions()
	if err != nil {
		return d, err
	}
	var total int64
	for _, rs := range sessions {
		total += rs.diskBytes()
	}
	if total <= limit {
		return d, nil
	}
	byDiscarded := slices.Clone(sessions)
	slices.SortStableFunc(byDiscarded, func(a, b *recoverySession) int { return cmp.Compare(b.discardedDisk(), a.discardedDisk()) })
	for _, rs := range byDiscarded {
		n := rs.discardedDisk()
		if total <= limit || n == 0 {
			break
		}
		if !rs.hasInfo {
			continue // a close that did not finish: it finishes the session
		}
		release, ok := e.trySandbox(rs.sandbox)
		if !ok {
			continue
		}
		before := rs.diskBytes()
		cut, err := e.dropDiscarded(rs, true)
		if err == nil {
			// What is left is measured: a drop that moved the refused
			// entries out also took what the tree held beyond them (an
			// overlay's persisted files, what a cut manifest did not
			// list), which the session would go on counting.
			err = e.recountAfterDrop(rs, &n, before)
		}
		release()
		if err != nil {
			return d, err
		}
		what := "the discarded content"
		if cut {
			what = "the discarded content, and what its manifest could not list (the disk was full at its close),"
		}
		e.warnf("recovery area over its cap of %s on disk (spillway config --keep-bytes): dropped %s of session %d of %s (%s)", units.FormatSize(limit), what, rs.n, rs.sandbox, units.FormatSize(n))
		d.Bytes += rs.info.DiscardedBytes
		total -= n
		d.Discarded++
	}
	for _, rs := range sessions {
		if total <= limit {
			break
		}
		if rs.info.Fenced && e.Now().Before(rs.info.Closed.Add(fencedKeep)) {
			continue // this host's only copy of a session it opened (fencedKeep)
		}
		release, ok := e.trySandbox(rs.sandbox)
		if !ok {
			continue
		}
		err := e.removeSessionDir(rs.sandbox, rs.n)
		release()
		if err != nil {
			return d, err
		}
		e.warnf("recovery area over its cap of %s on disk (spillway config --keep-bytes): removed session %d of %s (%s)", units.FormatSize(limit), rs.n, rs.sandbox, units.FormatSize(rs.bytes()))
		total -= rs.diskBytes()
		d.Sessions++
		d.Bytes += rs.bytes()
	}
	return d, nil
}

// ExpireRecovery applies every sandbox's retention and the byte cap (gc).
func (e *Env) ExpireRecovery() (Dropped, error) {
	var d Dropped
	var names []string
	if err := e.store.View(func(tx *store.Tx) error {
		sbs, err := tx.ListSandboxes()
		for _, sb := range sbs {
			names = append(names, sb.Name)
		}
		return err
	}); err != nil {
		return d, err
	}
	for _, n := range names {
		x, err := e.applyRetention(n)
		d.add(x)
		if err != nil {
			return d, err
		}
	}
	x, err := e.enforceCap()
	d.add(x)
	return d, err
}

// manifestCutShort says whether the session's manifest lists less than
// its tree holds (manifestCut): the rest is kept as refused
// (recover_unlisted.go).
// A manifest that cannot be read is an error: nothing can be told apart.
func (e *Env) manifestCutShort(rs *recoverySession) (bool, error) {
	if rs.info.Incomplete {
		return true, nil
	}
	var lines int64
	err := e.readManifest(rs, func(ManifestEntry) error { lines++; return nil })
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil // none at all: what the tree holds is not listed
	case err != nil:
		return false, fmt.Errorf("recovery area of %s, session %d: %w", rs.sandbox, rs.n, err)
	}
	return manifestCut(rs, lines), nil
}

// dropDiscarded removes the discarded content of a session's tree and
// marks the session so that it is not listed again. It costs the smaller
// of the two sides: when fewer changes were refused than discarded, the
// refused entries move into a new tree and the old one goes to trash (a
// rename, deleted in the background); else the discarded entries are
// unlinked. Either way by descriptors, never following a symlink. When
// the manifest was cut short (a close on a full disk), what it does not
// list stays with the refused content, unless forSpace (the byte cap):
// then only the refused entries it lists stay, since the unlisted ones
// are as likely what filled the disk.
// It says whether the manifest was cut short.
func (e *Env) dropDiscarded(rs *recoverySession, forSpace bool) (cut bool, err error) {
	tree := filepath.Join(rs.dir, treeDir)
	manifest := filepath.Join(rs.dir, "manifest.jsonl")
	if _, err := os.Lstat(tree); errors.Is(err, os.ErrNotExist) {
		os.Rename(filepath.Join(rs.dir, "tree.new"), tree) // a try that stopped between its renames
	}
	if _, err := os.Lstat(tree); err != nil {
		return cut, writePrivate(rs.dir, discardedGone, nil)
	}
	if rs.hasInfo {
		if cut, err = e.manifestCutShort(rs); err != nil {
			return false, err
		}
	}
	if rs.hasInfo && (rs.info.Refused < rs.info.Entries-rs.info.Refused && !cut || cut && forSpace) {
		// An earlier try that stopped may have left tree.new with some
		// refused entries already moved into it (moveEntries resumes:
		// never remove it), and tree.old, the tree it replaced (its
		// refused entries moved out: to trash).
		fresh := filepath.Join(rs.dir, "tree.new")
		if err := os.Mkdir(fresh, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return cut, err
		}
		if err := moveEntries(tree, fresh, manifest, change.VerdictRefuse); err != nil {
			e.warnf("recovery area of %s session %d: %v", rs.sandbox, rs.n, err)
		}
		old := filepath.Join(rs.dir, "tree.old")
		if _, err := os.Lstat(old); err == nil {
			if err := e.trash(old); err != nil {
				return cut, err
			}
		}
		if err := os.Rename(tree, old); err != nil {
			return cut, err
		}
		if err := os.Rename(fresh, tree); err != nil {
			return cut, err
		}
		if err := writePrivate(rs.dir, discardedGone, nil); err != nil {
			return cut, err
		}
		return cut, e.trash(old)
	}
	fd, err := unix.Open(tree, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return cut, err
	}
	defer unix.Close(fd)
	f, err := os.Open(manifest)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return cut, err
	}
	if f != nil {
		var dirs []string
		err = eachManifestEntry(f, func(x ManifestEntry) error {
			if x.Verdict != change.VerdictDiscard || x.Kind == change.KindDelete || !cleanAbs(x.Path) {
				return nil
			}
			if x.Type == change.TypeDir {
				dirs = append(dirs, x.Path)
				return nil
			}
			removeAt(fd, x.Path, 0)
			return nil
		})
		f.Close()
		if err != nil {
			return cut, err
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			removeAt(fd, dirs[i], unix.AT_REMOVEDIR)
		}
	}
	return cut, writePrivate(rs.dir, discardedGone, nil)
}

// removeAt unlinks p beneath the tree fd without following a link (best
// effort: what is gone or not empty stays).
func removeAt(fd int, p string, flags int) {
	dir, name := path.Split(p)
	pfd, err := openDirs(fd, dir, false)
	if err != nil {
		return
	}
	unix.Unlinkat(pfd, name, flags)
	unix.Close(pfd)
}

// recountAfterDrop measures what the session's tree takes on disk after
// dropDiscarded, records it in info.json (so later counts see it) and
// sets *freed to what the drop freed from before. A session without
// recorded disk bytes keeps the estimate.
func (e *Env) recountAfterDrop(rs *recoverySession, freed *int64, before int64) error {
	rs.discardedGone = true
	if rs.info.DiskBytes == nil || rs.info.DiscardedDiskBytes == nil {
		return nil
	}
	var left int64
	tree := filepath.Join(rs.dir, treeDir)
	if _, err := os.Lstat(tree); err == nil {
		if err := hostile.TreeChanges(context.Background(), tree, "", func(c hostile.Change) error {
			left += c.Disk
			return nil
		}); err != nil {
			return err
		}
	}
	disk := left + *rs.info.DiscardedDiskBytes // diskBytes() is DiskBytes less the discarded, gone
	rs.info.DiskBytes = &disk
	if err := e.writeSessionInfo(rs.sandbox, rs.n, rs.info); err != nil {
		return err
	}
	*freed = max(before-left, 0)
	return nil
}
