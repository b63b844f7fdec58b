package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestTreeDir: overlay derives the committed tree from its metadata and
// ignores a wrong hint; native takes the directory its Commit recorded in
// the snapshot's label, with no hint or the same one, and refuses any
// other; neither answers for an active snapshot.
func TestTreeDir(t *testing.T) {
	rootfs := busyboxRootfs(t)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			m, state := openManager(t, kind)
			st, err := m.Import(ctx, "img/bb", Source{Dir: rootfs}, nil)
			must(t, err)
			if _, err := m.Prepare(ctx, "active", "img/bb"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.TreeDir(ctx, "active", st.Dir); err == nil {
				t.Fatal("TreeDir of an active snapshot succeeded")
			}
			outside := t.TempDir()
			link := filepath.Join(m.dir, "snapshots", "999")
			must(t, os.Symlink(outside, link))
			for _, hint := range []string{outside, link, st.Dir + "/..", filepath.Join(state, "snapshots")} {
				dir, err := m.TreeDir(ctx, "img/bb", hint)
				if kind == KindOverlay {
					if err != nil || dir != st.Dir {
						t.Fatalf("hint %q: TreeDir = %q, %v; want %q", hint, dir, err, st.Dir)
					}
					continue
				}
				if err == nil {
					t.Fatalf("hint %q accepted as %q", hint, dir)
				}
			}
			for _, hint := range []string{"", st.Dir} {
				dir, err := m.TreeDir(ctx, "img/bb", hint)
				if err != nil || dir != st.Dir {
					t.Fatalf("hint %q: TreeDir = %q, %v; want %q", hint, dir, err, st.Dir)
				}
			}
			dir, err := m.TreeDir(ctx, "img/bb", st.Dir)
			must(t, err)
			if _, err := os.Stat(filepath.Join(dir, "bin", "busybox")); err != nil {
				t.Fatalf("not the image tree: %v", err)
			}
		})
	}
}
