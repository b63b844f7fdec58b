package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/testenv"
)

// TestFleetAgentUnitVerifies: the systemd unit in contrib/ runs `spillway
// fleet agent` and passes `systemd-analyze verify` (with ExecStart
// pointed at this binary, since spillway is not installed here).
func TestFleetAgentUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze is not installed (Debian package systemd): the unit file is not verified")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "spillway-fleet-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	const exec0 = "ExecStart=/usr/local/bin/spillway fleet agent "
	if !strings.Contains(string(unit), "\n"+exec0) {
		t.Fatalf("the unit does not start %q:\n%s", exec0, unit)
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "spillway-fleet-agent.service")
	local := strings.Replace(string(unit), "/usr/local/bin/spillway", self, 1)
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
