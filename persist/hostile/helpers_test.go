package hostile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (overlay mounts, mknod, trusted xattrs); CI runs as root")
	}
}

// ovl is a real overlay mount in a temp dir.
type ovl struct {
	lowers              []string
	upper, work, merged string
	mounted             bool
}

// newOverlay creates n lower dirs, filled by fill (may be nil), and mounts
// an overlay on them.
func newOverlay(t *testing.T, fill func(lowers []string)) *ovl {
	t.Helper()
	requireRoot(t)
	d := t.TempDir()
	o := &ovl{upper: filepath.Join(d, "upper"), work: filepath.Join(d, "work"), merged: filepath.Join(d, "merged")}
	o.lowers = []string{filepath.Join(d, "lower")}
	for _, p := range append([]string{o.upper, o.work, o.merged}, o.lowers...) {
		must(t, os.MkdirAll(p, 0o755))
	}
	if fill != nil {
		fill(o.lowers)
	}
	o.mount(t)
	return o
}

func (o *ovl) mount(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off,metacopy=off,redirect_dir=off",
		strings.Join(o.lowers, ":"), o.upper, o.work)
	if err := unix.Mount("overlay", o.merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	o.mounted = true
	t.Cleanup(func() {
		if o.mounted {
			unix.Unmount(o.merged, unix.MNT_DETACH)
		}
	})
}

func (o *ovl) unmount(t *testing.T) {
	t.Helper()
	if err := unix.Unmount(o.merged, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	o.mounted = false
}

func (o *ovl) m(p string) string { return filepath.Join(o.merged, p) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, data string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(data), 0o644))
}

func line(c Change) string {
	s := fmt.Sprintf("%s %s %q", c.Kind, c.Type, c.Path)
	if c.Link != "" {
		s += " -> " + fmt.Sprintf("%q", c.Link)
	}
	if c.TooDeep {
		s += " toodeep"
	}
	return s
}

func overlayLines(t *testing.T, upper string, lowers []string) ([]string, []Change) {
	t.Helper()
	var lines []string
	var all []Change
	err := OverlayChanges(context.Background(), upper, lowers, func(c Change) error {
		lines = append(lines, line(c))
		all = append(all, c)
		return nil
	})
	if err != nil {
		t.Fatalf("OverlayChanges: %v", err)
	}
	return lines, all
}

func treeLines(t *testing.T, tree, base string) ([]string, []Change) {
	t.Helper()
	var lines []string
	var all []Change
	err := TreeChanges(context.Background(), tree, base, func(c Change) error {
		lines = append(lines, line(c))
		all = append(all, c)
		return nil
	})
	if err != nil {
		t.Fatalf("TreeChanges: %v", err)
	}
	return lines, all
}

func sameLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n got:\n  %s\n want:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
