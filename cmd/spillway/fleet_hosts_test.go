package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/store"
)

// fleetHosts are two hosts of one fleet: h1 on w's root, h2 on a root of
// its own, sharing the ledger and one blob directory.
type fleetHosts struct {
	h1, h2 []string // each host's environment
	h2root string
	t      *testing.T
	w      *world
}

// twoHostsOn makes h1 and h2 share the ledger at url; t's cleanup
// unmounts what a failed run left mounted on either.
func twoHostsOn(t *testing.T, w *world, url string) *fleetHosts {
	shared := []string{"SPILLWAY_STORE=" + url, "SPILLWAY_BLOBS=dir://" + filepath.Join(w.dir, "blobs")}
	f := &fleetHosts{t: t, w: w, h2root: filepath.Join(w.dir, "h2")}
	f.h1 = append([]string{"SPILLWAY_HOST_ID=h1"}, shared...)
	f.h2 = append([]string{"SPILLWAY_HOST_ID=h2", "SPILLWAY_ROOT=" + f.h2root}, shared...)
	t.Cleanup(func() {
		for _, m := range []string{w.mnt(""), f.h2mnt("")} {
			exec.Command("umount", m).Run() // a failed run's leftover only
		}
	})
	return f
}

// h2mnt is where h2 mounts sandbox docs, and p in it.
func (f *fleetHosts) h2mnt(p string) string { return filepath.Join(f.h2root, "mnt", "docs", p) }

// must runs spillway as the host of env and fails the test unless it
// exits 0.
func (f *fleetHosts) must(env []string, args ...string) string {
	f.t.Helper()
	r := f.w.sw(env, args...)
	if r.code != 0 || r.killed {
		f.t.Fatalf("spillway %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// heldClose is a `spillway close docs` started while the test holds the
// row of the sandbox's audit-chain head locked: only the commit writes
// it, so the close waits in its commit's last round trip, the one that
// carries COMMIT.
type heldClose struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
	lock      pgx.Tx // the lock's transaction; Rollback lets the commit go
}

// closeBehindLock starts h's close of docs (env: the host's) with the
// audit head locked through lockURL (a connection straight to the
// server), and returns once the close waits on the lock. t's cleanup
// kills the close and drops the lock's connection.
func closeBehindLock(t *testing.T, w *world, lockURL string, env []string) *heldClose {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, lockURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	h := &heldClose{}
	if h.lock, err = conn.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.lock.Exec(ctx, `SELECT 1 FROM kv WHERE k = $1 FOR UPDATE`, store.AuditChainHeadKey("docs")); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(os.Args[0], "close", "docs")
	h.cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(w.dir, "state"), "SPILLWAY_NO_PROGRESS=1")
	h.cmd.Env = append(h.cmd.Env, env...)
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.errb
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})
	waitForLockWaiter(t, lockURL, h.cmd)
	return h
}
