package container

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// lookCmd resolves CMD inside the root only: a symlink to a host file that
// the sandbox lacks is not found, however it is spelt.
func TestLookCmd(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("bin/ok", 0o755)
	write("etc/data", 0o644)
	write("usr/bin/data", 0o644)
	write("usr/bin/data2", 0o755)
	for n, target := range map[string]string{"abs": "/usr/bin/env", "climb": "../../../../../../usr/bin/env", "inside": "/bin/ok"} {
		if err := os.Symlink(target, filepath.Join(root, "bin", n)); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for cmd, want := range map[string]int{
		"ok": 0, "/bin/ok": 0, "./bin/ok": 0, "inside": 0, "data2": 0,
		"abs": ExitNotFound, "/bin/climb": ExitNotFound, "nosuch": ExitNotFound, "": ExitNotFound,
		"/etc/data": ExitCannotExec, "/etc": ExitCannotExec, "data": ExitCannotExec,
	} {
		got := 0
		var se *StartError
		if err := lookCmd(root, cmd, env); errors.As(err, &se) {
			got = se.Code
		} else if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		if got != want {
			t.Errorf("%q: %d, want %d", cmd, got, want)
		}
	}
}
