package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/progress"
)

// TestImportAndSandbox imports a busybox rootfs (from a directory, a tar and
// a tar.gz) into each snapshotter, runs a sandbox root on it, writes through
// the mount, and checks that the image did not change.
func TestImportAndSandbox(t *testing.T) {
	requireRoot(t)
	rootfs := busyboxRootfs(t)
	want := treeHash(t, rootfs)
	wantStats, err := countTree(context.Background(), rootfs)
	must(t, err)
	plain, gz := tarOf(t, rootfs, false), tarOf(t, rootfs, true)
	if gz[0] != 0x1f || gz[1] != 0x8b {
		t.Fatal("test tar.gz is not gzip")
	}

	sources := []struct {
		name string
		src  func() Source
	}{
		{"dir", func() Source { return Source{Dir: rootfs} }},
		{"tar", func() Source { return Source{Tar: bytes.NewReader(plain)} }},
		{"tar.gz", func() Source { return Source{Tar: bytes.NewReader(gz)} }},
	}
	for _, kind := range kinds {
		for _, s := range sources {
			t.Run(kind+"/"+s.name, func(t *testing.T) {
				ctx := context.Background()
				m, state := openManager(t, kind)
				if m.Kind() != kind {
					t.Fatalf("Kind() = %q", m.Kind())
				}
				last := &lastStatus{}
				st, err := m.Import(ctx, "img/bb", s.src(), last)
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
				if st.Files != wantStats.Files || st.Bytes != wantStats.Bytes {
					t.Fatalf("Import stats = %d files %d bytes, want %d, %d", st.Files, st.Bytes, wantStats.Files, wantStats.Bytes)
				}
				if last.s.Items != st.Files || last.s.Bytes != st.Bytes {
					t.Fatalf("last progress = %d, %d; want the totals", last.s.Items, last.s.Bytes)
				}
				if st.Dir == "" {
					t.Fatal("ImportStats.Dir is empty")
				}
				image := treeHash(t, st.Dir)
				sameTree(t, "imported image vs source", want, image)

				keys, err := m.Keys(ctx)
				must(t, err)
				if !slices.Equal(keys, []string{"img/bb"}) {
					t.Fatalf("Keys = %q", keys)
				}
				if _, err := m.Import(ctx, "img/bb", s.src(), nil); !errdefs.IsAlreadyExists(err) {
					t.Fatalf("second Import of the same key: %v, want already exists", err)
				}

				// A sandbox root on the image.
				const session = "sbx/a/session/1"
				mounts, err := m.Prepare(ctx, session, "img/bb")
				must(t, err)
				again, err := m.Mounts(ctx, session)
				must(t, err)
				if len(again) != len(mounts) || again[0].Type != mounts[0].Type || !slices.Equal(again[0].Options, mounts[0].Options) {
					t.Fatalf("Mounts = %+v, Prepare gave %+v", again, mounts)
				}
				var upper string
				switch kind {
				case KindOverlay:
					var lowers []string
					var ok bool
					upper, lowers, ok = OverlayDirs(mounts)
					if !ok || upper == "" || !slices.Equal(lowers, []string{st.Dir}) {
						t.Fatalf("OverlayDirs(%+v) = %q, %q, %v; want an upper and lower %q", mounts, upper, lowers, ok, st.Dir)
					}
					for _, o := range overlayOptions {
						if !slices.Contains(mounts[0].Options, o) {
							t.Fatalf("overlay mount options %q lack %q", mounts[0].Options, o)
						}
					}
					for _, o := range mounts[0].Options {
						if strings.Contains(o, "userxattr") {
							t.Fatalf("overlay mount options %q hold userxattr", mounts[0].Options)
						}
					}
					if _, ok := BindSource(mounts); ok {
						t.Fatal("BindSource accepted an overlay mount")
					}
				case KindNative:
					src, ok := BindSource(mounts)
					if !ok || src == st.Dir {
						t.Fatalf("BindSource(%+v) = %q, %v; want the session's own copy", mounts, src, ok)
					}
					if _, _, ok := OverlayDirs(mounts); ok {
						t.Fatal("OverlayDirs accepted a bind mount")
					}
				}

				mnt := filepath.Join(state, "roots", "a")
				must(t, MountAll(mounts, mnt))
				if ok, err := IsMounted(mnt); err != nil || !ok {
					t.Fatalf("IsMounted(%s) = %v, %v after MountAll", mnt, ok, err)
				}
				if mps, err := MountsUnder(state); err != nil || !slices.Equal(mps, []string{mnt}) {
					t.Fatalf("MountsUnder = %q, %v; want [%s]", mps, err, mnt)
				}
				if kind == KindOverlay {
					assertMountOptions(t, mnt)
				}
				sameTree(t, "fresh sandbox root vs image", want, treeHash(t, mnt))

				out := chrootSh(t, mnt, `echo new > /home/user/Documents/new.txt
echo changed >> /etc/passwd
rm /bin/ls
rm -r /home/user/Documents/sub
mkdir /opt && echo x > /opt/x
chmod 600 /etc/hostname
cat /etc/hostname.link`)
				if out != "sandbox\n" {
					t.Fatalf("busybox shell output %q", out)
				}
				must(t, os.WriteFile(filepath.Join(mnt, "root", "from-host"), []byte("hi"), 0o600))
				must(t, Unmount(mnt))
				if ok, err := IsMounted(mnt); err != nil || ok {
					t.Fatalf("IsMounted(%s) = %v, %v after Unmount", mnt, ok, err)
				}
				must(t, Unmount(mnt)) // idempotent
				must(t, Unmount(filepath.Join(state, "no", "such", "dir")))
				if mps, err := MountsUnder(state); err != nil || len(mps) != 0 {
					t.Fatalf("MountsUnder after Unmount = %q, %v", mps, err)
				}

				if kind == KindOverlay {
					// The changes are in the upperdir: a new file, a
					// whiteout for the deleted one.
					if b, err := os.ReadFile(filepath.Join(upper, "home/user/Documents/new.txt")); err != nil || string(b) != "new\n" {
						t.Fatalf("upper new.txt = %q, %v", b, err)
					}
					fi, err := os.Lstat(filepath.Join(upper, "bin/ls"))
					if err != nil || fi.Mode()&os.ModeCharDevice == 0 || fi.Sys().(*syscall.Stat_t).Rdev != 0 {
						t.Fatalf("upper bin/ls is not a whiteout: %v, %v", fi, err)
					}
				}

				// The image is unchanged, read directly and through a
				// fresh root.
				sameTree(t, "image after the sandbox wrote", image, treeHash(t, st.Dir))
				fresh, err := m.Prepare(ctx, "check", "img/bb")
				must(t, err)
				fmnt := filepath.Join(state, "roots", "check")
				must(t, MountAll(fresh, fmnt))
				sameTree(t, "fresh root after the sandbox wrote", want, treeHash(t, fmnt))
				must(t, Unmount(fmnt))
				must(t, m.Remove(ctx, "check"))

				// A parent with children cannot go; children can, twice.
				if err := m.Remove(ctx, "img/bb"); err == nil {
					t.Fatal("Remove of an image with a child succeeded")
				}
				must(t, m.Remove(ctx, session))
				must(t, m.Remove(ctx, session))
				if ok, err := m.Exists(ctx, session); err != nil || ok {
					t.Fatalf("Exists(session) = %v, %v after Remove", ok, err)
				}
				if ok, err := m.Exists(ctx, "img/bb"); err != nil || !ok {
					t.Fatalf("Exists(img/bb) = %v, %v", ok, err)
				}
				must(t, m.Remove(ctx, "img/bb"))
				keys, err = m.Keys(ctx)
				if err != nil || len(keys) != 0 {
					t.Fatalf("Keys after removing all = %q, %v", keys, err)
				}
				if ents, _ := os.ReadDir(filepath.Join(m.Dir(), "snapshots")); len(ents) != 0 {
					t.Fatalf("snapshot directories left: %v", ents)
				}
				must(t, m.Close())
				must(t, m.Close())
			})
		}
	}
}

// assertMountOptions checks, in the kernel's mount table, that the overlay
// really got our options (the kernel lists the non-default ones it took).
func assertMountOptions(t *testing.T, mnt string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != mnt {
			continue
		}
		// The kernel lists only options that differ from its defaults, so
		// check that none of ours was turned on.
		for _, o := range []string{"upperdir=", "lowerdir="} {
			if !strings.Contains(line, o) {
				t.Fatalf("mountinfo for %s lacks %q: %s", mnt, o, line)
			}
		}
		if strings.Contains(line, "userxattr") || strings.Contains(line, "metacopy=on") || strings.Contains(line, "index=on") || strings.Contains(line, "redirect_dir=on") {
			t.Fatalf("mountinfo for %s: %s", mnt, line)
		}
		return
	}
	t.Fatalf("%s not in mountinfo", mnt)
}

// TestImportCrashedLeftover: an import killed half way leaves key/import;
// the next import removes it and succeeds.
func TestImportCrashedLeftover(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			m, _ := openManager(t, kind)
			mounts, err := m.Prepare(ctx, "img/x"+importSuffix, "")
			must(t, err)
			dir, ok := BindSource(mounts)
			if !ok {
				t.Fatalf("parentless Prepare is not a bind: %+v", mounts)
			}
			must(t, os.WriteFile(filepath.Join(dir, "half"), []byte("half"), 0o644))

			src := t.TempDir()
			must(t, os.WriteFile(filepath.Join(src, "whole"), []byte("whole"), 0o644))
			st, err := m.Import(ctx, "img/x", Source{Dir: src}, nil)
			must(t, err)
			if st.Files != 1 || st.Bytes != 5 {
				t.Fatalf("stats %+v", st)
			}
			if _, err := os.Lstat(filepath.Join(st.Dir, "half")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("leftover file in the new image: %v", err)
			}
			keys, err := m.Keys(ctx)
			must(t, err)
			if !slices.Equal(keys, []string{"img/x"}) {
				t.Fatalf("Keys = %q", keys)
			}
		})
	}
}

// TestOpenLocked: a second Open of a database held by another Manager fails
// after its timeout, clearly, instead of hanging.
func TestOpenLocked(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			requireRoot(t)
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "snapshots", kind)
			m1, err := Open(ctx, dir, kind, time.Second)
			must(t, err)
			start := time.Now()
			m2, err := Open(ctx, dir, kind, 300*time.Millisecond)
			if err == nil {
				m2.Close()
				t.Fatal("second Open of a held database succeeded")
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("second Open took %v", el)
			}
			if !strings.Contains(err.Error(), "in use by another process") {
				t.Fatalf("second Open: %v", err)
			}
			must(t, m1.Close())
			must(t, m1.Close())
			m3, err := Open(ctx, dir, kind, time.Second)
			must(t, err)
			must(t, m3.Close())
		})
	}
	if _, err := Open(context.Background(), t.TempDir(), "zfs", time.Second); err == nil {
		t.Fatal("Open of an unknown kind succeeded")
	}
}

func TestCheckOverlay(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "state")
	if err := CheckOverlay(dir); err != nil {
		t.Fatalf("CheckOverlay on ext4: %v", err)
	}
	if k := Detect(dir); k != KindOverlay {
		t.Fatalf("Detect = %q", k)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("CheckOverlay left %v", ents)
	}

	// A state directory on an overlay filesystem.
	base := t.TempDir()
	l, u, w, mnt := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	for _, d := range []string{l, u, w, mnt} {
		must(t, os.Mkdir(d, 0o700))
	}
	must(t, syscall.Mount("overlay", mnt, "overlay", 0, "lowerdir="+l+",upperdir="+u+",workdir="+w))
	t.Cleanup(func() { _ = Unmount(mnt) })
	state := filepath.Join(mnt, "var", "lib", "spillway")
	err := CheckOverlay(state)
	if err == nil {
		t.Fatal("CheckOverlay on an overlay filesystem succeeded")
	}
	var oe *OverlayError
	if !errors.As(err, &oe) || oe.Fix != FixFilesystem || !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "(an overlay filesystem)") {
		t.Fatalf("CheckOverlay error %#v: want an OverlayError on the filesystem", err)
	}
	if k := Detect(state); k != KindNative {
		t.Fatalf("Detect on overlay = %q", k)
	}
}

func TestMountHelpers(t *testing.T) {
	upper, lowers, ok := OverlayDirs(nil)
	if ok || upper != "" || lowers != nil {
		t.Fatal("OverlayDirs(nil)")
	}
	if _, ok := BindSource(nil); ok {
		t.Fatal("BindSource(nil)")
	}
	dir := t.TempDir()
	if ok, err := IsMounted(dir); err != nil || ok {
		t.Fatalf("IsMounted(plain dir) = %v, %v", ok, err)
	}
	if ok, err := IsMounted(filepath.Join(dir, "missing")); err != nil || ok {
		t.Fatalf("IsMounted(missing) = %v, %v", ok, err)
	}
	if mps, err := MountsUnder(filepath.Join(dir, "missing")); err != nil || len(mps) != 0 {
		t.Fatalf("MountsUnder(missing) = %v, %v", mps, err)
	}
	must(t, Unmount(dir))
}

// lastStatus is a progress.Progress that keeps the last status.
type lastStatus struct{ s progress.Status }

func (l *lastStatus) Update(s progress.Status) { l.s = s }
func (l *lastStatus) Done()                    {}

// TestImportCrashedLeftoverFreesSpaceFirst: on a disk a crashed import's
// leftover nearly filled, the rerun's default size limit counts the space
// the leftover's removal frees. Before, the limit was taken first and the
// rerun failed with a --max-bytes error; only the run after that worked.
func TestImportCrashedLeftoverFreesSpaceFirst(t *testing.T) {
	requireRoot(t)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			disk := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk).CombinedOutput(); err != nil {
				t.Fatalf("mount tmpfs: %v: %s", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
			m, err := Open(ctx, filepath.Join(disk, "snapshots", kind), kind, 5*time.Second)
			must(t, err)
			t.Cleanup(func() {
				if mps, _ := MountsUnder(disk); len(mps) > 0 {
					for i := len(mps) - 1; i >= 0; i-- {
						_ = Unmount(mps[i])
					}
				}
				m.Close()
			})
			mounts, err := m.Prepare(ctx, "img/x"+importSuffix, "")
			must(t, err)
			dir, _ := BindSource(mounts)
			half := make([]byte, 40<<20)
			for i := range half {
				half[i] = byte(i)
			}
			must(t, os.WriteFile(filepath.Join(dir, "half"), half, 0o644))

			src := t.TempDir()
			must(t, os.WriteFile(filepath.Join(src, "whole"), half[:30<<20], 0o644))
			st, err := m.Import(ctx, "img/x", Source{Dir: src}, nil)
			if err != nil {
				t.Fatalf("import of 30 MiB after a 40 MiB leftover on a 64 MiB disk: %v", err)
			}
			if st.Bytes != 30<<20 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
