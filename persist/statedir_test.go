package persist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/statedir"
	"github.com/spillway/spillway/snapshot"
)

// hostDir makes a host directory with one file, that no mount may cover.
func hostDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "host")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "keep"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func assertUncovered(t *testing.T, host string) {
	t.Helper()
	if m, err := snapshot.IsMounted(host); err != nil || m {
		t.Fatalf("host directory %s is mounted over (%v)", host, err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "keep")); err != nil || string(b) != "host\n" {
		t.Fatalf("host directory changed: %q %v", b, err)
	}
}

// TestOpenRefusesPlantedMountPoint: a symlink at mnt/NAME that appears
// after the state directory was checked never carries a sandbox root over
// a host directory; removing it lets the open go on.
func TestOpenRefusesPlantedMountPoint(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	host := hostDir(t)
	mp := f.e.MountPath("docs")
	if err := os.Symlink(host, mp); err != nil {
		t.Fatal(err)
	}
	_, err := f.e.OpenSandbox(f.ctx, "docs")
	var se *statedir.Error
	if !errors.As(err, &se) || se.Path != mp || se.Reason != "is a symlink" {
		t.Fatalf("open through a planted mount point: err = %v", err)
	}
	assertUncovered(t, host)
	if err := os.Remove(mp); err != nil {
		t.Fatal(err)
	}
	if p := f.open(); p != mp {
		t.Fatalf("opened at %s, want %s", p, mp)
	}
	if m, _ := snapshot.IsMounted(mp); !m {
		t.Fatal("sandbox root not mounted after the symlink went")
	}
	// A reopen of an open sandbox whose mount went checks again.
	if err := snapshot.Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(mp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, mp); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.OpenSandbox(f.ctx, "docs"); !errors.As(err, &se) || se.Path != mp {
		t.Fatalf("reopen through a planted mount point: err = %v", err)
	}
	assertUncovered(t, host)
}

// TestOpenEnvRefusesPlantedPaths: every command refuses a state directory
// holding a planted symlink, and one that another user owns, before it
// writes anything.
func TestOpenEnvRefusesPlantedPaths(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	root := f.e.root
	if err := f.e.Close(); err != nil {
		t.Fatal(err)
	}
	f.e = nil
	host := hostDir(t)
	for _, p := range []string{"mnt/docs", "tmp", "trash"} {
		full := filepath.Join(root, p)
		os.RemoveAll(full)
		if err := os.Symlink(host, full); err != nil {
			t.Fatal(err)
		}
		_, err := OpenEnv(context.Background(), Options{Root: root, LockTimeout: time.Second})
		want := "state directory " + root + ": " + full + " is a symlink"
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
		os.Remove(full)
	}
	assertUncovered(t, host)
	if err := os.Chown(root, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := OpenEnv(context.Background(), Options{Root: root, LockTimeout: time.Second})
	if want := "state directory " + root + " is owned by uid 65534, not by you (uid 0)"; err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if err := os.Chown(root, 0, 0); err != nil {
		t.Fatal(err)
	}
	f.openEnv("")
}

// TestBlobsNeverFollowSymlinks: a symlink planted in blobs/sha256 is
// neither read as the blob nor written through.
func TestBlobsNeverFollowSymlinks(t *testing.T) {
	b, err := NewBlobs(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("the blob's bytes\n")
	sum := sha256.Sum256(content)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	host := filepath.Join(t.TempDir(), "host")
	if err := os.WriteFile(host, content, 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Path(digest)
	if err := os.Symlink(host, p); err != nil {
		t.Fatal(err)
	}
	if f, err := b.Open(digest); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Open through a planted symlink: err = %v", err)
	}
	// Put replaces the link by a real file and leaves the host file alone.
	if _, _, err := b.Put(bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("blob after Put: %v %v", fi, err)
	}
	if fi, err := os.Lstat(host); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("host file changed: %v %v", fi, err)
	}
	f, err := b.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
