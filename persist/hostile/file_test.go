package hostile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

// canary makes a host file outside the tree with random bytes.
func canary(t *testing.T) (dir, file string, data []byte) {
	t.Helper()
	dir = t.TempDir()
	data = make([]byte, 64)
	_, _ = rand.Read(data)
	file = filepath.Join(dir, "file")
	must(t, os.WriteFile(file, data, 0o644))
	return dir, file, data
}

// tryRead opens and reads everything it can; it fails the test if the
// canary bytes come back.
func tryRead(t *testing.T, root, path string, want Change, limit int64, secret []byte) error {
	t.Helper()
	f, err := OpenFile(root, path, want, limit)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if len(secret) > 0 && bytes.Contains(b, secret) {
		t.Fatalf("canary bytes returned for %q", path)
	}
	if err != nil {
		return err
	}
	return f.Verify()
}

func TestOpenFileSymlinks(t *testing.T) {
	requireRoot(t)
	cdir, cfile, secret := canary(t)
	o := newOverlay(t, nil)
	depth := strings.Count(o.upper, "/")
	climb := strings.Repeat("../", depth+2) + strings.TrimPrefix(cfile, "/")
	must(t, os.Symlink(cfile, o.m("abs")))
	must(t, os.Symlink("/etc/shadow", o.m("shadow")))
	must(t, os.MkdirAll(o.m("a/b"), 0o755))
	must(t, os.Symlink(climb, o.m("a/b/climb")))
	must(t, os.Symlink("../../inside", o.m("a/b/rel")))
	write(t, o.m("inside"), "inside")
	must(t, os.Symlink(cdir, o.m("dirlink")))
	o.unmount(t)

	for _, p := range []string{"/abs", "/shadow", "/a/b/climb", "/a/b/rel", "/dirlink/file", "/dirlink"} {
		err := tryRead(t, o.upper, p, Change{}, 1<<20, secret)
		if !errors.Is(err, ErrSymlink) {
			t.Errorf("%s: got %v, want ErrSymlink", p, err)
		}
	}
	if l, err := ReadLink(o.upper, "/a/b/climb"); err != nil || l != climb {
		t.Fatalf("ReadLink = %q, %v", l, err)
	}
	if _, err := ReadLink(o.upper, "/dirlink/file"); !errors.Is(err, ErrSymlink) {
		t.Fatalf("ReadLink through a link: %v", err)
	}
	if _, err := ReadLink(o.upper, "/inside"); !errors.Is(err, ErrChanged) {
		t.Fatalf("ReadLink of a file: %v", err)
	}
	_, all := overlayLines(t, o.upper, o.lowers)
	for _, c := range all {
		if c.Path == "/abs" && (c.Type != change.TypeSymlink || c.Link != cfile) {
			t.Fatalf("link change: %+v", c)
		}
	}
}

// The walk saw /dir/file; then /dir became a link to a host directory
// holding a file of that name.
func TestOpenFileParentSwappedForLink(t *testing.T) {
	requireRoot(t)
	cdir, _, secret := canary(t)
	o := newOverlay(t, nil)
	write(t, o.m("dir/file"), "mine")
	o.unmount(t)
	_, all := overlayLines(t, o.upper, o.lowers)
	var want Change
	for _, c := range all {
		if c.Path == "/dir/file" {
			want = c
		}
	}
	if want.Ino == 0 {
		t.Fatalf("walk did not see /dir/file: %v", all)
	}
	must(t, os.Rename(o.upper+"/dir", o.upper+"/dir.old"))
	must(t, os.Symlink(cdir, o.upper+"/dir"))
	if err := tryRead(t, o.upper, "/dir/file", want, 1<<20, secret); !errors.Is(err, ErrSymlink) {
		t.Fatalf("absolute parent link: %v", err)
	}
	must(t, os.Remove(o.upper+"/dir"))
	must(t, os.Symlink("dir.old", o.upper+"/dir"))
	if err := tryRead(t, o.upper, "/dir/file", want, 1<<20, nil); !errors.Is(err, ErrSymlink) {
		t.Fatalf("relative parent link inside the tree: %v", err)
	}
	// A different file at the same path is refused as changed.
	must(t, os.Remove(o.upper+"/dir"))
	write(t, o.upper+"/dir/file", "mine")
	if err := tryRead(t, o.upper, "/dir/file", want, 1<<20, nil); !errors.Is(err, ErrChanged) {
		t.Fatalf("replaced file: %v", err)
	}
	if err := tryRead(t, o.upper, "/dir/nope", Change{}, 1<<20, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestOpenFileFallback(t *testing.T) {
	requireRoot(t)
	cdir, cfile, secret := canary(t)
	root := t.TempDir()
	write(t, root+"/d/f", "ok")
	must(t, os.Symlink(cdir, root+"/ld"))
	must(t, os.Symlink(cfile, root+"/lf"))
	noOpenat2.Store(true)
	defer noOpenat2.Store(false)
	if err := tryRead(t, root, "/d/f", Change{}, 10, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/ld/file", "/lf"} {
		if err := tryRead(t, root, p, Change{}, 1<<20, secret); !errors.Is(err, ErrSymlink) {
			t.Fatalf("%s: %v", p, err)
		}
	}
	write(t, root+"/w/x", "x")
	lines, _ := treeLines(t, root, "")
	if len(lines) != 6 {
		t.Fatalf("walk with fallback: %v", lines)
	}
}

func TestOpenFileSpecial(t *testing.T) {
	requireRoot(t)
	o := newOverlay(t, nil)
	write(t, o.m("a"), "a")
	must(t, os.Link(o.m("a"), o.m("b")))
	must(t, unix.Mkfifo(o.m("fifo"), 0o644))
	must(t, unix.Mknod(o.m("sock"), unix.S_IFSOCK|0o644, 0))
	must(t, unix.Mknod(o.m("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(o.m("blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
	must(t, os.Mkdir(o.m("dir"), 0o755))
	o.unmount(t)

	cases := map[string]error{"/fifo": ErrSpecial, "/sock": ErrSpecial,
		"/null": ErrSpecial, "/blk": ErrSpecial, "/dir": ErrSpecial}
	start := time.Now()
	for p, want := range cases {
		if err := tryRead(t, o.upper, p, Change{}, 1<<20, nil); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", p, err, want)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("special files took %v", d)
	}
	// Both names of a hard-linked file read like any file, with every
	// other check kept: the walk's inode, the size limit.
	var st unix.Stat_t
	must(t, unix.Lstat(o.upper+"/a", &st))
	same := Change{Ino: st.Ino, Dev: st.Dev}
	for _, p := range []string{"/a", "/b"} {
		if err := tryRead(t, o.upper, p, same, 1<<20, nil); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if err := tryRead(t, o.upper, p, Change{Ino: st.Ino + 1, Dev: st.Dev}, 1<<20, nil); !errors.Is(err, ErrChanged) {
			t.Errorf("%s with another inode: %v, want ErrChanged", p, err)
		}
		if err := tryRead(t, o.upper, p, same, 0, nil); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s over the limit: %v, want ErrTooLarge", p, err)
		}
	}
	got, _ := overlayLines(t, o.upper, o.lowers)
	sameLines(t, got, []string{
		`add file "/a"`, `add file "/b"`, `add device "/blk"`, `add dir "/dir"`,
		`add fifo "/fifo"`, `add device "/null"`, `add socket "/sock"`,
	})
}

func TestOpenFileTooLargeSparse(t *testing.T) {
	root := t.TempDir()
	f, err := os.Create(root + "/big")
	must(t, err)
	must(t, f.Truncate(100<<30))
	must(t, f.Close())
	start := time.Now()
	_, err = OpenFile(root, "/big", Change{}, 256<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestFileChangedWhileRead(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/f", "0123456789")
	appendTo := func() {
		a, err := os.OpenFile(root+"/f", os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = a.WriteString("more")
		must(t, err)
		must(t, a.Close())
	}
	// Appended after open, before reading: Read sees the growth.
	f, err := OpenFile(root, "/f", Change{}, 1<<20)
	must(t, err)
	appendTo()
	b, err := io.ReadAll(f)
	if !errors.Is(err, ErrChanged) || len(b) != 10 {
		t.Fatalf("read after append: %d bytes, %v", len(b), err)
	}
	if err := f.Verify(); !errors.Is(err, ErrChanged) {
		t.Fatalf("Verify after append: %v", err)
	}
	f.Close()

	// Rewritten in place (same size) after reading: Verify sees it.
	write(t, root+"/g", "0123456789")
	f, err = OpenFile(root, "/g", Change{}, 1<<20)
	must(t, err)
	b, err = io.ReadAll(f)
	if err != nil || string(b) != "0123456789" {
		t.Fatalf("read: %q %v", b, err)
	}
	time.Sleep(10 * time.Millisecond)
	w, err := os.OpenFile(root+"/g", os.O_WRONLY, 0)
	must(t, err)
	_, err = w.WriteAt([]byte("X"), 0)
	must(t, err)
	must(t, w.Close())
	if err := f.Verify(); !errors.Is(err, ErrChanged) {
		t.Fatalf("Verify after rewrite: %v", err)
	}
	f.Close()

	// Truncated: fewer bytes than the size seen.
	f, err = OpenFile(root, "/f", Change{}, 1<<20)
	must(t, err)
	must(t, os.Truncate(root+"/f", 3))
	io.ReadAll(f)
	if err := f.Verify(); !errors.Is(err, ErrChanged) {
		t.Fatalf("Verify after truncate: %v", err)
	}
	f.Close()

	// At the limit and grown past it: never more than limit+1 bytes.
	write(t, root+"/h", "12345")
	f, err = OpenFile(root, "/h", Change{}, 5)
	must(t, err)
	a, _ := os.OpenFile(root+"/h", os.O_WRONLY|os.O_APPEND, 0)
	a.WriteString(strings.Repeat("x", 1000))
	a.Close()
	b, err = io.ReadAll(f)
	if !errors.Is(err, ErrTooLarge) || len(b) != 5 {
		t.Fatalf("grown past limit: %d bytes, %v", len(b), err)
	}
	f.Close()
	st := f.Stat()
	if st.Size != 5 {
		t.Fatalf("Stat: %+v", st)
	}
}

func TestOpenFileBadPaths(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/f", "f")
	for _, p := range []string{"", "f", "/", "/f/", "//f", "/./f", "/../f", "/a/../f", "/f\x00"} {
		if _, err := OpenFile(root, p, Change{}, 10); err == nil {
			t.Errorf("OpenFile(%q) succeeded", p)
		}
	}
	if _, err := OpenFile(root, "/"+strings.Repeat("a/", 2100)+"f", Change{}, 10); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("long path: %v", err)
	}
}
