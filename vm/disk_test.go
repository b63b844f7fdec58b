package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/testenv"
)

// TestTreeDiskLongName: a tree with a file of a 255-byte name (a guest
// made one; it persisted) still becomes a disk: mkfs.erofs refuses the
// name, so it is left out, and the rest is there.
func TestTreeDiskLongName(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		testenv.Missing(t, "mkfs.erofs is not installed (apt-get install erofs-utils)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ok.txt", strings.Repeat("x", 255)} {
		if err := os.WriteFile(filepath.Join(src, "docs", name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, "upper.erofs")
	if err := TreeDisk(dst, src); err != nil {
		t.Fatalf("a tree with a 255-byte name: %v", err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Size() == 0 {
		t.Fatalf("disk: %v %v", fi, err)
	}
	if out, err := exec.Command("dump.erofs", "--path=/docs/ok.txt", dst).CombinedOutput(); err == nil && !strings.Contains(string(out), "ok.txt") {
		t.Errorf("ok.txt is not in the disk: %s", out)
	}
}
