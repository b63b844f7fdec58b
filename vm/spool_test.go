package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpoolWriterCutsOff: a spool stops taking data past its bound and
// when the host's file system runs low, keeps accepting (the guest must
// not block), and says why; holes never count.
func TestSpoolWriterCutsOff(t *testing.T) {
	dense := bytes.Repeat([]byte{'x'}, 1<<20)
	zeros := make([]byte, 8<<20)

	f, err := os.Create(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := newSpoolWriter(f)
	s.maxData = 3 << 20
	for i := 0; i < 5; i++ {
		if n, err := s.Write(zeros); err != nil || n != len(zeros) {
			t.Fatalf("zeros: %d, %v", n, err)
		}
		if n, err := s.Write(dense); err != nil || n != len(dense) {
			t.Fatalf("data: %d, %v", n, err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.over, "over 3.0 MiB") && !strings.Contains(s.over, "over 3 MiB") {
		t.Errorf("over = %q, want the bound named", s.over)
	}
	if got := s.w.Data(); got != 3<<20 {
		t.Errorf("data written %d, want the 3 MiB bound", got)
	}

	g, err := os.Create(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	old := SpoolMinFree
	SpoolMinFree = 1 << 62 // more than any disk has free
	defer func() { SpoolMinFree = old }()
	s = newSpoolWriter(g)
	if n, err := s.Write(dense); err != nil || n != len(dense) {
		t.Fatalf("data: %d, %v", n, err)
	}
	if s.w.Data() != 0 || !strings.Contains(s.over, "free") {
		t.Errorf("with no free space left: %d bytes written, over %q", s.w.Data(), s.over)
	}
}
