package persist

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
)

// TestCapCountsUnlistedItDropped (found by a review): when the byte cap
// drops the discarded content of a session whose manifest was cut short,
// the refused files the manifest could not list go too (dropDiscarded,
// forSpace), but enforceCap subtracts only the discarded bytes and the
// session keeps counting the refused bytes it no longer holds
// (diskBytes: DiskBytes - DiscardedDiskBytes). The cap then removes an
// older session whose refused content fits under it.
func TestCapCountsUnlistedItDropped(t *testing.T) {
	f := smallDiskFixture(t)
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 1 << 20 }, "/home/user/Documents/**")
	big := strings.Repeat("B", 2<<20)

	// Session 1: a refused file (too-large), listed.
	root := f.open()
	write(t, root, fullDocs+"/old.bin", big, 0o644)
	f.close()

	// Session 2: a refused file (too-large) and some junk, closed on a
	// full disk: the manifest lists none of them.
	root = f.open()
	write(t, root, fullDocs+"/new.bin", big, 0o644)
	for _, p := range []string{"tmp/a", "tmp/b", "tmp/c"} {
		write(t, root, p, "scratch", 0o644)
	}
	sum := f.closeFilled()
	if !sum.ManifestIncomplete {
		t.Fatal("the manifest was written whole: the disk was not full enough")
	}
	if got := f.listed(); got["/"+fullDocs+"/old.bin"] != change.VerdictRefuse || got["/"+fullDocs+"/new.bin"] != change.VerdictRefuse {
		t.Fatalf("before the cap: %v", got)
	}
	sessions, err := f.e.recoverySessions("docs")
	must(t, err)
	var s1 int64
	for _, rs := range sessions {
		cut, _ := f.e.manifestCutShort(rs)
		t.Logf("session %d: disk %d, discarded disk %d, cut %v", rs.n, rs.diskBytes(), rs.discardedDisk(), cut)
		if rs.n == 1 {
			s1 = rs.diskBytes()
		}
	}
	// Room for session 1's refused file, not for session 2's as well.
	limit := s1 + 512<<10
	if _, err := f.e.SetKeepBytes(limit); err != nil {
		t.Fatal(err)
	}
	got := f.listed()
	sessions, err = f.e.recoverySessions("docs")
	must(t, err)
	var counted int64
	for _, rs := range sessions {
		counted += rs.diskBytes()
		t.Logf("after: session %d counts %d on disk", rs.n, rs.diskBytes())
	}
	if got["/"+fullDocs+"/old.bin"] != change.VerdictRefuse {
		t.Errorf("the cap of %d removed session 1 (%d bytes on disk), though dropping session 2's content left only session 1 in the area; the area lists %v, and counts %d bytes", limit, s1, got, counted)
	}
}

// TestCapCountsPersistedItDropped: the same count on overlay without a
// full disk (before 896c692 too): the move that drops the discarded
// content trashes the old tree, the upper directory, with the persisted
// files in it, which the session still counts (info.DiskBytes includes
// persistedDisk on overlay).
func TestCapCountsPersistedItDropped(t *testing.T) {
	f := smallDiskFixture(t)
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 1 << 20 }, "/home/user/Documents/**")
	root := f.open()
	write(t, root, fullDocs+"/old.bin", strings.Repeat("B", 2<<20), 0o644)
	f.close()
	root = f.open()
	write(t, root, fullDocs+"/kept.bin", strings.Repeat("K", 900<<10), 0o644) // persisted
	for _, p := range []string{"tmp/a", "tmp/b", "tmp/c"} {
		write(t, root, p, "scratch", 0o644)
	}
	f.close()
	sessions, err := f.e.recoverySessions("docs")
	must(t, err)
	var s1 int64
	for _, rs := range sessions {
		t.Logf("session %d: disk %d, discarded disk %d", rs.n, rs.diskBytes(), rs.discardedDisk())
		if rs.n == 1 {
			s1 = rs.diskBytes()
		}
	}
	limit := s1 + 512<<10
	if _, err := f.e.SetKeepBytes(limit); err != nil {
		t.Fatal(err)
	}
	if got := f.listed(); got["/"+fullDocs+"/old.bin"] != change.VerdictRefuse {
		t.Errorf("the cap of %d removed session 1 (%d bytes on disk) after dropping session 2's discarded content: %v", limit, s1, got)
	}
}

// TestExportDirModesReview: directories the export makes get their
// recorded mode and owner, whether made as an ancestor first or as their
// own record; a directory the host had keeps its own.
func TestExportDirModesReview(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, fullDocs+"/priv/deep/a.txt", "a", 0o644)
	must(t, os.Chmod(filepath.Join(root, fullDocs, "priv"), 0o750))
	must(t, os.Chown(filepath.Join(root, fullDocs, "priv"), 1234, 1234))
	must(t, os.Chmod(filepath.Join(root, fullDocs, "priv/deep"), 0o711))
	f.close()
	set, err := f.e.Export(f.ctx, "docs", "/home/user/Documents", At{})
	must(t, err)
	for _, r := range set.Entries {
		t.Logf("entry %s %s %o", r.Path, r.Type, r.Mode)
	}
	dest := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dest, "host"), 0o700))
	if _, err := f.e.ExportDir(f.ctx, set, dest); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"priv": 0o750, "priv/deep": 0o711, "host": 0o700} {
		fi, err := os.Stat(filepath.Join(dest, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		t.Logf("%s: %o %d:%d", p, fi.Mode().Perm(), st.Uid, st.Gid)
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
}

// TestCapUnreadableManifestKeepsRefused: a manifest that cannot be read
// stops the cap's drop of that session's discarded content; it took it
// for a cut one, and the move path kept only the refused entries it could
// read and trashed the rest: every refused file (found by a review).
func TestCapUnreadableManifestKeepsRefused(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 1 << 20 }, "/home/user/Documents/**")
	root := f.open()
	write(t, root, fullDocs+"/old.bin", strings.Repeat("B", 2<<20), 0o644) // refused
	write(t, root, "tmp/junk", strings.Repeat("J", 2<<20), 0o644)          // discarded
	f.close()
	sessions, err := f.e.recoverySessions("docs")
	must(t, err)
	rs := sessions[len(sessions)-1]
	man := filepath.Join(rs.dir, "manifest.jsonl")
	b, err := os.ReadFile(man)
	must(t, err)
	t.Logf("manifest:\n%s", b)
	must(t, os.WriteFile(man, append([]byte("{not json\n"), b...), 0o600))
	limit := rs.diskBytes() - rs.discardedDisk() + 512<<10
	_, err = f.e.SetKeepBytes(limit)
	if err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("the cap over a session whose manifest cannot be read: %v, want an error naming it", err)
	}
	_, err = os.Lstat(filepath.Join(rs.dir, treeDir, fullDocs, "old.bin"))
	if err != nil {
		t.Errorf("the cap (room for the refused file) dropped the refused file with the discarded content: %v", err)
	}
}
