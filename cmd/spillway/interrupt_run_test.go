package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInterruptRunClose sends SIGINT to `run --close` while its close
// works (CMD has exited). scripting.md: a command that SIGINT stopped exits
// 130 with "spillway: interrupted", and running close again finishes it.
// A plain `close` does so (TestInterrupt); `run --close` printed "close
// docs: read changes of docs: context canceled" and exited 1 (found by a
// user walkthrough on 30 November 2026).
func TestInterruptRunClose(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, sharedRootfs(t))
	w.must("image", "import", "base", w.rootfs)
	w.must("create", "docs", "--image", "base")
	w.must("exception", "add", "docs", "/home/user/Documents/**", "--reason", "letters")
	w.must("open", "docs")
	if err := os.WriteFile(w.mnt("/home/user/Documents/letter.txt"), []byte("dear sir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// More changes than the one the close is paused at, so that it reads
	// on after the signal.
	for i := range 50 {
		if err := os.WriteFile(w.mnt(fmt.Sprintf("/home/user/Documents/note%02d.txt", i)), []byte("note\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A runtime whose CMD exits 0 at once: the close starts right away.
	rt := filepath.Join(w.dir, "ok-runtime")
	if err := os.WriteFile(rt, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	flag := filepath.Join(w.dir, "paused")
	cmd := exec.Command(os.Args[0], "run", "--close", "docs", "--runtime", rt, "--", "true")
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"), "SPILLWAY_NO_PROGRESS=1",
		"SPILLWAY_FAILPOINT_PAUSE=close.parked:"+flag)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Lstat(flag); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run --close ended before its close read the changes: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("run --close never reached close.parked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	os.Remove(flag)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("run --close ignored SIGINT during its close for 30s")
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != exitInterrupted {
		t.Errorf("run --close interrupted in its close: exit %d, want %d\n%s", code, exitInterrupted, errb.String())
	}
	if got := errb.String(); !strings.HasPrefix(got, "spillway: interrupted: the close of docs stopped; spillway close docs finishes it") || strings.Contains(got, "context canceled") {
		t.Errorf("run --close interrupted in its close: stderr %q, want \"spillway: interrupted\" and the way on", got)
	}
	// Running close again finishes it and keeps the letter.
	w.must("close", "docs")
	if got := w.must("persisted", "cat", "docs", "/home/user/Documents/letter.txt"); got != "dear sir\n" {
		t.Errorf("after the rerun: letter.txt = %q", got)
	}
}
