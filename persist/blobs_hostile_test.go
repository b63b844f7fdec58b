package persist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A symlink planted at the blob directory's sha256/ or tmp/ (by a local
// user who could write there before spillway ran) is refused, naming it,
// and nothing is written through it.
func TestBlobsRefuseSymlinkedSubdirectories(t *testing.T) {
	for _, sub := range []string{"sha256", "tmp"} {
		t.Run(sub, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "blobs")
			if _, err := NewBlobs(dir); err != nil {
				t.Fatal(err)
			}
			elsewhere := t.TempDir()
			must(t, os.Remove(filepath.Join(dir, sub)))
			must(t, os.Symlink(elsewhere, filepath.Join(dir, sub)))
			b, err := NewBlobs(dir)
			if err == nil {
				_, _, err = b.Put(strings.NewReader("content"))
			}
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, sub)+" is a symlink") {
				t.Fatalf("blob directory with %s a symlink: %v", sub, err)
			}
			if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
				t.Fatalf("written through the symlink: %v", ents)
			}
		})
	}
}

// A blob directory (or its sha256/ or tmp/) that every user may write
// into is refused: anyone could plant or swap blobs there.
func TestBlobsRefuseWorldWritable(t *testing.T) {
	for _, sub := range []string{"", "sha256", "tmp"} {
		t.Run("dir/"+sub, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "blobs")
			if _, err := NewBlobs(dir); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, sub)
			must(t, os.Chmod(p, 0o777))
			_, err := NewBlobs(dir)
			if err == nil || !(strings.Contains(err.Error(), p+" is writable by every user") || strings.Contains(err.Error(), strings.TrimSuffix(p, "/")+" is writable by group and others")) {
				t.Fatalf("world-writable %s: %v", p, err)
			}
			must(t, os.Chmod(p, 0o700))
			if _, err := NewBlobs(dir); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A directory planted at a blob's name: Put says what is in the way.
func TestBlobsPutOverPlantedDirectory(t *testing.T) {
	b, err := NewBlobs(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"small", strings.Repeat("large", 20000)} {
		d := hashOfString(content)
		p, _ := b.Path(d)
		must(t, os.MkdirAll(filepath.Join(p, "x"), 0o700))
		_, _, err := b.Put(strings.NewReader(content))
		if err == nil || !strings.Contains(err.Error(), p+" is not a regular file") {
			t.Fatalf("put over a directory: %v", err)
		}
	}
}

// gc never follows a symlink swapped in for sha256/ or tmp/ after the
// blob directory was opened: a file elsewhere named as spillway names
// blobs or its temporary files stays.
func TestGCNeverFollowsBlobDirSymlinks(t *testing.T) {
	for _, sub := range []string{"sha256", "tmp"} {
		t.Run(sub, func(t *testing.T) {
			o := Options{Root: filepath.Join(t.TempDir(), "state"), LockTimeout: 5 * time.Second}
			dir := filepath.Join(t.TempDir(), "srv")
			o.Blobs = "dir://" + dir
			e, err := OpenEnv(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			elsewhere := t.TempDir()
			name := map[string]string{"sha256": strings.Repeat("a", 64), "tmp": "blob-12345"}[sub]
			plant(t, elsewhere, name)
			must(t, os.Remove(filepath.Join(dir, sub)))
			must(t, os.Symlink(elsewhere, filepath.Join(dir, sub)))
			_, err = e.GC(context.Background())
			mustExist(t, elsewhere, name)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, sub)+" is a symlink") {
				t.Fatalf("gc: %v", err)
			}
		})
	}
}

func hashOfString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}
