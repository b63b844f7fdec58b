package main

import (
	"os/exec"
	"testing"
)

// TestRuntimeInstalled fails (never skips) when the run_*.txtar scripts
// cannot run containers, and says how to fix it.
func TestRuntimeInstalled(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc is not installed: the run tests need it (apt-get install -y runc; scripts/test.sh does)")
	}
}
