package persist

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Entries unlinked, renamed or swapped for a symlink in the upperdir
// between the walk and the read, and a directory that vanishes under the
// walk, are refused changed-during-close; the close completes and the
// other documents persist.
func TestCloseEntriesChangedDuringClose(t *testing.T) {
	for _, kind := range []string{snapshot.KindOverlay, snapshot.KindNative} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, kind)
			f.except(nil, "/home/user/Documents/**")
			root := f.open()
			docs := "home/user/Documents"
			for _, n := range []string{"a.txt", "gone.txt", "moved.txt", "swapped.txt", "z.txt", "sub/x.txt"} {
				write(t, root, filepath.Join(docs, n), "doc "+n, 0o644)
			}
			testHookBeforeRead = func(upper string, c hostile.Change) {
				d := filepath.Join(upper, docs)
				switch c.Path {
				case "/home/user/Documents/a.txt":
					// The walk has listed Documents: sub vanishes under it.
					must(t, os.Rename(filepath.Join(d, "sub"), filepath.Join(upper, "sub-moved")))
				case "/home/user/Documents/gone.txt":
					must(t, os.Remove(filepath.Join(d, "gone.txt")))
				case "/home/user/Documents/moved.txt":
					must(t, os.Rename(filepath.Join(d, "moved.txt"), filepath.Join(upper, "moved-away")))
				case "/home/user/Documents/swapped.txt":
					must(t, os.Remove(filepath.Join(d, "swapped.txt")))
					must(t, os.Symlink(f.canaryPath, filepath.Join(d, "swapped.txt")))
				}
			}
			defer func() { testHookBeforeRead = nil }()
			sum := f.close()
			for _, p := range []string{"gone.txt", "moved.txt", "swapped.txt", "sub"} {
				if got := refusal(sum, "/home/user/Documents/"+p); got != RefuseChanged {
					t.Errorf("%s: refusal %q, want %s", p, got, RefuseChanged)
				}
			}
			for _, p := range []string{"a.txt", "z.txt"} {
				if !persisted(sum, "/home/user/Documents/"+p) {
					t.Errorf("%s was not persisted: %+v", p, sum.Persisted)
				}
			}
			sb, err := f.e.getSandbox("docs")
			must(t, err)
			if sb.State != store.StateClosed {
				t.Fatalf("sandbox is %s after close", sb.State)
			}
			f.assertNoCanary()
			root = f.open()
			b, err := os.ReadFile(filepath.Join(root, docs, "z.txt"))
			if err != nil || string(b) != "doc z.txt" {
				t.Fatalf("z.txt after close: %q, %v", b, err)
			}
			f.close()
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
