package holders

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/testns"
)

// The test binary doubles as a helper that maps a file and waits.
func TestMain(m *testing.M) {
	if p := os.Getenv("HOLDERS_TEST_MAP"); p != "" {
		f, err := os.Open(p)
		if err != nil {
			os.Exit(3)
		}
		if _, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED); err != nil {
			os.Exit(4)
		}
		f.Close()
		os.Stdout.WriteString("mapped\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// overlay mounts a small overlay in a temporary directory and returns its
// mount point; the mount goes at the end of the test.
func overlay(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests mount filesystems and read other processes' /proc: run them as root")
	}
	dir := t.TempDir()
	for _, d := range []string{"lower/sub", "upper", "work", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lower/sub/file"), make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, 0) })
	return mnt
}

// start starts cmd and stops it at the end of the test.
func start(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// find returns the holders of mnt that name pid (all with pid 0).
func find(t *testing.T, mnt string, pid int) []Holder {
	t.Helper()
	hs, err := Find(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var out []Holder
	for _, h := range hs {
		if h.PID == pid {
			out = append(out, h)
		}
	}
	return out
}

func TestNoHolders(t *testing.T) {
	mnt := overlay(t)
	if hs, err := Find(mnt); err != nil || len(hs) != 0 {
		t.Fatalf("Find = %v, %v; want none", hs, err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if hs, err := Find(mnt); err != nil || len(hs) != 0 {
		t.Fatalf("Find on an unmounted directory = %v, %v; want none", hs, err)
	}
}

func TestWorkingDirectory(t *testing.T) {
	mnt := overlay(t)
	cmd := exec.Command("sleep", "60")
	cmd.Dir = filepath.Join(mnt, "sub")
	pid := start(t, cmd)
	hs := find(t, mnt, pid)
	if len(hs) != 1 || hs[0].What != Cwd || hs[0].Path != cmd.Dir || hs[0].Command != "sleep" {
		t.Fatalf("holders of pid %d = %+v; want its working directory %s", pid, hs, cmd.Dir)
	}
	if want := fmt.Sprintf("pid %d (sleep): working directory %s", pid, cmd.Dir); hs[0].String() != want {
		t.Errorf("String() = %q, want %q", hs[0].String(), want)
	}
	// The hold is real: the kernel refuses the unmount.
	if err := unix.Unmount(mnt, 0); err != unix.EBUSY {
		t.Fatalf("unmount while held: %v, want EBUSY", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if hs, err := Find(mnt); err != nil || len(hs) != 0 {
		t.Fatalf("Find after the holder exited = %v, %v; want none", hs, err)
	}
}

func TestOpenFiles(t *testing.T) {
	mnt := overlay(t)
	var files []*os.File
	for _, p := range []string{"sub/file", "sub"} {
		f, err := os.Open(filepath.Join(mnt, p))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	cmd := exec.Command("sleep", "60")
	cmd.Stdin = files[0]
	cmd.ExtraFiles = files[1:]
	pid := start(t, cmd)
	for _, f := range files {
		f.Close()
	}
	hs := find(t, mnt, pid)
	if len(hs) != 1 || hs[0].What != File || hs[0].More != 1 || !strings.HasPrefix(hs[0].Path, mnt+"/sub") {
		t.Fatalf("holders of pid %d = %+v; want two open files under %s", pid, hs, mnt)
	}
}

func TestMemoryMap(t *testing.T) {
	mnt := overlay(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "HOLDERS_TEST_MAP="+filepath.Join(mnt, "sub/file"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pid := start(t, cmd)
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "mapped\n" {
		t.Fatalf("helper did not map the file: %q, %v", buf, err)
	}
	hs := find(t, mnt, pid)
	if len(hs) != 1 || hs[0].What != Map || hs[0].Path != filepath.Join(mnt, "sub/file") {
		t.Fatalf("holders of pid %d = %+v; want a memory map of sub/file", pid, hs)
	}
}

func TestOtherMountNamespace(t *testing.T) {
	mnt := overlay(t)
	// unshare copies the mount table: sleep's namespace holds a mount of
	// the overlay that this namespace's unmount does not remove.
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := testns.Command(mnt, ready)
	pid := start(t, cmd)
	var hs []Holder
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if hs = find(t, mnt, pid); len(hs) > 0 {
			break // unshare has exec'd sleep in its namespace
		}
	}
	if len(hs) != 1 || !strings.HasPrefix(hs[0].What, Mount+" in another mount namespace (mnt:[") || hs[0].Path != mnt {
		t.Fatalf("holders of pid %d = %+v; want its namespace's mount at %s", pid, hs, mnt)
	}
	// This namespace's unmount succeeds, the other copy stays.
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil || !strings.Contains(string(data), " "+mnt+" ") {
		t.Fatalf("the other namespace lost its mount: %v", err)
	}
}

func TestBindMount(t *testing.T) {
	mnt := overlay(t)
	other := t.TempDir()
	if err := unix.Mount(filepath.Join(mnt, "sub"), other, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(other, 0)
	// A bind mount below the root goes with a recursive unmount: not a holder.
	below := filepath.Join(mnt, "sub")
	if err := unix.Mount(below, below, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(below, 0)
	hs := find(t, mnt, 0)
	if len(hs) != 1 || hs[0].Path != other || hs[0].String() != "another mount at "+other {
		t.Fatalf("holders = %+v; want the bind mount at %s", hs, other)
	}
}

func TestDescribeEscapes(t *testing.T) {
	h := Holder{PID: 7, Command: "a\nb", What: File, Path: "/x\n", More: 2}
	got := h.Describe(func(s string) string { return strings.ReplaceAll(s, "\n", `\n`) })
	if want := `pid 7 (a\nb): open file /x\n (and 2 more)`; got != want {
		t.Fatalf("Describe = %q, want %q", got, want)
	}
}

// TestUserNamespaceCopyIsNoHolder checks that the locked copies of the
// mount table in another user namespace (unshare -Urm, which any local
// user may run) hold nothing: else any user could block every close.
func TestUserNamespaceCopyIsNoHolder(t *testing.T) {
	mnt := overlay(t)
	cmd := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"unshare", "--user", "--map-root-user", "--mount", "sleep", "60")
	pid := start(t, cmd)
	// Wait until the process is sleep, in its own namespaces.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare did not exec sleep")
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil || !strings.Contains(string(data), " "+mnt+" ") {
		t.Fatalf("the user namespace has no copy of the mount to ignore: %v", err)
	}
	if hs := find(t, mnt, pid); len(hs) != 0 {
		t.Fatalf("holders of pid %d = %+v; want none (a locked copy in another user namespace)", pid, hs)
	}
}
