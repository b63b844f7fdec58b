package hostile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mkChain makes n nested directories named name below dir with
// mkdirat/openat through descriptors (the path soon exceeds PATH_MAX) and
// writes a file "bottom" holding data at the bottom when data != "".
func mkChain(t *testing.T, dir, name string, n int, data string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	for i := 0; i < n; i++ {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil && err != unix.EEXIST {
			t.Fatalf("mkdirat level %d: %v", i, err)
		}
		nfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		must(t, err)
		unix.Close(fd)
		fd = nfd
	}
	defer unix.Close(fd)
	if data != "" {
		ffd, err := unix.Openat(fd, "bottom", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		must(t, err)
		_, err = unix.Write(ffd, []byte(data))
		must(t, err)
		unix.Close(ffd)
	}
}

func TestTooDeepPathMax(t *testing.T) {
	o := newOverlay(t, func(l []string) { write(t, l[0]+"/etc/f", "f") })
	long := strings.Repeat("L", 200)
	mkChain(t, o.merged, long, 23, "deep bytes") // 23*201 bytes > PATH_MAX
	write(t, o.m("zzz"), "sibling")
	o.unmount(t)

	got, all := overlayLines(t, o.upper, o.lowers)
	var want []string
	p := ""
	for i := 1; i <= 21; i++ {
		p += "/" + long
		s := fmt.Sprintf("add dir %q", p)
		if i == 21 {
			s += " toodeep"
		}
		want = append(want, s)
	}
	want = append(want, `add file "/zzz"`)
	sameLines(t, got, want)
	if n := len(all[20].Path); n < PathMax || len(all[19].Path) >= PathMax {
		t.Fatalf("TooDeep at %d bytes", n)
	}
	if _, err := OpenFile(o.upper, all[20].Path+"/x", Change{}, 10); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("OpenFile too deep: %v", err)
	}
	// The same in the native walker.
	got, _ = treeLines(t, o.upper, "")
	sameLines(t, got, want)
}

// A change below a too-deep directory that exists below: the container is
// reported once as TooDeep (it cannot be looked into).
func TestTooDeepCopiedUp(t *testing.T) {
	long := strings.Repeat("L", 200)
	o := newOverlay(t, func(l []string) { mkChain(t, l[0], long, 22, "lower") })
	fd, err := unix.Open(o.merged, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(t, err)
	for i := 0; i < 22; i++ {
		nfd, err := unix.Openat(fd, long, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		must(t, err)
		unix.Close(fd)
		fd = nfd
	}
	ffd, err := unix.Openat(fd, "bottom", unix.O_WRONLY|unix.O_APPEND, 0)
	must(t, err)
	unix.Write(ffd, []byte(" changed"))
	unix.Close(ffd)
	unix.Close(fd)
	write(t, o.m("after"), "a")
	o.unmount(t)
	got, _ := overlayLines(t, o.upper, o.lowers)
	sameLines(t, got, []string{
		fmt.Sprintf("modify dir %q toodeep", strings.Repeat("/"+long, 21)),
		`add file "/after"`,
	})
}

func TestTooDeepDepth(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mkChain(t, root, "d", MaxDepth+40, "x")
	write(t, root+"/e", "e")
	got, all := treeLines(t, root, "")
	if len(got) != MaxDepth+2 {
		t.Fatalf("%d changes", len(got))
	}
	deep := all[MaxDepth]
	if !deep.TooDeep || strings.Count(deep.Path, "/") != MaxDepth+1 || all[MaxDepth-1].TooDeep {
		t.Fatalf("TooDeep at %d components: %v", strings.Count(deep.Path, "/"), deep)
	}
	if all[MaxDepth+1].Path != "/e" {
		t.Fatalf("sibling after: %v", all[MaxDepth+1])
	}
}

// At most one descriptor per level and tree is open while walking.
func TestDescriptorBound(t *testing.T) {
	o := newOverlay(t, func(l []string) {
		for i := 0; i < 300; i++ {
			write(t, fmt.Sprintf("%s/w%03d/sub/f", l[0], i), "f")
		}
		mkChain(t, l[0], "c", 100, "bottom")
	})
	for i := 0; i < 300; i++ {
		must(t, os.Chmod(o.m(fmt.Sprintf("w%03d/sub/f", i)), 0o600))
		write(t, o.m(fmt.Sprintf("w%03d/sub/new", i)), "n")
	}
	must(t, os.Chmod(o.m(strings.Repeat("c/", 100)+"bottom"), 0o600))
	o.unmount(t)
	base := openFDs(t)
	maxFDs, n := 0, 0
	err := OverlayChanges(context.Background(), o.upper, o.lowers, func(c Change) error {
		n++
		maxFDs = max(maxFDs, openFDs(t)-base)
		return nil
	})
	must(t, err)
	if n != 601 {
		t.Fatalf("%d changes", n)
	}
	// 101 levels (root + 100), two trees, plus /proc/self/fd itself.
	if maxFDs > 2*101+3 {
		t.Fatalf("%d descriptors open at once", maxFDs)
	}
	if openFDs(t) != base {
		t.Fatalf("descriptors leaked: %d", openFDs(t)-base)
	}
}

func TestStopAndCancel(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 10; i++ {
		write(t, fmt.Sprintf("%s/d/f%d", root, i), "x")
	}
	stop := errors.New("stop")
	n := 0
	err := TreeChanges(context.Background(), root, "", func(Change) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("err %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = OverlayChanges(ctx, root, nil, func(Change) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("err %v after %d", err, n)
	}
}

// A flat directory of many entries streams (no list of changes kept).
func TestFlatDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 files: skipped with -short (the full suite and CI run it)")
	}
	root := t.TempDir()
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(t, err)
	const n = 50000
	for i := 0; i < n; i++ {
		ffd, err := unix.Openat(fd, fmt.Sprintf("f%06d", i), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		must(t, err)
		unix.Close(ffd)
	}
	unix.Close(fd)
	count, prev := 0, ""
	must(t, TreeChanges(context.Background(), root, "", func(c Change) error {
		if c.Path <= prev {
			t.Fatalf("order: %q after %q", c.Path, prev)
		}
		prev = c.Path
		count++
		return nil
	}))
	if count != n {
		t.Fatalf("%d changes", count)
	}
}
