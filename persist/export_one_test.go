package persist

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/atomicfile"
)

// TestExportClearsStaleTemps: a single-file export removes the full-size
// temporary file a killed export to the same destination left beside it,
// never that of an export still running.
func TestExportClearsStaleTemps(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "big.out")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	prefix := exportTempPrefix(dest)
	stale := filepath.Join(dir, fmt.Sprintf("%s%d.123", prefix, dead.Process.Pid))
	live := filepath.Join(dir, fmt.Sprintf("%s%d.456", prefix, os.Getppid()))
	other := filepath.Join(dir, fmt.Sprintf("%s%d.789", exportTempPrefix(filepath.Join(dir, "other")), dead.Process.Pid))
	// an export to big.out.2024 whose temporary name reads, after big.out's
	// prefix, as a dead "pid" 2024... and then its live writer's pid
	longer := filepath.Join(dir, fmt.Sprintf("%s%d.%d.42", prefix, dead.Process.Pid, os.Getppid()))
	for _, p := range []string{stale, live, other, longer} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := writeWhole(dest, strings.NewReader("whole"), 0o644, time.Time{}, atomicfile.Replace); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("the killed export's temporary file is still there: %v", err)
	}
	for _, p := range []string{live, other, longer} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(dest); string(b) != "whole" {
		t.Errorf("dest = %q", b)
	}
}
