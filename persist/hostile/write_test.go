package hostile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeTree is a tree with a directory, links to it (relative and
// absolute) and a link out of the tree, opened by a Writer.
func writeTree(t *testing.T) (root, outside string, w *Writer) {
	t.Helper()
	d := t.TempDir()
	root, outside = filepath.Join(d, "root"), filepath.Join(d, "outside")
	for _, p := range []string{filepath.Join(root, "dir"), outside} {
		must(t, os.MkdirAll(p, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "dir/keep"), []byte("keep"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "file"), []byte("file"), 0o644))
	must(t, os.Symlink("dir", filepath.Join(root, "rel")))
	must(t, os.Symlink("/dir", filepath.Join(root, "abs")))
	must(t, os.Symlink(outside, filepath.Join(root, "out")))
	w, err := NewWriter(root)
	must(t, err)
	t.Cleanup(func() { w.Close() })
	return root, outside, w
}

// bothResolvers runs fn with openat2 and with the per-component fallback.
func bothResolvers(t *testing.T, fn func(t *testing.T)) {
	t.Run("openat2", fn)
	t.Run("fallback", func(t *testing.T) {
		noOpenat2.Store(true)
		defer noOpenat2.Store(false)
		fn(t)
	})
}

// TestWriterNeverFollowsLinks: every operation whose way passes through a
// link fails with ErrSymlink and changes nothing where the link points.
func TestWriterNeverFollowsLinks(t *testing.T) { bothResolvers(t, writerNeverFollowsLinks) }

func writerNeverFollowsLinks(t *testing.T) {
	root, outside, w := writeTree(t)
	now := time.Now()
	for _, via := range []string{"rel", "abs", "out"} {
		p := "/" + via + "/keep"
		for name, err := range map[string]error{
			"WriteFile": w.WriteFile(p, strings.NewReader("pwned"), 0o644, 0, 0, now),
			"Mkdir":     w.Mkdir(p, 0o755, 0, 0),
			"Symlink":   w.Symlink(p, "/x", 0, 0),
			"MkdirAll":  w.MkdirAll("/"+via+"/new/deeper", 0o755),
			"RemoveAll": w.RemoveAll(p),
		} {
			if !errors.Is(err, ErrSymlink) {
				t.Errorf("%s %s: %v, want ErrSymlink", name, p, err)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "dir/keep")); err != nil || string(b) != "keep" {
		t.Fatalf("dir/keep is %q %v", b, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("written outside the tree: %v", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "dir")); len(ents) != 1 {
		t.Fatalf("dir holds %v", ents)
	}
	if err := w.WriteFile("/file/x", strings.NewReader("x"), 0o644, 0, 0, now); !errors.Is(err, ErrNotDir) {
		t.Fatalf("write under a file: %v, want ErrNotDir", err)
	}
	if err := w.RemoveAll("/file/x"); err != nil {
		t.Fatalf("remove under a file: %v", err)
	}
}

// TestWriterReplacesLinksItself: a link at the last component is replaced,
// never written through; a failed copy leaves no file and no temp file.
func TestWriterReplacesLinksItself(t *testing.T) { bothResolvers(t, writerReplacesLinksItself) }

func writerReplacesLinksItself(t *testing.T) {
	root, outside, w := writeTree(t)
	mtime := time.Unix(1_600_000_000, 123456789)
	must(t, w.WriteFile("/out", strings.NewReader("new"), 0o640, 1000, 1000, mtime))
	fi, err := os.Lstat(filepath.Join(root, "out"))
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 || st.Uid != 1000 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("out: %v uid %d mtime %v", fi.Mode(), st.Uid, fi.ModTime())
	}
	must(t, w.Mkdir("/rel", 0o750, 0, 0))
	if fi, err := os.Lstat(filepath.Join(root, "rel")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("rel: %v %v", fi, err)
	}
	must(t, w.Symlink("/dir", "/etc", 0, 0))
	if got, _ := os.Readlink(filepath.Join(root, "dir")); got != "/etc" {
		t.Fatalf("dir is a link to %q", got)
	}
	boom := errors.New("boom")
	err = w.WriteFile("/file", io.MultiReader(strings.NewReader("half"), errReader{boom}), 0o644, 0, 0, mtime)
	if !errors.Is(err, boom) {
		t.Fatalf("failed copy: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "file")); string(b) != "file" {
		t.Fatalf("file after a failed copy: %q", b)
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".spillway-tmp-") {
			t.Fatalf("temp file left: %s", e.Name())
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("written outside the tree: %v", ents)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
