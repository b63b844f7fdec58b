package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// idsOf reads the record ids of `review ls SANDBOX --json`.
func (w lockWorld) idsOf(sandbox string) []string {
	w.t.Helper()
	var recs []struct{ ID uint64 }
	if err := json.Unmarshal([]byte(w.ok("review", "ls", sandbox, "--json")), &recs); err != nil {
		w.t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, strconv.FormatUint(r.ID, 10))
	}
	if len(ids) == 0 {
		w.t.Fatalf("%s has nothing to review", sandbox)
	}
	return ids
}

// exceptionOf returns the id of sandbox's one exception.
func (w lockWorld) exceptionOf(sandbox string) string {
	w.t.Helper()
	var xs []struct{ ID string }
	if err := json.Unmarshal([]byte(w.ok("exception", "ls", sandbox, "--json")), &xs); err != nil || len(xs) != 1 {
		w.t.Fatalf("exception ls %s: %v %v", sandbox, xs, err)
	}
	return xs[0].ID
}

// TestLockDecisionsTakeSandboxLock: review decisions and exception revoke
// take the sandbox's lock: while docs's close is held, a decision about
// docs waits for it (and times out naming it), one about b does not; once
// the close is done the same decisions go through.
func TestLockDecisionsTakeSandboxLock(t *testing.T) {
	requireRoot(t)
	w := lockWorld{newWorld(t, sharedRootfs(t)), nil}
	setupTwo(w)
	w.ok("close", "docs")
	docsIDs, bIDs := w.idsOf("docs"), w.idsOf("b")
	w.ok("open", "docs")
	docs := w.writeDocs(2)
	finish := w.paused("close.parked", "close", "docs")
	w.refused("close docs", "review", "approve", docsIDs[0])
	w.refused("close docs", "review", "reject", docsIDs[1], "--reason", "no")
	w.refused("close docs", "review", "approve", "--all", "docs")
	w.refused("close docs", "review", "approve", bIDs[0], docsIDs[0])
	w.refused("close docs", "exception", "revoke", w.exceptionOf("docs"), "--reason", "done", "--purge")
	w.prompt("review", "approve", bIDs[0])
	if r := finish(); r.code != 0 {
		t.Fatalf("held close: exit %d\n%s", r.code, r.stderr)
	}
	w.ok("review", "approve", docsIDs[0])
	w.ok("review", "reject", docsIDs[1], "--reason", "no")
	w.ok("check")
	w.ok("audit", "verify")
	for p, content := range docs {
		if got := w.ok("persisted", "cat", "docs", p); got != content {
			t.Errorf("persisted cat docs %s = %q, want %q", p, got, content)
		}
	}
}

// TestLockFilesRemoved: rm removes the sandbox's lock file; gc removes
// those of names the ledger does not have (a command about a name that
// never existed leaves one) and keeps the others.
func TestLockFilesRemoved(t *testing.T) {
	requireRoot(t)
	w := lockWorld{newWorld(t, sharedRootfs(t)), nil}
	setupTwo(w)
	w.ok("close", "docs")
	locks := filepath.Join(w.dir, "state", "locks")
	exists := func(n string) bool {
		_, err := os.Lstat(filepath.Join(locks, n))
		return err == nil
	}
	if !exists("b") || !exists("docs") {
		t.Fatal("no lock files for b and docs")
	}
	w.ok("rm", "b")
	if exists("b") {
		t.Fatal("rm b left locks/b")
	}
	if r := w.run("open", "nosuch"); r.code == 0 {
		t.Fatal("open of a sandbox that does not exist succeeded")
	}
	if !exists("nosuch") {
		t.Fatal("open nosuch left no lock file (the test needs one)")
	}
	w.ok("gc")
	if exists("nosuch") {
		t.Fatal("gc left the lock file of a sandbox that does not exist")
	}
	if !exists("docs") {
		t.Fatal("gc removed the lock file of docs, which exists")
	}
	w.ok("open", "docs")
	w.ok("close", "docs")
	w.ok("check")
}

// TestLockExportParked: while `persisted export docs / -` streams into a
// pipe nobody reads, an open and a close of b finish at once: the export
// does not hold the ledger lock while it reads blobs.
func TestLockExportParked(t *testing.T) {
	requireRoot(t)
	w := lockWorld{newWorld(t, sharedRootfs(t)), nil}
	setupTwo(w)
	// More than the export's 1 MiB buffer and the pipe's 64 KiB.
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(w.mnt("/home/user/Documents/big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	w.ok("close", "docs")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(os.Args[0], "persisted", "export", "docs", "/", "-")
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"), "SPILLWAY_NO_PROGRESS=1")
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	// Streaming: the pipe is full and the export blocked writing to it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 64<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the export never filled the pipe (%d bytes)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	w.prompt("open", "b")
	w.prompt("close", "b")
	w.prompt("persisted", "cat", "b", "/home/user/Documents/b.txt")
	n, _ := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
	if n < 64<<10 {
		t.Fatalf("the export was not held while b opened (%d bytes in the pipe)", n)
	}
}

// TestLockImportPerImage: an import holds its image's lock, not the
// root: while the import of base2 is held in its copy, another image's
// import, an open and a close run at once; a second import of base2 waits
// for the first (and times out naming it); gc waits too.
func TestLockImportPerImage(t *testing.T) {
	requireRoot(t)
	w := lockWorld{newWorld(t, sharedRootfs(t)), nil}
	setupTwo(w)
	finish := w.paused("import.parked", "image", "import", "base2", w.rootfs)
	w.prompt("image", "import", "base3", w.rootfs)
	w.prompt("close", "docs")
	w.prompt("open", "b")
	w.prompt("close", "b")
	w.refused("import base2", "image", "import", "base2", w.rootfs)
	w.refused("import base2", "gc")
	if r := finish(); r.code != 0 {
		t.Fatalf("held import: exit %d\n%s", r.code, r.stderr)
	}
	out := w.ok("image", "ls")
	for _, im := range []string{"base2", "base3"} {
		if !strings.Contains(out, im) {
			t.Fatalf("image ls lacks %s:\n%s", im, out)
		}
	}
	if _, err := os.Lstat(filepath.Join(w.dir, "state", "locks", "_image.base2")); err != nil {
		t.Fatalf("no image lock file: %v", err)
	}
	w.ok("create", "c", "--image", "base2")
	w.ok("open", "c")
	w.ok("rm", "--force", "c")
	w.ok("check")
	w.ok("audit", "verify")
}
