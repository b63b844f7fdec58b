package hostile

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/continuity/fs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
)

func TestOverlayChangesBasic(t *testing.T) {
	o := newOverlay(t, func(l []string) {
		write(t, l[0]+"/a.txt", "a")
		write(t, l[0]+"/keep.txt", "keep")
		write(t, l[0]+"/dir/x", "x")
		write(t, l[0]+"/dir/sub/y", "y")
		write(t, l[0]+"/dir/sub/untouched", "u")
		write(t, l[0]+"/tree/1", "1")
		write(t, l[0]+"/tree/sub/3", "3")
		write(t, l[0]+"/re/old1", "o1")
		write(t, l[0]+"/re/old2", "o2")
		write(t, l[0]+"/re/sub/z", "z")
	})
	write(t, o.m("a.txt"), "changed")
	write(t, o.m("new.txt"), "new")
	write(t, o.m("newdir/n1"), "n1")
	write(t, o.m("newdir/deeper/n2"), "n2")
	must(t, os.Remove(o.m("dir/x")))
	must(t, os.Chmod(o.m("dir/sub/y"), 0o600))
	must(t, os.RemoveAll(o.m("tree")))
	must(t, os.RemoveAll(o.m("re")))
	write(t, o.m("re/old1"), "again")
	write(t, o.m("re/fresh"), "fresh")
	o.unmount(t)

	got, all := overlayLines(t, o.upper, o.lowers)
	sameLines(t, got, []string{
		`modify file "/a.txt"`,
		`modify file "/dir/sub/y"`,
		`delete file "/dir/x"`,
		`add file "/new.txt"`,
		`add dir "/newdir"`,
		`add dir "/newdir/deeper"`,
		`add file "/newdir/deeper/n2"`,
		`add file "/newdir/n1"`,
		`add file "/re/fresh"`,
		`add file "/re/old1"`,
		`delete file "/re/old2"`,
		`delete dir "/re/sub"`,
		`delete dir "/tree"`,
	})
	c := all[0]
	if c.Size != int64(len("changed")) || c.Nlink != 1 || c.Ino == 0 || c.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("stat fields: %+v", c)
	}
	if all[1].Mode&0o777 != 0o600 {
		t.Fatalf("mode of y: %o", all[1].Mode)
	}
}

// A directory created inside a recreated (opaque) one, where the lower
// had a directory of that name, hides the lower one too: its vanished
// children are deletes.
func TestOverlayNestedOpaque(t *testing.T) {
	o := newOverlay(t, func(l []string) {
		write(t, l[0]+"/p/q/r", "r")
		write(t, l[0]+"/p/q/s", "s")
		write(t, l[0]+"/p/t", "t")
	})
	must(t, os.RemoveAll(o.m("p")))
	write(t, o.m("p/q/r"), "r2")
	o.unmount(t)
	got, _ := overlayLines(t, o.upper, o.lowers)
	sameLines(t, got, []string{
		`add dir "/p/q"`,
		`add file "/p/q/r"`,
		`delete file "/p/q/s"`,
		`delete file "/p/t"`,
	})
}

// Lowers merged as overlayfs does: a whiteout or an opaque directory in an
// upper lower hides the layers below.
func TestOverlayMultiLower(t *testing.T) {
	requireRoot(t)
	d := t.TempDir()
	l1, l2, up := d+"/l1", d+"/l2", d+"/up"
	write(t, l2+"/gone", "g")
	write(t, l2+"/od/b", "b")
	write(t, l2+"/od/c", "c")
	write(t, l2+"/m/deep", "d")
	write(t, l1+"/od/a", "a")
	write(t, l1+"/m/top", "t")
	must(t, unix.Mknod(l1+"/gone", unix.S_IFCHR|0o600, 0))
	must(t, unix.Setxattr(l1+"/od", "trusted.overlay.opaque", []byte("y"), 0))
	must(t, os.MkdirAll(up+"/od", 0o755))
	must(t, unix.Setxattr(up+"/od", "trusted.overlay.opaque", []byte("y"), 0))
	write(t, up+"/od/new", "n")
	write(t, up+"/gone", "back")
	must(t, os.MkdirAll(up+"/m", 0o755))
	must(t, unix.Mknod(up+"/m/deep", unix.S_IFCHR|0o600, 0))
	must(t, unix.Mknod(up+"/m/never", unix.S_IFCHR|0o600, 0))
	got, _ := overlayLines(t, up, []string{l1, l2})
	sameLines(t, got, []string{
		`add file "/gone"`,
		`delete file "/m/deep"`,
		`delete file "/od/a"`,
		`add file "/od/new"`,
	})
}

// continuity's DiffDirChanges is the reference on a benign tree (no
// recreated directories, no links): same non-directory changes.
func TestOverlayMatchesContinuity(t *testing.T) {
	o := newOverlay(t, func(l []string) {
		for _, p := range []string{"etc/conf", "etc/keep", "usr/lib/a", "usr/lib/b", "usr/share/doc/x", "var/log/old", "home/u/.bashrc"} {
			write(t, filepath.Join(l[0], p), p)
		}
	})
	write(t, o.m("etc/conf"), "edited")
	write(t, o.m("etc/new"), "n")
	must(t, os.Remove(o.m("usr/lib/b")))
	must(t, os.RemoveAll(o.m("usr/share")))
	write(t, o.m("home/u/proj/main.go"), "package main")
	write(t, o.m("home/u/proj/sub/x"), "x")
	must(t, os.Chmod(o.m("var/log/old"), 0o600))
	write(t, o.m("tmp/t"), "t")
	o.unmount(t)

	var ours []string
	err := OverlayChanges(context.Background(), o.upper, o.lowers, func(c Change) error {
		if c.Kind == change.KindDelete || c.Type != change.TypeDir {
			ours = append(ours, string(c.Kind)+" "+c.Path)
		}
		return nil
	})
	must(t, err)
	var theirs []string
	err = fs.DiffDirChanges(context.Background(), o.lowers[0], o.upper, fs.DiffSourceOverlayFS,
		func(k fs.ChangeKind, p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if k == fs.ChangeKindDelete || !fi.IsDir() {
				theirs = append(theirs, k.String()+" "+p)
			}
			return nil
		})
	must(t, err)
	sort.Strings(ours)
	sort.Strings(theirs)
	if len(ours) < 6 {
		t.Fatalf("too few changes: %v", ours)
	}
	sameLines(t, ours, theirs)
}

// An image link /home -> a host directory must not make the walker consult
// the host directory: os.Stat(lower/home/x) would find hostdir/x.
func TestOverlayLowerAbsoluteSymlinkNotFollowed(t *testing.T) {
	host := t.TempDir()
	write(t, host+"/x", "host x")
	write(t, host+"/secret", "host secret")
	o := newOverlay(t, func(l []string) {
		must(t, os.Symlink(host, l[0]+"/home"))
		must(t, os.Symlink(host, l[0]+"/link-kept"))
		write(t, l[0]+"/etc/f", "f")
	})
	// In the sandbox, /home -> host would resolve inside the sandbox; here
	// we replace the link with a real directory, as `rm /home; mkdir
	// /home` would.
	must(t, os.Remove(o.m("home")))
	write(t, o.m("home/x"), "sandbox x")
	o.unmount(t)
	// Plant a whiteout under the link's name too, as a hostile upper could.
	must(t, unix.Mknod(o.upper+"/home/secret", unix.S_IFCHR|0o600, 0))

	got, _ := overlayLines(t, o.upper, o.lowers)
	sameLines(t, got, []string{
		`modify dir "/home"`,
		`add file "/home/x"`,
	})
	// The test discriminates: a path-string walker sees the host files.
	var theirs []string
	must(t, fs.DiffDirChanges(context.Background(), o.lowers[0], o.upper, fs.DiffSourceOverlayFS,
		func(k fs.ChangeKind, p string, fi os.FileInfo, err error) error {
			theirs = append(theirs, k.String()+" "+p)
			return err
		}))
	if !strings.Contains(strings.Join(theirs, "\n"), "modify /home/x") {
		t.Fatalf("test does not discriminate: continuity (os.Stat) should follow the link and see host x: %v", theirs)
	}
	if b, _ := os.ReadFile(host + "/x"); string(b) != "host x" {
		t.Fatal("host file touched")
	}
}

// Hostile names come through as exact bytes.
func TestOverlayHostileNames(t *testing.T) {
	o := newOverlay(t, nil)
	names := []string{"-rf", "--help", "a\nb", "esc\x1b[31m", "bad\xff\xfeutf8", strings.Repeat("n", 255), " sp ", "*", "\\"}
	for _, n := range names {
		write(t, o.m("d/"+n), n)
	}
	o.unmount(t)
	_, all := overlayLines(t, o.upper, o.lowers)
	got := map[string]bool{}
	for _, c := range all {
		got[c.Path] = true
	}
	for _, n := range names {
		p := "/d/" + n
		if !got[p] {
			t.Errorf("missing %q in %v", p, all)
			continue
		}
		f, err := OpenFile(o.upper, p, Change{}, 1024)
		if err != nil {
			t.Fatalf("OpenFile(%q): %v", p, err)
		}
		b := readAll(t, f)
		if string(b) != n {
			t.Fatalf("content of %q: %q", p, b)
		}
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Path >= all[i].Path {
			t.Fatalf("not in byte order: %q then %q", all[i-1].Path, all[i].Path)
		}
	}
}

func readAll(t *testing.T, f *File) []byte {
	t.Helper()
	defer f.Close()
	var out []byte
	buf := make([]byte, 7)
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("read: %v", err)
		}
	}
	must(t, f.Verify())
	return out
}

// A copied-up directory is reported when its permission bits, setgid or
// sticky bit, or owner changed (a modify with its version below), and not
// when only what it holds or its mtime changed.
func TestOverlayDirModeAndOwner(t *testing.T) {
	o := newOverlay(t, func(l []string) {
		write(t, l[0]+"/chmod/kept", "k")
		write(t, l[0]+"/chown/kept", "k")
		write(t, l[0]+"/holds/kept", "k")
		write(t, l[0]+"/sticky/kept", "k")
	})
	must(t, os.Chmod(o.m("chmod"), 0o700))
	must(t, os.Chown(o.m("chown"), 1000, 1000))
	write(t, o.m("holds/new"), "n")
	must(t, os.Chmod(o.m("sticky"), 0o755|os.ModeSticky))
	o.unmount(t)

	got, all := overlayLines(t, o.upper, o.lowers)
	sameLines(t, got, []string{
		`modify dir "/chmod"`,
		`modify dir "/chown"`,
		`add file "/holds/new"`,
		`modify dir "/sticky"`,
	})
	for _, c := range all[:2] {
		if c.Below == nil || c.Below.Type != change.TypeDir || c.Below.Mode&0o777 != 0o755 {
			t.Errorf("%s: below %+v, want the directory it was (0755)", c.Path, c.Below)
		}
	}
	if all[0].Mode&0o777 != 0o700 || all[1].UID != 1000 || all[1].GID != 1000 {
		t.Errorf("stat fields: %+v %+v", all[0], all[1])
	}
}
