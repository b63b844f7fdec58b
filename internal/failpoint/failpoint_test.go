package failpoint

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKillAtNthHit runs this test binary as a child that hits a point three
// times; the child must die by SIGKILL at the second hit.
func TestKillAtNthHit(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		for range 3 {
			Hit("close.unmounted")
		}
		os.Exit(0)
	}
	log := filepath.Join(t.TempDir(), "hits")
	cmd := exec.Command(os.Args[0], "-test.run=TestKillAtNthHit")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "SPILLWAY_FAILPOINT=close.unmounted:2", "SPILLWAY_FAILPOINT_LOG="+log)
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("child: %v, want death by SIGKILL", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child status %v, want SIGKILL", ws)
	}
	b, _ := os.ReadFile(log)
	if got := strings.Count(string(b), "close.unmounted"); got != 2 {
		t.Fatalf("%d hits logged before the kill, want 2", got)
	}
}

func TestUnregisteredNamePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Hit of an unregistered name did not panic")
		}
	}()
	Hit("no.such.point")
}
