package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestFleetCloseDuringPGRestart: PostgreSQL is stopped with `pg_ctl stop
// -m immediate` (a crash: no shutdown checkpoint, every connection cut)
// and started again, at once or after 6 s (longer than the driver's
// retries last), while a close is inside its commit transaction. The
// test holds the row of the sandbox's audit-chain head locked, which only
// the commit writes, so the close waits on it in its last round trip,
// the one that carries COMMIT, when the server goes. So the close cannot
// know whether it committed: it waits for the ledger to answer again,
// reads its session back, finds it still closing and commits again. The
// close succeeds either way; the ledger holds the new generation whole,
// running close again reports it done, `audit verify` and `check` pass.
func TestFleetCloseDuringPGRestart(t *testing.T) {
	requireRoot(t)
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop)
	rootfs := sharedRootfs(t)
	for _, down := range []time.Duration{0, 6 * time.Second} {
		t.Run("down"+down.String(), func(t *testing.T) { closeDuringPGRestart(t, rootfs, down, true) })
	}
	// The same through a PgBouncer in transaction pooling: the pooler
	// outlives the server, so the close's connection to it stays up and
	// the COMMIT's answer is an error the pooler sends.
	t.Run("pgbouncer-transaction", func(t *testing.T) { closeDuringPGRestart(t, rootfs, 6*time.Second, false) })
}

// closeDuringPGRestart is one run of TestFleetCloseDuringPGRestart:
// spillway connected to the server directly, or through PgBouncer.
func closeDuringPGRestart(t *testing.T, rootfs string, down time.Duration, direct bool) {
	w := newWorld(t, rootfs)
	url, err := pgtest.NewDB()
	if err != nil {
		t.Fatal(err)
	}
	// Acknowledged commits must survive the restart (the cluster runs
	// with synchronous_commit off).
	if err := pgtest.SyncCommit(url); err != nil {
		t.Fatal(err)
	}
	storeURL := url
	if !direct {
		u, stop, err := pgtest.BouncerMode(url, "transaction")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		storeURL = u + "&default_query_exec_mode=exec"
	}
	env := []string{"SPILLWAY_STORE=" + storeURL, "SPILLWAY_BLOBS=dir://" + filepath.Join(w.dir, "blobs"), "SPILLWAY_HOST_ID=h1"}
	must := func(args ...string) string {
		t.Helper()
		r := w.sw(env, args...)
		if r.code != 0 || r.killed {
			t.Fatalf("spillway %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	t.Cleanup(func() { exec.Command("umount", w.mnt("")).Run() }) // a failed run's leftover only
	must("image", "import", "base", w.rootfs)
	must("create", "docs", "--image", "base")
	must("exception", "add", "docs", "/home/user/Documents/**", "--reason", "documents")
	must("open", "docs")
	w.writeDocs(1)
	must("close", "docs")
	must("open", "docs")
	v2 := w.writeDocs(2)

	held := closeBehindLock(t, w, url, env)
	cmd, out, errb := held.cmd, &held.out, &held.errb
	if err := pgtest.Restart(down); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	t.Logf("close during the restart: %v\n%s%s", err, out.String(), errb.String())
	if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("close died of a signal: %v", err)
	}
	if err != nil {
		t.Fatalf("close during a restart of %s: %v: it should have read the outcome back once the database answered and committed", down, err)
	}
	// Running close again reports the close done.
	if r := w.sw(env, "close", "docs"); r.code != 0 {
		t.Fatalf("close again after the restart: exit %d %s", r.code, r.stderr)
	}
	st := docsOf(t, must("persisted", "ls", "docs", "--json"))
	if len(st) != len(v2) || !sameContent(w, env, st, v2) {
		t.Fatalf("after the restart the ledger holds %v, want version 2 of %d documents", st, len(v2))
	}
	must("audit", "verify")
	must("check")
	must("open", "docs")
	for p, content := range v2 {
		if b, err := os.ReadFile(w.mnt(p)); err != nil || string(b) != content {
			t.Errorf("reopened %s = %q (%v), want %q", p, b, err, content)
		}
	}
	must("close", "docs")
}

// sameContent says whether the persisted files st (path → digest) have
// exactly the contents want.
func sameContent(w *world, env []string, st, want map[string]string) bool {
	for p, content := range want {
		if _, ok := st[p]; !ok {
			return false
		}
		r := w.sw(env, "persisted", "cat", "docs", p)
		if r.code != 0 || r.stdout != content {
			return false
		}
	}
	return true
}

// waitForLockWaiter waits until a session of the database waits for a row
// lock (the close's commit behind the test's lock), failing t after 60 s
// or when cmd ends first.
func waitForLockWaiter(t *testing.T, url string, cmd *exec.Cmd) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if cmd.ProcessState != nil {
			t.Fatal("the close ended before it reached its commit")
		}
	}
	cmd.Process.Kill()
	t.Fatal("the close never waited for the locked row")
}
