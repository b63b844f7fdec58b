package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/lock"
)

// TestSecondCommandWaitsAndSucceeds: while another command holds the state
// directory, a second one waits, says for what, and succeeds once it is free.
func TestSecondCommandWaitsAndSucceeds(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, sharedRootfs(t))
	setupBase(w)
	held, err := lock.Acquire(context.Background(), filepath.Join(w.dir, "state", "lock"), "close docs", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "ls")
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	held.Release()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("second command: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "waiting for another spillway command (pid") || !strings.Contains(errb.String(), "close docs") {
		t.Fatalf("stderr %q does not say what it waits for", errb.String())
	}
	if !strings.Contains(out.String(), "docs") {
		t.Fatalf("ls after waiting: %q", out.String())
	}
	// With a short --lock-timeout it gives up, naming the holder.
	held, err = lock.Acquire(context.Background(), filepath.Join(w.dir, "state", "lock"), "import big", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	r := w.sw(nil, "--lock-timeout", "200ms", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "import big") {
		t.Fatalf("timeout: exit %d %q", r.code, r.stderr)
	}
}

// TestWaitNamesRootHolderOnce: a holder of ROOT/lock that writes nothing
// into it (a shared holder, or flock(1)) is named by its pid and command
// from /proc/locks, once, in the wait and in the timeout's error; with
// ROOT/locks there or not.
func TestWaitNamesRootHolderOnce(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, "")
	w.must("ls")
	for _, locks := range []bool{false, true} {
		if locks {
			if err := os.MkdirAll(filepath.Join(w.dir, "state", "locks"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.OpenFile(filepath.Join(w.dir, "state", "lock"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		r := w.sw(nil, "--lock-timeout", "300ms", "ls")
		f.Close()
		holder := fmt.Sprintf("(pid %d: ", os.Getpid())
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 1 || len(lines) != 2 || strings.Count(r.stderr, "another spillway command") != 2 ||
			!strings.HasPrefix(lines[0], "spillway: waiting for another spillway command "+holder) ||
			!strings.HasPrefix(lines[1], "spillway: another spillway command holds ") || !strings.Contains(lines[1], holder) {
			t.Errorf("locks/ %v: exit %d, stderr:\n%s", locks, r.code, r.stderr)
		}
	}
}
