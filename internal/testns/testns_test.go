package testns

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHolderKeepsOnlyItsMount checks that the holder's namespace has its
// own mount and none of another test's.
func TestHolderKeepsOnlyItsMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts tmpfs and needs root (CI runs it as root)")
	}
	dir := t.TempDir()
	keep, other := filepath.Join(dir, "keep"), filepath.Join(dir, "other")
	for _, m := range []string{keep, other} {
		if err := os.Mkdir(m, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })
	}
	ready := filepath.Join(dir, "ready")
	cmd := Command(keep, ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("holder did not start")
		}
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), " "+keep+" ") {
		t.Errorf("the holder lost the mount it keeps, %s", keep)
	}
	if strings.Contains(string(data), " "+other+" ") {
		t.Errorf("the holder still holds another test's mount, %s", other)
	}
}
