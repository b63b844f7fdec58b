package hostile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// xovl is an overlay with two lowers mounted with extra options.
type xovl struct {
	upper, work, merged string
	lowers              []string
	opts                string
}

func newXovl(t *testing.T, opts string) *xovl {
	t.Helper()
	requireRoot(t)
	d := t.TempDir()
	o := &xovl{upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), merged: filepath.Join(d, "merged"),
		lowers: []string{filepath.Join(d, "l0"), filepath.Join(d, "l1")}, opts: opts}
	for _, p := range append([]string{o.upper, o.work, o.merged}, o.lowers...) {
		must(t, os.MkdirAll(p, 0o755))
	}
	return o
}

func (o *xovl) mount(t *testing.T) {
	t.Helper()
	redirect := ",redirect_dir=off" // the kernel refuses it beside userxattr
	if strings.Contains(o.opts, "userxattr") {
		redirect = ""
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off,metacopy=off%s%s",
		strings.Join(o.lowers, ":"), o.upper, o.work, redirect, o.opts)
	if err := unix.Mount("overlay", o.merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay (%s): %v", o.opts, err)
	}
	t.Cleanup(func() { unix.Unmount(o.merged, unix.MNT_DETACH) })
}

func (o *xovl) unmount(t *testing.T) {
	t.Helper()
	must(t, unix.Unmount(o.merged, 0))
}

// names lists a directory of the mounted overlay: what the kernel shows.
func (o *xovl) names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(o.merged, dir))
	must(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func setx(t *testing.T, p, attr, val string) {
	t.Helper()
	if err := unix.Lsetxattr(p, attr, []byte(val), 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", attr, p, err)
	}
}

func walkLines(t *testing.T, o *xovl, user bool) []string {
	t.Helper()
	var got []string
	err := OverlayChangesWith(context.Background(), o.upper, o.lowers, OverlayOptions{UserXattr: user}, func(c Change) error {
		got = append(got, line(c))
		return nil
	})
	must(t, err)
	return got
}

// A sandbox can set user.overlay.opaque on its own directories; without
// userxattr the kernel ignores it, and so must close: the documents the
// user still saw are not deletes.
func TestOverlayIgnoresUserOpaqueWithoutUserxattr(t *testing.T) {
	o := newXovl(t, "")
	write(t, o.lowers[0]+"/docs/a.txt", "a")
	write(t, o.lowers[0]+"/docs/b.txt", "b")
	o.mount(t)
	write(t, filepath.Join(o.merged, "docs/new.txt"), "n")
	// Set through the mount, as a process in the sandbox would.
	setx(t, filepath.Join(o.merged, "docs"), "user.overlay.opaque", "y")
	o.unmount(t)
	o.mount(t)
	if got := o.names(t, "docs"); strings.Join(got, " ") != "a.txt b.txt new.txt" {
		t.Fatalf("kernel shows %v: the test's premise (user.overlay.opaque ignored) does not hold", got)
	}
	o.unmount(t)
	sameLines(t, walkLines(t, o, false), []string{`add file "/docs/new.txt"`})
}

// With userxattr the kernel reads user.overlay.* and ignores
// trusted.overlay.*; the walker does the same.
func TestOverlayUserxattrMount(t *testing.T) {
	o := newXovl(t, ",userxattr")
	write(t, o.lowers[0]+"/u/a", "a")
	write(t, o.lowers[0]+"/t/a", "a")
	must(t, os.MkdirAll(o.upper+"/u", 0o755))
	write(t, o.upper+"/u/n", "n")
	setx(t, o.upper+"/u", "user.overlay.opaque", "y")
	must(t, os.MkdirAll(o.upper+"/t", 0o755))
	write(t, o.upper+"/t/n", "n")
	setx(t, o.upper+"/t", "trusted.overlay.opaque", "y")
	o.mount(t)
	if u, tr := o.names(t, "u"), o.names(t, "t"); strings.Join(u, " ") != "n" || strings.Join(tr, " ") != "a n" {
		t.Fatalf("kernel shows u=%v t=%v", u, tr)
	}
	o.unmount(t)
	sameLines(t, walkLines(t, o, true), []string{`add file "/t/n"`, `delete file "/u/a"`, `add file "/u/n"`})
	// The same tree read as a trusted mount: the other way round.
	sameLines(t, walkLines(t, o, false), []string{`delete file "/t/a"`, `add file "/t/n"`, `add file "/u/n"`})
}

// A zero-size file with overlay.whiteout in a lower dir marked
// overlay.opaque = "x" hides the name below it; in the upper dir (or
// without the "x" marker) it is an ordinary file.
func TestOverlayXattrWhiteouts(t *testing.T) {
	o := newXovl(t, "")
	write(t, o.lowers[1]+"/d/hidden", "h")
	write(t, o.lowers[1]+"/d/shown", "s")
	write(t, o.lowers[1]+"/e/kept", "k")
	write(t, o.lowers[0]+"/d/hidden", "")
	setx(t, o.lowers[0]+"/d/hidden", "trusted.overlay.whiteout", "")
	setx(t, o.lowers[0]+"/d", "trusted.overlay.opaque", "x")
	write(t, o.lowers[0]+"/e/kept", "")
	setx(t, o.lowers[0]+"/e/kept", "trusted.overlay.whiteout", "") // no "x" on e: not a whiteout
	o.mount(t)
	if d, e := o.names(t, "d"), o.names(t, "e"); strings.Join(d, " ") != "shown" || strings.Join(e, " ") != "kept" {
		t.Fatalf("kernel shows d=%v e=%v", d, e)
	}
	o.unmount(t)
	// Recreate both directories (opaque upper dirs, as overlayfs makes
	// them; the kernel will not rmdir d through the mount): every name the
	// user saw below is deleted, and only those.
	for _, d := range []string{"d", "e"} {
		write(t, o.upper+"/"+d+"/new", "n")
		setx(t, o.upper+"/"+d, "trusted.overlay.opaque", "y")
	}
	o.mount(t)
	if d, e := o.names(t, "d"), o.names(t, "e"); strings.Join(d, " ") != "new" || strings.Join(e, " ") != "new" {
		t.Fatalf("kernel shows d=%v e=%v", d, e)
	}
	o.unmount(t)
	sameLines(t, walkLines(t, o, false), []string{
		`add file "/d/new"`, `delete file "/d/shown"`,
		`delete file "/e/kept"`, `add file "/e/new"`,
	})
}

// An upper zero-size file carrying the whiteout xattr (the only kind a
// sandbox can make: user.overlay.*) in a directory marked "x" is a file.
func TestOverlayUpperXattrWhiteoutIsAFile(t *testing.T) {
	o := newXovl(t, "")
	write(t, o.lowers[0]+"/d/f", "f")
	o.mount(t)
	write(t, filepath.Join(o.merged, "d/f"), "")
	setx(t, filepath.Join(o.merged, "d/f"), "user.overlay.whiteout", "")
	setx(t, filepath.Join(o.merged, "d"), "user.overlay.opaque", "x")
	o.unmount(t)
	o.mount(t)
	if got := o.names(t, "d"); strings.Join(got, " ") != "f" {
		t.Fatalf("kernel shows %v", got)
	}
	o.unmount(t)
	sameLines(t, walkLines(t, o, false), []string{`modify file "/d/f"`})
}

// Entries that vanish or change type between the listing of their
// directory and their stat or open are reported Changed, once, and the
// walk goes on (native trees the same).
func TestWalkEntriesChangedUnderTheWalk(t *testing.T) {
	for _, native := range []bool{false, true} {
		t.Run(fmt.Sprint("native=", native), func(t *testing.T) {
			requireRoot(t)
			d := t.TempDir()
			upper := filepath.Join(d, "upper")
			write(t, upper+"/docs/gone.txt", "g")
			write(t, upper+"/docs/keep.txt", "k")
			write(t, upper+"/docs/sub/x", "x")
			write(t, upper+"/docs/link", "l")
			must(t, os.MkdirAll(d+"/lower", 0o755))
			testHook = func(at, p string) {
				switch {
				case at == "listed" && p == "/docs":
					must(t, os.Remove(upper+"/docs/gone.txt"))
					must(t, os.Remove(upper+"/docs/link"))
					must(t, os.Symlink("/etc/passwd", upper+"/docs/link"))
				case at == "descend" && p == "/docs/sub":
					must(t, os.Rename(upper+"/docs/sub", d+"/moved-"+fmt.Sprint(native)))
					must(t, os.MkdirAll(upper+"/docs/sub", 0o755)) // a new inode under the same name
				}
			}
			defer func() { testHook = nil }()
			var got []string
			fn := func(c Change) error {
				s := line(c)
				if c.Changed {
					s += " changed"
				}
				got = append(got, s)
				return nil
			}
			var err error
			if native {
				err = TreeChanges(context.Background(), upper, "", fn)
			} else {
				err = OverlayChanges(context.Background(), upper, []string{d + "/lower"}, fn)
			}
			must(t, err)
			sameLines(t, got, []string{
				`add dir "/docs"`,
				`add file "/docs/gone.txt" changed`,
				`add file "/docs/keep.txt"`,
				`add symlink "/docs/link" -> "/etc/passwd"`,
				`add dir "/docs/sub"`,
				`add dir "/docs/sub" changed`,
			})
		})
	}
}
