package snapshot

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHostMountNodevNosuid makes a device node and a setuid program inside a
// sandbox root through its mount and shows that neither works from the host
// through that mount, while the same files through the snapshot's own
// directory (the control) do: the mount is what stops them.
func TestHostMountNodevNosuid(t *testing.T) {
	requireRoot(t)
	id, err := exec.LookPath("id")
	must(t, err)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			m, state := openManager(t, kind)
			mounts, err := m.Prepare(ctx, "sbx/a/session/1", "")
			must(t, err)
			for _, hm := range HostMounts(mounts) {
				if !slices.Contains(hm.Options, "nodev") || !slices.Contains(hm.Options, "nosuid") {
					t.Fatalf("HostMounts options %q lack nodev,nosuid", hm.Options)
				}
			}
			mnt := filepath.Join(state, "mnt", "a")
			must(t, MountAll(mounts, mnt))
			var st unix.Statfs_t
			must(t, unix.Statfs(mnt, &st))
			if st.Flags&unix.ST_NODEV == 0 || st.Flags&unix.ST_NOSUID == 0 {
				t.Fatalf("root mounted with flags %#x, want ST_NODEV and ST_NOSUID", st.Flags)
			}
			if st.Flags&unix.ST_RDONLY != 0 {
				t.Fatal("root mounted read-only")
			}
			// The snapshot's own directory: the upperdir, or the bind source.
			dir, _, ok := OverlayDirs(mounts)
			if !ok {
				dir, _ = BindSource(mounts)
			}

			// A device named like a document, the same as /dev/null.
			doc := filepath.Join(mnt, "letter.txt")
			must(t, unix.Mknod(doc, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			if f, err := os.OpenFile(doc, os.O_RDWR, 0); !errors.Is(err, unix.EACCES) {
				if err == nil {
					f.Close()
				}
				t.Fatalf("open of a device through the root: %v, want EACCES", err)
			}
			f, err := os.OpenFile(filepath.Join(dir, "letter.txt"), os.O_RDWR, 0)
			if err != nil {
				t.Fatalf("control: open of the device in the snapshot directory: %v", err)
			}
			f.Close()

			// A setuid-root copy of id(1), run by nobody.
			data, err := os.ReadFile(id)
			must(t, err)
			prog := filepath.Join(mnt, "suid-id")
			must(t, os.WriteFile(prog, data, 0o755))
			must(t, unix.Chmod(prog, 0o4755)) // os.Chmod wants os.ModeSetuid
			if out := runAsNobody(t, prog); strings.Contains(out, "euid=0") {
				t.Fatalf("setuid program through the root ran with euid 0: %s", out)
			}
			if out := runAsNobody(t, filepath.Join(dir, "suid-id")); !strings.Contains(out, "euid=0") {
				t.Fatalf("control: setuid program in the snapshot directory did not elevate: %s", out)
			}
			must(t, Unmount(mnt))
		})
	}
}

// runAsNobody runs prog as uid and gid 65534 and returns what it printed.
// The program is passed as an open descriptor: nobody cannot search the
// test's directories, and the mount's flags are checked at exec all the same.
func runAsNobody(t *testing.T, prog string) string {
	t.Helper()
	f, err := os.Open(prog)
	must(t, err)
	defer f.Close()
	cmd := exec.Command("/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run %s as nobody: %v: %s", prog, err, out)
	}
	return string(out)
}
