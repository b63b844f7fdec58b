package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportDirection runs scripts/check-imports.sh on the tree (which
// must pass) and on a listing with upward imports (which must fail naming
// each one).
func TestImportDirection(t *testing.T) {
	script := filepath.Join("..", "..", "scripts", "check-imports.sh")
	if out, err := exec.Command("bash", script).CombinedOutput(); err != nil {
		t.Fatalf("check-imports on the tree: %v\n%s", err, out)
	}
	const m = "github.com/spillway/spillway/"
	listing := filepath.Join(t.TempDir(), "listing")
	bad := m + "store " + m + "snapshot fmt\n" +
		m + "cmd/spillway " + m + "persist " + m + "store\n" +
		m + "persist " + m + "sandboxrun\n" +
		m + "internal/units " + m + "persist\n" +
		m + "sandboxrun " + m + "cmd/spillway\n"
	if err := os.WriteFile(listing, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", script, listing).CombinedOutput()
	if err == nil {
		t.Fatalf("check-imports passed upward imports:\n%s", out)
	}
	for _, want := range []string{
		"store imports snapshot: store must not import snapshot",
		"cmd/spillway imports store: cmd must not import store",
		"persist imports sandboxrun: persist must not import sandboxrun",
		"internal/units imports persist: internal must not import persist",
		"sandboxrun imports cmd/spillway: sandboxrun must not import cmd",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "cmd/spillway imports persist") {
		t.Errorf("cmd → persist reported:\n%s", out)
	}
}
