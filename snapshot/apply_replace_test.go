package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestApplyReplacesDirectory: a later entry that is not a directory
// replaces a directory of the same name (applier.clear: "anything else
// there is removed"). Before, clear closed the descriptor it had been
// given (forgetDir closes the cached parent, which was the caller's dfd)
// and then removed through it: every such archive failed with "bad file
// descriptor" (found by an attack on 30 November 2026).
func TestApplyReplacesDirectory(t *testing.T) {
	for _, tc := range []struct {
		name string
		last entry
		want os.FileMode
	}{
		{"file", entry{name: "a", body: "x"}, 0},
		{"symlink", entry{name: "a", typ: tar.TypeSymlink, link: "/etc"}, os.ModeSymlink},
		{"fifo", entry{name: "a", typ: tar.TypeFifo}, os.ModeNamedPipe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			data := mkTar(t,
				entry{name: "a/", typ: tar.TypeDir},
				entry{name: "a/b", body: "y"},
				tc.last,
			)
			if err := applyTar(context.Background(), root, bytes.NewReader(data), Limits{MaxBytes: 1 << 20, MaxFiles: 100, MaxLogical: 1 << 20}, nil, true); err != nil {
				t.Fatalf("a directory then a %s of the same name: %v", tc.name, err)
			}
			fi, err := os.Lstat(filepath.Join(root, "a"))
			if err != nil || fi.Mode().Type() != tc.want {
				t.Fatalf("a: %v %v, want a %s", fi, err, tc.name)
			}
		})
	}
}

// TestApplyReplacedDirectoryIsNotCached: after a directory was replaced,
// entries beneath a new directory of that name land in the new one, not
// in the removed one the applier may have had open.
func TestApplyReplacedDirectoryIsNotCached(t *testing.T) {
	root := t.TempDir()
	data := mkTar(t,
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/a/", typ: tar.TypeDir},
		entry{name: "d/a/b", body: "y"},
		entry{name: "d/a", body: "now a file"},
		entry{name: "d/a", typ: tar.TypeDir},
		entry{name: "d/a/c", body: "z"},
	)
	if err := applyTar(context.Background(), root, bytes.NewReader(data), Limits{MaxBytes: 1 << 20, MaxFiles: 100, MaxLogical: 1 << 20}, nil, true); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "d/a/c")); err != nil || string(b) != "z" {
		t.Fatalf("d/a/c: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "d/a/b")); !os.IsNotExist(err) {
		t.Fatalf("d/a/b of the replaced directory: %v", err)
	}
}
