package persist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/sparse"
	"github.com/spillway/spillway/persist/hostile"
)

// keepLostCommit lists in session n's recovery manifest what its close
// persisted and the ledger lost, reason ledger-lost, and keeps the session
// as a fenced one is (fencedKeep from now), whatever the sandbox's
// retention. The close's persisted list (noteCommitted) names the files
// and their blobs: each is copied from the blob store into the session's
// tree, its digest checked, and added; the session's directory is made
// again if retention removed it. Without a list (gone with its note after
// commitNoteKeep), on overlay, when the close refused or discarded
// something and retention left its tree, that tree is its whole upper
// directory: each regular file of it the manifest does not list yet is
// added (symlinks, which restore refuses, deletions and directories are
// not content it can bring back).
//
// Entries already listed are skipped, so it can run again; it returns
// how many entries of the session are kept as ledger-lost, from this run
// or an earlier one.
func (e *Env) keepLostCommit(ctx context.Context, name string, n uint64) (int64, error) {
	list, err := readPersistedList(e.persistedListPath(name, n))
	if err != nil {
		return 0, err
	}
	rs := e.loadSession(name, n)
	if !rs.hasInfo {
		if list == nil {
			return 0, nil
		}
		// Retention removed the session (or its close wrote no info):
		// the list is enough to keep what the commit persisted.
		if err := os.MkdirAll(rs.dir, 0o700); err != nil {
			return 0, err
		}
		rs.info = sessionInfo{Snapshotter: e.snap.Kind()}
	}
	tree := filepath.Join(rs.dir, treeDir)
	listed := map[string]bool{}
	// The manifest's counts, recounted on every run: an earlier run may
	// have stopped between its append and info.json.
	var entries, refused, kept int64
	manifestPath := filepath.Join(rs.dir, "manifest.jsonl")
	if err := mendManifest(manifestPath); err != nil {
		return 0, err
	}
	if f, err := os.Open(manifestPath); err == nil {
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
	var added, copied int64 // entries added; bytes copied into the tree
	add := func(path string, size int64) {
		x := ManifestEntry{Path: path, PathBytes: exactBytes(path), Kind: change.KindAdd, Type: change.TypeFile, Size: size, Verdict: change.VerdictRefuse, Reason: LedgerLostReason}
		lines = append(x.appendJSON(lines), '\n')
		listed[path] = true
		added++
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
			fresh, err := e.copyLostFile(tree, lf)
			if err != nil {
				e.warnf("recovery area of %s session %d: %s: %v", name, n, escape.Name(lf.Path), err)
				continue
			}
			if fresh {
				copied += lf.Size
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
		if err := appendPrivate(manifestPath, lines); err != nil {
			return 0, err
		}
	}
	if added == 0 && rs.info.Fenced && rs.info.Entries == entries {
		return kept, nil // kept before: its time runs from then
	}
	info := rs.info
	info.Entries, info.Refused = entries+added, refused+added
	info.addBytes(copied, copied) // what the tree held already is counted; on disk, at most that
	// Kept as a fenced session is, for fencedKeep from now (not from the
	// lost close, which may be older than that).
	info.Fenced, info.Closed = true, e.Now()
	return kept + added, e.writeSessionInfo(name, n, info)
}

// readPersistedList reads a persisted list; nil when there is none.
func readPersistedList(p string) ([]lostFile, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
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
// caller syncs the tree. fresh says a copy was made.
func (e *Env) copyLostFile(tree string, lf lostFile) (fresh bool, err error) {
	rel := strings.TrimPrefix(lf.Path, "/")
	if lf.Path == "" || lf.Path[0] != '/' || rel == "" || filepath.Clean(lf.Path) != lf.Path {
		return false, fmt.Errorf("not a clean absolute path")
	}
	dir, err := unix.Open(tree, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	parts := strings.Split(rel, "/")
	for _, c := range parts[:len(parts)-1] {
		if err := unix.Mkdirat(dir, c, 0o700); err != nil && err != unix.EEXIST {
			unix.Close(dir)
			return false, err
		}
		next, err := unix.Openat(dir, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dir)
		if err != nil {
			return false, fmt.Errorf("%s: %w", c, err)
		}
		dir = next
	}
	defer unix.Close(dir)
	last := parts[len(parts)-1]
	fd, err := unix.Openat(dir, last, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err == unix.EEXIST {
		return false, sameAsLost(tree, lf)
	}
	if err != nil {
		return false, err
	}
	src, err := e.blobs.Open(lf.Digest)
	if err != nil {
		unix.Close(fd)
		unix.Unlinkat(dir, last, 0)
		return false, err
	}
	defer src.Close()
	dst := os.NewFile(uintptr(fd), lf.Path)
	h := sha256.New()
	// At most one byte more than recorded: a blob swapped for a larger
	// file is found out without copying it all.
	sw := sparse.NewWriter(dst) // a blob's holes stay holes
	size, err := io.Copy(io.MultiWriter(sw, h), io.LimitReader(src, lf.Size+1))
	if err == nil {
		err = sw.Finish()
	}
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
		return false, err
	}
	return true, nil
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
