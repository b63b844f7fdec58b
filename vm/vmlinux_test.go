package vm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/internal/testenv"
)

// The LZ4 decoder agrees with the lz4 tool on a legacy frame.
func TestLZ4LegacyMatchesTool(t *testing.T) {
	if _, err := exec.LookPath("lz4"); err != nil {
		testenv.Missing(t, "lz4 is not installed")
	}
	dir := t.TempDir()
	var in bytes.Buffer
	for i := 0; i < 300000; i++ {
		in.WriteString("spillway ")
		in.WriteByte(byte(i * 7919 >> 3))
	}
	src := filepath.Join(dir, "in")
	os.WriteFile(src, in.Bytes(), 0o644)
	if out, err := exec.Command("lz4", "-l", "-f", "-q", src, src+".lz4").CombinedOutput(); err != nil {
		t.Fatalf("lz4: %v %s", err, out)
	}
	frame, _ := os.ReadFile(src + ".lz4")
	got, err := lz4Legacy(append(frame[4:], 0x10, 0, 0, 0x3)) // plus a kernel-style size word
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in.Bytes()) {
		t.Fatalf("decoded %d bytes, want %d", len(got), in.Len())
	}
}

func TestExtractVmlinux(t *testing.T) {
	k, err := FindKernel(t.TempDir(), "", "")
	if err != nil {
		testenv.Missing(t, "no guest kernel: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "vmlinux")
	if err := extractVmlinux(k.Image, dst); err != nil {
		t.Fatalf("%s: %v", k.Image, err)
	}
}
