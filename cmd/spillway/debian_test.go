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
	testscript.Run(t, debianParams(t, filepath.Join("testdata", "debian")))
}

// TestDebianFleetScripts runs testdata/debian_fleet/*.txtar: the same kind
// of real work roaming between two hosts that share a PostgreSQL ledger
// and a blob directory.
func TestDebianFleetScripts(t *testing.T) {
	requireRoot(t)
	testscript.Run(t, postgresParams(t, debianParams(t, filepath.Join("testdata", "debian_fleet")), true))
}

// debianParams runs the scripts of dir with the Debian image's tarball in
// $DEBIAN_TAR; it fails under CI without one, and skips otherwise.
func debianParams(t *testing.T, dir string) testscript.Params {
	t.Helper()
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
	return testscript.Params{
		Dir:                 dir,
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
	}
}
