package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/spillway/spillway/snapshot"
)

// TestDebianScripts runs testdata/debian/*.txtar: real work (git, sqlite in
// WAL mode, an editor that saves by rename, thousands of documents, many
// sessions) on a real Debian image, which scripts/test.sh builds once with
// mmdebstrap and names in SPILLWAY_DEBIAN_TAR.
func TestDebianScripts(t *testing.T) {
	requireRoot(t)
	tar := os.Getenv("SPILLWAY_DEBIAN_TAR")
	if tar == "" && os.Getenv("CI") != "" {
		t.Fatal("SPILLWAY_DEBIAN_TAR is not set: CI runs scripts/test.sh, which builds the Debian image and sets it")
	}
	if tar == "" {
		t.Skip("SPILLWAY_DEBIAN_TAR is not set: scripts/test.sh builds a Debian image with mmdebstrap and sets it")
	}
	if _, err := os.Stat(tar); err != nil {
		t.Fatalf("SPILLWAY_DEBIAN_TAR: %v", err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "debian"),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SPILLWAY_ROOT", filepath.Join(env.WorkDir, "state"))
			env.Setenv("SPILLWAY_NO_PROGRESS", "1")
			env.Setenv("NO_COLOR", "1")
			env.Setenv("DEBIAN_TAR", tar)
			work := env.WorkDir
			env.Defer(func() {
				mounts, _ := snapshot.MountsUnder(work)
				for i := len(mounts) - 1; i >= 0; i-- {
					snapshot.Unmount(mounts[i])
				}
			})
			return nil
		},
		Cmds: scriptCmds,
	})
}
