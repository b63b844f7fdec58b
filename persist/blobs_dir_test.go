package persist

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// plant writes the files (content) and directories (a trailing "/") of
// paths under dir, each dated 3 days ago: past SharedBlobGrace.
func plant(t *testing.T, dir string, paths ...string) {
	t.Helper()
	old := time.Now().Add(-72 * time.Hour)
	for _, p := range paths {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o700); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(full, []byte("precious\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range paths {
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func mustExist(t *testing.T, dir string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// A directory that holds what spillway did not create is refused as a
// blob store, naming it and what to do, and nothing in it is touched (the
// review's reproduction: BLOBDIR/tmp holding a user's project and a log).
func TestBlobsRefuseForeignDirectory(t *testing.T) {
	for name, paths := range map[string][]string{
		"a project in tmp":     {"tmp/important-project/notes.txt", "tmp/old.log"},
		"a file beside":        {"sha256/", "tmp/", "notes.txt"},
		"a foreign blob name":  {"sha256/README", "tmp/"},
		"a directory in tmp":   {"sha256/", "tmp/blob-12/"},
		"a marker not a file":  {blobMarker + "/"},
		"a home directory":     {".bashrc", "Documents/letter.txt"},
		"only foreign entries": {"data/"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "srv")
			plant(t, dir, paths...)
			_, err := NewBlobs(dir)
			if err == nil || !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), dir+" is not a spillway blob store") ||
				!strings.Contains(err.Error(), "new or empty directory") {
				t.Fatalf("NewBlobs of a directory holding %q: %v", paths, err)
			}
			mustExist(t, dir, paths...)
			if _, err := os.Lstat(filepath.Join(dir, blobMarker)); err == nil && name != "a marker not a file" {
				t.Fatal("the refused directory was marked")
			}
		})
	}
	// Through OpenEnv (--blobs), the error names the project.
	dir := filepath.Join(t.TempDir(), "srv")
	plant(t, dir, "tmp/important-project/notes.txt")
	_, err := OpenEnv(context.Background(), Options{Root: filepath.Join(t.TempDir(), "state"), LockTimeout: 5 * time.Second,
		Blobs: "dir://" + dir, LedgerOnly: true})
	if err == nil || !strings.Contains(err.Error(), "tmp/important-project") {
		t.Fatalf("OpenEnv with a foreign --blobs directory: %v", err)
	}
}

// A new directory, an empty one (a filesystem's lost+found aside) and a
// store an earlier version made (no marker) become blob stores with the
// marker; the earlier store's blobs stay readable.
func TestBlobsAdoptEmptyAndEarlierStore(t *testing.T) {
	content := "a blob of an earlier version"
	for name, paths := range map[string][]string{
		"new":             nil,
		"empty":           {},
		"lost+found":      {"lost+found/"},
		"earlier version": {"sha256/", "tmp/blob-2718281828", "tmp/fleet-init-31415"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "blobs")
			if paths != nil {
				plant(t, dir, append([]string{"./"}, paths...)...)
			}
			var digest string
			if name == "earlier version" {
				b := &Blobs{dir: dir} // as an earlier NewBlobs left it
				var err error
				if digest, _, err = b.Put(strings.NewReader(content)); err != nil {
					t.Fatal(err)
				}
			}
			b, err := NewBlobs(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !b.marked() {
				t.Fatal("no marker written")
			}
			mustExist(t, dir, "sha256", "tmp")
			if digest != "" {
				if err := b.Verify(digest); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := NewBlobs(dir); err != nil { // opened again: the marker is enough
				t.Fatal(err)
			}
		})
	}
}

// The state directory's own blobs/ gets the marker, and a root an earlier
// version made (blobs/ without it) opens as before.
func TestBlobsOfAnEarlierRootOpen(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	open := func() *Env {
		e, err := OpenEnv(context.Background(), Options{Root: root, LockTimeout: 5 * time.Second, LedgerOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := open()
	d, _, err := e.blobs.Put(strings.NewReader("kept"))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	mustExist(t, filepath.Join(root, "blobs"), blobMarker)
	if err := os.Remove(filepath.Join(root, "blobs", blobMarker)); err != nil {
		t.Fatal(err)
	}
	plant(t, filepath.Join(root, "blobs"), "tmp/blob-1")
	e = open()
	defer e.Close()
	if !e.blobs.marked() {
		t.Fatal("an earlier root's blobs/ was not marked")
	}
	if err := e.blobs.Verify(d); err != nil {
		t.Fatal(err)
	}
}

// --blobs may not name a system directory (dir:/// would make /tmp the
// store's tmp/), a directory inside the state directory other than its
// own blobs/, nor one holding it.
func TestBlobsURLRefusesSharedDirectories(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "state")
	for _, url := range []string{"dir:///", "dir:///tmp", "dir:///tmp/", "dir:///var/tmp", "dir:///home", "dir:///usr/../",
		"dir://" + root, "dir://" + root + "/tmp", "dir://" + root + "/tmp/x", "dir://" + base, "dir://relative", "/srv/blobs"} {
		if p, err := blobsDir(root, url); err == nil || !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %q %v", url, p, err)
		}
	}
	for url, want := range map[string]string{
		"":                               root + "/blobs",
		"dir://" + root + "/blobs":       root + "/blobs",
		"dir:///srv/spillway-blobs/":     "/srv/spillway-blobs",
		"dir://" + base + "/state-blobs": base + "/state-blobs",
	} {
		if p, err := blobsDir(root, url); err != nil || p != want {
			t.Errorf("%s: %q %v, want %q", url, p, err, want)
		}
	}
}

// gc removes from the blob directory's tmp/ only old regular files named
// as spillway names its temporary files, and from sha256/ only blobs:
// never a directory, never a foreign name, shared directory or not.
func TestGCRemovesOnlyItsOwnTempFiles(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "--blobs", false: "the root's blobs"}[shared], func(t *testing.T) {
			o := Options{Root: filepath.Join(t.TempDir(), "state"), LockTimeout: 5 * time.Second}
			dir := filepath.Join(o.Root, "blobs")
			if shared {
				dir = filepath.Join(t.TempDir(), "srv")
				o.Blobs = "dir://" + dir
			}
			e, err := OpenEnv(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			foreign := []string{"tmp/important-project/notes.txt", "tmp/old.log", "tmp/blob-7/", "tmp/blob-x", "tmp/blob-",
				"sha256/notes", "sha256/" + strings.Repeat("A", 64), "notes.txt",
				"tmp/gc-notes", "tmp/gc-" + strings.Repeat("a", 64) + ".1/"} // not blobs gc moved aside
			plant(t, dir, append([]string{"tmp/blob-12345", "tmp/fleet-init-678"}, foreign...)...)
			f, err := e.GC(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, p := range []string{"tmp/blob-12345", "tmp/fleet-init-678"} {
				if shared {
					want = append(want, filepath.Join(dir, p))
				} else {
					want = append(want, filepath.Join("blobs", p))
				}
			}
			if !slices.Equal(f.TempFiles, want) || len(f.Blobs) != 0 {
				t.Fatalf("freed %+v, want temp files %q", f, want)
			}
			mustExist(t, dir, foreign...)
			mustExist(t, dir, blobMarker)

			// Without the marker (removed since the open), gc removes
			// nothing there.
			plant(t, dir, "tmp/blob-1")
			if err := os.Remove(filepath.Join(dir, blobMarker)); err != nil {
				t.Fatal(err)
			}
			if _, err := e.GC(context.Background()); err == nil || !strings.Contains(err.Error(), "no "+blobMarker+" file") {
				t.Fatalf("gc without the marker: %v", err)
			}
			mustExist(t, dir, "tmp/blob-1")
		})
	}
}
