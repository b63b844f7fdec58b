package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/vm/proto"
)

// TestCheckInitProto: an init binary without this protocol's marker (an
// older spillway's) is refused; the one built from this tree passes.
func TestCheckInitProto(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old-init")
	if err := os.WriteFile(old, []byte("an init of spillway-vminit protocol 2\x00"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkInitProto(old); err == nil || !strings.Contains(err.Error(), "is of another spillway") {
		t.Fatalf("an init of protocol 2: %v, want it refused", err)
	}
	bin := filepath.Join(dir, InitName)
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/spillway-vminit").CombinedOutput(); err != nil {
		t.Fatalf("build the init: %v: %s", err, out)
	}
	if err := checkInitProto(bin); err != nil {
		t.Fatalf("the init of this tree (%s): %v", proto.InitMarker, err)
	}
}
