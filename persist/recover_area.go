package persist

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/snapshot"
)

// The recovery area of a sandbox is <root>/recovery/<sandbox>/<session>/,
// each directory 0700, holding:
//
//	manifest.jsonl   every change close refused or discarded (ManifestEntry)
//	info.json        sessionInfo: when the session closed, what its tree holds
//	tree/            the content: on overlay the session's upper directory,
//	                 renamed (it also holds what was persisted, and the
//	                 whiteouts of deletions); on native only the entries the
//	                 manifest lists, renamed out of the session's root
//	moved            on native, written once every entry was moved
//	discarded-gone   written once the discarded content was dropped
//
// Nothing in it is ever mounted, executed or laid over an image; it is read
// only through the hostile-tree reader, entry by entry from the manifest.
const (
	infoFile      = "info.json"
	treeDir       = "tree"
	movedFile     = "moved"
	discardedGone = "discarded-gone"
)

// sessionInfo is a session's info.json.
type sessionInfo struct {
	Closed      time.Time `json:"closed"`
	Snapshotter string    `json:"snapshotter"`
	Entries     int64     `json:"entries"` // manifest lines
	Refused     int64     `json:"refused"` // of which refused
	// Incomplete says the manifest lists fewer entries than the tree
	// holds: the disk was full as the close wrote it (recover_unlisted.go).
	Incomplete     bool  `json:"incomplete,omitempty"`
	Bytes          int64 `json:"bytes"`           // bytes of content the tree holds
	DiscardedBytes int64 `json:"discarded_bytes"` // of which discarded
	// DiskBytes and DiscardedDiskBytes are what that content takes on
	// disk (st_blocks), which the root-wide cap counts: a sandbox's 30 GiB
	// sparse file takes a few blocks and must not push other sandboxes'
	// sessions out. Absent (nil) in sessions closed before they were
	// recorded: the cap counts Bytes for those.
	DiskBytes          *int64 `json:"disk_bytes,omitempty"`
	DiscardedDiskBytes *int64 `json:"discarded_disk_bytes,omitempty"`
	// Fenced says a fence wrote the session: this host opened it and lost
	// the lease before its close committed, so the tree holds its only
	// copy of the session's work. Its retention is this host's own
	// (fencedKeep), not what the shared ledger's rows say.
	Fenced bool `json:"fenced,omitempty"`
	// Incarnation is the sandbox's (its creation time, Unix ns): a
	// sandbox removed on another host and created again under the same
	// name starts its sessions at 1 again (ledger_lost.go).
	Incarnation int64 `json:"incarnation,omitempty"`
}

// fencedKeep is how long the recovery area keeps a fenced session, from
// its fence, whatever the ledger's retention, session counter and byte cap
// say: any host of a shared ledger can write those rows, and a fenced
// session's work exists nowhere else. `recover purge` still removes it.
const fencedKeep = 7 * 24 * time.Hour

// recoverySession is one session directory of the area.
type recoverySession struct {
	sandbox       string
	n             uint64
	dir           string
	info          sessionInfo
	hasInfo       bool
	discardedGone bool
}

// bytes is what the session's tree holds now.
func (rs *recoverySession) bytes() int64 {
	if rs.discardedGone {
		return rs.info.Bytes - rs.info.DiscardedBytes
	}
	return rs.info.Bytes
}

// diskBytes is what the session's content takes on disk, which the
// root-wide cap counts; its content's size in sessions closed before
// that was recorded.
func (rs *recoverySession) diskBytes() int64 {
	if rs.info.DiskBytes == nil || rs.info.DiscardedDiskBytes == nil {
		return rs.bytes()
	}
	if rs.discardedGone {
		return *rs.info.DiskBytes - *rs.info.DiscardedDiskBytes
	}
	return *rs.info.DiskBytes
}

// discardedDisk is what the session's discarded content takes on disk
// (its size when not recorded), 0 once it is gone.
func (rs *recoverySession) discardedDisk() int64 {
	switch {
	case rs.discardedGone:
		return 0
	case rs.info.DiscardedDiskBytes != nil:
		return *rs.info.DiscardedDiskBytes
	}
	return rs.info.DiscardedBytes
}

// addBytes counts n more bytes of content in the session's tree, taking
// disk bytes on disk.
func (info *sessionInfo) addBytes(n, disk int64) {
	info.Bytes += n
	if info.DiskBytes != nil {
		v := *info.DiskBytes + disk // a new pointer: info may be a copy
		info.DiskBytes = &v
	}
}

func (e *Env) recoveryDir() string { return filepath.Join(e.root, "recovery") }

// sessionDir is the recovery directory of one session.
func (e *Env) sessionDir(sandbox string, n uint64) string {
	return filepath.Join(e.recoveryDir(), sandbox, strconv.FormatUint(n, 10))
}

// recoverySessions lists the session directories of every sandbox (or of
// the sandboxes named), oldest close first. statedir.Check has checked
// that each is a private directory of ours.
func (e *Env) recoverySessions(sandboxes ...string) ([]*recoverySession, error) {
	if len(sandboxes) == 0 {
		ents, err := os.ReadDir(e.recoveryDir())
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, d := range ents {
			if d.IsDir() {
				sandboxes = append(sandboxes, d.Name())
			}
		}
	}
	var out []*recoverySession
	for _, sb := range sandboxes {
		ents, err := os.ReadDir(filepath.Join(e.recoveryDir(), sb))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, d := range ents {
			n, err := strconv.ParseUint(d.Name(), 10, 64)
			if err != nil || !d.IsDir() {
				continue
			}
			out = append(out, e.loadSession(sb, n))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].info.Closed.Equal(out[j].info.Closed) {
			return out[i].info.Closed.Before(out[j].info.Closed)
		}
		if out[i].sandbox != out[j].sandbox {
			return out[i].sandbox < out[j].sandbox
		}
		return out[i].n < out[j].n
	})
	return out, nil
}

// loadSession reads a session directory's info. A directory without one
// (a manifest of an older version) takes its manifest's time.
func (e *Env) loadSession(sandbox string, n uint64) *recoverySession {
	rs := &recoverySession{sandbox: sandbox, n: n, dir: e.sessionDir(sandbox, n)}
	if b, err := readPrivate(filepath.Join(rs.dir, infoFile)); err == nil && json.Unmarshal(b, &rs.info) == nil {
		rs.hasInfo = true
	} else if fi, err := os.Lstat(filepath.Join(rs.dir, "manifest.jsonl")); err == nil {
		rs.info.Closed = fi.ModTime().UTC()
	}
	_, err := os.Lstat(filepath.Join(rs.dir, discardedGone))
	rs.discardedGone = err == nil
	return rs
}

// readPrivate reads a small file of the area, never through a symlink.
func readPrivate(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > 1<<20 {
		return nil, fmt.Errorf("%s is not a small regular file", p)
	}
	b := make([]byte, st.Size)
	_, err = f.ReadAt(b, 0)
	return b, err
}

// writePrivate writes a small file of the area (0600) whole, by a rename
// (never through a symlink), flushed.
func writePrivate(dir, name string, data []byte) error {
	f, err := atomicfile.Create(dir, "."+name+".tmp-")
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit(filepath.Join(dir, name), atomicfile.Replace)
}

// writeSessionInfo writes info.json of a session whose manifest exists.
func (e *Env) writeSessionInfo(sandbox string, n uint64, info sessionInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return writePrivate(e.sessionDir(sandbox, n), infoFile, b)
}

// removeSessionDir forgets a session: its directory is renamed into trash
// (a rename: no wait for its files) and a detached rm deletes it, as for
// a discarded root. The sandbox's directory goes when it is empty.
func (e *Env) removeSessionDir(sandbox string, n uint64) error {
	dir := e.sessionDir(sandbox, n)
	if err := os.MkdirAll(e.TrashDir(), 0o700); err != nil {
		return err
	}
	var b [6]byte
	rand.Read(b[:])
	dst := filepath.Join(e.TrashDir(), fmt.Sprintf("recovery-%s-%d-%s", sandbox, n, hex.EncodeToString(b[:])))
	if err := os.Rename(dir, dst); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove recovery area of %s session %d: %w", sandbox, n, err)
	}
	syncDir(filepath.Dir(dir))
	failpoint.Hit("retention.session-removed")
	os.Remove(filepath.Join(e.recoveryDir(), sandbox)) // only when empty
	return e.trash(dst)
}

// trash has a detached rm delete dst, a directory of trash or one about to
// be renamed there (it is moved into trash first).
func (e *Env) trash(dst string) error {
	// rm -rf --one-file-system crosses a bind mount of the same filesystem.
	if ms, err := snapshot.MountsUnder(dst); err != nil {
		return err
	} else if len(ms) > 0 {
		return &snapshot.MountedError{What: dst, Mounts: ms, Unchanged: true}
	}
	if filepath.Dir(dst) != e.TrashDir() {
		var b [6]byte
		rand.Read(b[:])
		to := filepath.Join(e.TrashDir(), "recovery-"+hex.EncodeToString(b[:]))
		if err := os.Rename(dst, to); err != nil {
			return err
		}
		dst = to
	}
	rm := exec.Command("rm", "-rf", "--one-file-system", "--", dst)
	rm.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := rm.Start(); err != nil {
		return os.RemoveAll(dst)
	}
	return rm.Process.Release()
}

// syncDir syncs a directory of the state directory (best effort).
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
