package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/spillway/spillway/internal/testns"
	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/snapshot"
)

func TestMain(m *testing.M) {
	// The crash tests run this binary as spillway itself.
	if os.Getenv("SPILLWAY_TEST_MAIN") == "1" {
		os.Exit(Main(append([]string{"spillway"}, os.Args[1:]...), os.Stdin, os.Stdout, os.Stderr))
	}
	testscript.Main(m, map[string]func(){
		"spillway": func() { os.Exit(Main(os.Args, os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// requireRoot fails (never skips) when the tests cannot mount.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests mount overlay filesystems and need root (CI runs them as root)")
	}
}

// TestScripts runs the CLI scripts in testdata/*.txtar. Each gets a fresh
// state directory ($SPILLWAY_ROOT) and a busybox rootfs in $WORK/busybox.
func TestScripts(t *testing.T) {
	requireRoot(t)
	testscript.Run(t, scriptParams("testdata"))
}

// TestScriptsAlone runs the scripts of testdata/alone one at a time, with
// no other script running: close_busy.txtar names every process that holds
// a sandbox's mount, and a runc that another script starts at that moment
// copies every host mount into its new namespace, so it would (rightly) be
// named too.
//
// They also run one after the other: each starts holders of its own
// sandbox's mount, and a holder in a mount namespace of its own made by
// one (unshare -m in close_holder_detached_ns.txtar) copies the mounts of
// the others, and would be named by their closes.
func TestScriptsAlone(t *testing.T) {
	requireRoot(t)
	files, err := filepath.Glob(filepath.Join("testdata", "alone", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		// t.Run returns once the script's (parallel) subtest is done.
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			p := scriptParams(filepath.Join("testdata", "alone"))
			p.Dir, p.Files = "", []string{f}
			testscript.Run(t, p)
		})
	}
}

// scriptParams is how the CLI scripts in dir run.
func scriptParams(dir string) testscript.Params {
	return testscript.Params{
		Dir:                 dir,
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SPILLWAY_ROOT", filepath.Join(env.WorkDir, "state"))
			env.Setenv("SPILLWAY_NO_PROGRESS", "1")
			env.Setenv("NO_COLOR", "1")
			// A holder in a mount namespace of its own (close_busy.txtar)
			// keeps only its own sandbox's mount.
			env.Setenv("NSHOLD", testns.Script)
			env.Setenv("NSHOLD_UNDER", os.TempDir())
			// Scripts may end with sandboxes open: unmount them so the
			// work directory can go and nothing stays mounted on the host.
			work := env.WorkDir
			env.Defer(func() {
				mounts, _ := snapshot.MountsUnder(work)
				for i := len(mounts) - 1; i >= 0; i-- {
					snapshot.Unmount(mounts[i])
				}
			})
			return testrootfs.Build(filepath.Join(env.WorkDir, "busybox"))
		},
		Cmds: scriptCmds, UpdateScripts: os.Getenv("SPILLWAY_UPDATE_SCRIPTS") != "",
	}
}
