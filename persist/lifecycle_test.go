package persist

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

func withoutRoot(l []string) []string {
	return slices.DeleteFunc(slices.Clone(l), func(s string) bool { return len(s) > 1 && s[0] == '.' && s[1] == ' ' })
}

// TestRollbackIsByteForByte: for both snapshotters, changes made through the
// mounted root are gone after close, the next root equals the image, and the
// image snapshot never changed.
func TestRollbackIsByteForByte(t *testing.T) {
	for _, kind := range []string{snapshot.KindOverlay, snapshot.KindNative} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, kind)
			image := withoutRoot(treeListing(t, busyboxRootfs(t)))
			root := f.open()
			if got := withoutRoot(treeListing(t, root)); !slices.Equal(got, image) {
				t.Fatalf("fresh root differs from the image: %s", diffListings(image, got))
			}
			write(t, root, "tmp/new.txt", "new", 0o644)
			write(t, root, "etc/hosts", "modified", 0o644)
			if err := os.Remove(filepath.Join(root, "home/user/Documents/readme.txt")); err != nil {
				t.Fatal(err)
			}
			write(t, root, "srv/a/b/c/deep.txt", "deep", 0o600)
			if err := os.RemoveAll(filepath.Join(root, "srv/a/b")); err != nil {
				t.Fatal(err)
			}
			write(t, root, "var/cache/x/y.txt", "kept in a new tree", 0o644)
			if err := os.RemoveAll(filepath.Join(root, "usr/sbin")); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(root, "etc/passwd"), 0o600); err != nil {
				t.Fatal(err)
			}
			sum := f.close()
			if sum.Discarded.Count == 0 || len(sum.Persisted) != 0 {
				t.Fatalf("close summary: %+v", sum)
			}
			if ms := mustMounts(t, f.e.root); len(ms) != 0 {
				t.Fatalf("still mounted after close: %v", ms)
			}
			f.reopenEnv()
			root = f.open()
			if got := withoutRoot(treeListing(t, root)); !slices.Equal(got, image) {
				t.Fatalf("root after close differs from the image: %s", diffListings(image, got))
			}
			var img *store.Image
			f.e.store.View(func(tx *store.Tx) (err error) { img, err = tx.GetImage("base"); return })
			if img.Dir == "" {
				t.Fatal("image has no directory recorded")
			}
			if got := withoutRoot(treeListing(t, img.Dir)); !slices.Equal(got, image) {
				t.Fatalf("image snapshot changed: %s", diffListings(image, got))
			}
			f.close()
		})
	}
}

// TestCloseIsIdempotentAndResumable: a close interrupted after it marked
// the session closing finishes when re-run; closing again says so.
func TestCloseIsIdempotentAndResumable(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/Documents/report.txt", "v1", 0o644)
	sb, err := f.e.getSandbox("docs")
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash right after step 2 (closing, unmounted).
	if err := f.e.markClosing(sb); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Unmount(sb.Path); err != nil {
		t.Fatal(err)
	}
	f.reopenEnv()
	sum := f.close()
	if !persisted(sum, "/home/user/Documents/report.txt") {
		t.Fatalf("resumed close did not persist the document: %+v", sum)
	}
	again := f.close()
	if !again.AlreadyClosed || again.Generation != sum.Generation {
		t.Fatalf("second close: %+v", again)
	}
	root = f.open()
	if b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/report.txt")); err != nil || string(b) != "v1" {
		t.Fatalf("document after resumed close: %q %v", b, err)
	}
}
