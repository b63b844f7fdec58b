package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lockWorld is a world whose commands all run with extra environment
// (the PostgreSQL store, say).
type lockWorld struct {
	*world
	env []string
}

func (w lockWorld) run(args ...string) result { return w.sw(w.env, args...) }

func (w lockWorld) ok(args ...string) string {
	w.t.Helper()
	r := w.run(args...)
	if r.code != 0 || r.killed {
		w.t.Fatalf("spillway %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// paused starts spillway args in the background, held at failpoint point
// until the returned function is called, which lets it finish and returns
// its result.
func (w lockWorld) paused(point string, args ...string) func() result {
	w.t.Helper()
	flag := filepath.Join(w.dir, "paused-"+point)
	done := make(chan result, 1)
	go func() { done <- w.sw(append(w.env, "SPILLWAY_FAILPOINT_PAUSE="+point+":"+flag), args...) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Lstat(flag); err == nil {
			break
		}
		select {
		case r := <-done:
			w.t.Fatalf("spillway %s ended before %s: exit %d\n%s", strings.Join(args, " "), point, r.code, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("spillway %s never reached %s", strings.Join(args, " "), point)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() result {
		os.Remove(flag)
		return <-done
	}
}

// prompt runs a command that must neither wait nor fail while another
// command works on another sandbox: it gets a short lock timeout.
func (w lockWorld) prompt(args ...string) string {
	w.t.Helper()
	start := time.Now()
	out := w.ok(append([]string{"--lock-timeout", "5s"}, args...)...)
	if d := time.Since(start); d > 4*time.Second {
		w.t.Fatalf("spillway %s took %s beside another sandbox's close", strings.Join(args, " "), d)
	}
	return out
}

// refused runs a command that must wait for holder and give up.
func (w lockWorld) refused(holder string, args ...string) {
	w.t.Helper()
	r := w.run(append([]string{"--lock-timeout", "300ms"}, args...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "waiting for another spillway command (pid") ||
		!strings.Contains(r.stderr, holder) || !strings.Contains(r.stderr, "raise --lock-timeout") {
		w.t.Fatalf("spillway %s beside %q: exit %d %q, want a lock timeout naming it", strings.Join(args, " "), holder, r.code, r.stderr)
	}
}

// setupTwo makes sandboxes docs and b (each keeping Documents), b with a
// persisted file, and docs open with documents to close.
func setupTwo(w lockWorld) map[string]string {
	w.ok("image", "import", "base", w.rootfs)
	for _, sb := range []string{"docs", "b"} {
		w.ok("create", sb, "--image", "base")
		w.ok("exception", "add", sb, "/home/user/Documents/**", "--reason", "documents")
	}
	w.ok("open", "b")
	bdoc := filepath.Join(w.dir, "state", "mnt", "b", "home/user/Documents/b.txt")
	if err := os.WriteFile(bdoc, []byte("b one"), 0o644); err != nil {
		w.t.Fatal(err)
	}
	w.ok("close", "b")
	w.ok("open", "docs")
	return w.writeDocs(1)
}

// testSandboxesDoNotWait: while docs's close is held in its long phase
// (parked), commands on b and read-only commands run at once; another
// command on docs and gc wait for it and time out naming it; the close
// then finishes and everything checks.
func testSandboxesDoNotWait(t *testing.T, env []string) {
	w := lockWorld{newWorld(t, sharedRootfs(t)), env}
	docs := setupTwo(w)
	finish := w.paused("close.parked", "close", "docs")
	w.prompt("open", "b")
	bdoc := filepath.Join(w.dir, "state", "mnt", "b", "home/user/Documents/b.txt")
	if err := os.WriteFile(bdoc, []byte("b two"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.prompt("close", "b")
	if out := w.prompt("ls"); !strings.Contains(out, "docs") || !strings.Contains(out, "b") {
		t.Fatalf("ls: %q", out)
	}
	w.prompt("review", "ls")
	if out := w.prompt("persisted", "cat", "b", "/home/user/Documents/b.txt"); out != "b two" {
		t.Fatalf("persisted cat b: %q", out)
	}
	w.refused("close docs", "close", "docs")
	w.refused("close docs", "gc")
	if r := finish(); r.code != 0 {
		t.Fatalf("held close: exit %d\n%s", r.code, r.stderr)
	}
	if env == nil {
		w.checkInvariants(docs)
	} else {
		w.ok("check")
		w.ok("audit", "verify")
	}
}

func TestLockSandboxesDoNotWait(t *testing.T) {
	requireRoot(t)
	testSandboxesDoNotWait(t, nil)
}

func TestLockSandboxesDoNotWaitPostgres(t *testing.T) {
	requireRoot(t)
	url := pgDB(t)
	testSandboxesDoNotWait(t, []string{"SPILLWAY_STORE=" + url})
}

// TestLockGCExcludesClose: gc runs alone: a close waits for it (naming
// it) and gc waits for a close.
func TestLockGCExcludesClose(t *testing.T) {
	requireRoot(t)
	w := lockWorld{newWorld(t, sharedRootfs(t)), nil}
	setupTwo(w)
	finish := w.paused("gc.committed", "gc")
	w.refused("gc", "close", "docs")
	w.refused("gc", "ls")
	if r := finish(); r.code != 0 {
		t.Fatalf("held gc: exit %d\n%s", r.code, r.stderr)
	}
	w.ok("close", "docs")
}
