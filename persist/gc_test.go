package persist

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

// gc removes unreferenced blobs and leftover temp files, but never a blob a
// record keeps nor a temp directory that holds a mount.
func TestGCKeepsWhatIsNeeded(t *testing.T) {
	e := reviewEnv(t)
	ctx := context.Background()
	kept := rvRecord(t, e, 1, "/a", change.KindAdd, "after", change.StatusRejected, "kept: history")
	orphan, _, err := e.blobs.Put(strings.NewReader("orphan"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "blobs", "tmp", "blob-1"), []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(e.root, "tmp", "layer-busy")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, 0)
	inside := filepath.Join(mnt, "f")
	if err := os.WriteFile(inside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := e.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Blobs, []string{orphan}) || f.BlobBytes != 6 || !slices.Equal(f.TempFiles, []string{"blobs/tmp/blob-1"}) || f.TempBytes != 5 || len(f.Snapshots) != 0 {
		t.Fatalf("freed %+v", f)
	}
	if err := e.blobs.Verify(kept.Digest); err != nil {
		t.Fatalf("gc removed a blob a record keeps: %v", err)
	}
	if _, err := os.Stat(inside); err != nil {
		t.Fatalf("gc removed a file under a mount: %v", err)
	}
	problems, err := e.Check(ctx)
	if err != nil || len(problems) != 1 || !strings.HasPrefix(problems[0], "stray mount ") {
		t.Fatalf("check: %q %v", problems, err)
	}
	if ev := rvLastEvent(t, e); ev.Type != "gc" || ev.Data["blobs"] != "1" || ev.Data["temp_files"] != "1" {
		t.Fatalf("audit entry %+v", ev)
	}
}

// gc removes an empty mount point no open sandbox uses (a session that
// ended elsewhere left it), never a busy one nor one with files in it.
func TestGCRemovesEmptyMountDirs(t *testing.T) {
	f := newFixture(t, "overlayfs")
	root := f.open() // docs, open: its mount point stays
	mnt := filepath.Dir(root)
	gone, full := filepath.Join(mnt, "gone"), filepath.Join(mnt, "full")
	for _, d := range []string{gone, full} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.GC(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("the empty mount point is still there: %v", err)
	}
	for _, p := range []string{full, filepath.Join(root, "bin")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("gc removed %s: %v", p, err)
		}
	}
}
