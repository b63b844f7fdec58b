package persist

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/holders"
	"github.com/spillway/spillway/internal/testns"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// holdRoot starts a process that holds the root in the way kind says and
// returns its pid; the process is killed by the returned function (and at
// the end of the test).
func holdRoot(t *testing.T, root, kind string) (int, func()) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	var cmd *exec.Cmd
	switch kind {
	case holders.Cwd:
		cmd = exec.Command("sh", "-c", `touch "$0"; exec sleep 60`, ready)
		cmd.Dir = filepath.Join(root, "home/user")
	case holders.File:
		cmd = exec.Command("sh", "-c", `exec 3<"$1"; touch "$0"; exec sleep 60`, ready, filepath.Join(root, "etc/passwd"))
	case holders.Mount:
		// A copy of the mount table in a mount namespace of its own.
		cmd = testns.Command(root, ready)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	t.Cleanup(stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("holder did not start")
		}
	}
	return cmd.Process.Pid, stop
}

// busyHolders returns the holders a BusyError names for pid.
func busyHolders(t *testing.T, err error, pid int) (*BusyError, []holders.Holder) {
	t.Helper()
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("error %v (%T), want a BusyError", err, err)
	}
	var out []holders.Holder
	for _, h := range be.Holders {
		if h.PID == pid {
			out = append(out, h)
		}
	}
	return be, out
}

// TestCloseRefusesHolders: a working directory, an open file or a mount in
// another namespace makes close change nothing and name the holder, while
// every command about another sandbox keeps working; once the holder is
// gone, close persists what the session made.
func TestCloseRefusesHolders(t *testing.T) {
	defer func(w time.Duration) { holderWait = w }(holderWait)
	holderWait = 100 * time.Millisecond
	for _, kind := range []string{holders.Cwd, holders.File, holders.Mount} {
		t.Run(strings.Fields(kind)[0], func(t *testing.T) {
			f := newFixture(t, snapshot.KindOverlay)
			f.except(nil, "/home/user/Documents/**")
			if err := f.e.CreateSandbox("other", "base"); err != nil {
				t.Fatal(err)
			}
			root := f.open()
			write(t, root, "home/user/Documents/letter.txt", "dear", 0o644)
			pid, stop := holdRoot(t, root, kind)

			f.reopenEnv() // a new command: opening the state directory works
			_, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
			be, hs := busyHolders(t, err, pid)
			if len(hs) == 0 || !strings.HasPrefix(hs[0].What, kind) {
				t.Fatalf("holders %+v, want pid %d holding a %s", be.Holders, pid, kind)
			}
			msg := err.Error()
			if !strings.Contains(msg, "nothing changed, it stays open") || !strings.Contains(msg, hs[0].Describe(func(s string) string { return s })) {
				t.Fatalf("message %q does not name the holder", msg)
			}
			sb, err := f.e.getSandbox("docs")
			if err != nil || sb.State != store.StateOpen {
				t.Fatalf("sandbox after refused close: %+v, %v; want open", sb, err)
			}
			if ok, _ := snapshot.IsMounted(root); !ok {
				t.Fatal("refused close unmounted the root")
			}
			if b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/letter.txt")); err != nil || string(b) != "dear" {
				t.Fatalf("the session's change after a refused close: %q, %v", b, err)
			}

			// Other sandboxes are not affected.
			f.reopenEnv()
			if _, err := f.e.Sandboxes(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := f.e.CreateSandbox("third", "base"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.e.OpenSandbox(f.ctx, "other"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.e.CloseSandbox(f.ctx, "other", CloseOptions{}); err != nil {
				t.Fatal(err)
			}
			problems, err := f.e.Check(f.ctx)
			if err != nil || len(problems) != 0 {
				t.Fatalf("check with an open, held sandbox: %q, %v", problems, err)
			}

			stop()
			sum := f.close()
			if !persisted(sum, "/home/user/Documents/letter.txt") {
				t.Fatalf("close after the holder left: %+v", sum)
			}
		})
	}
}

// TestHolderAfterScan: a holder that comes between the scan and the
// unmount makes the unmount fail; close names it and the sandbox is open
// again, its changes intact.
func TestHolderAfterScan(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/Documents/letter.txt", "dear", 0o644)
	pid := 0
	afterScan = func() { pid, _ = holdRoot(t, root, holders.Cwd) }
	defer func() { afterScan = nil }()
	_, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	be, hs := busyHolders(t, err, pid)
	if len(hs) != 1 || hs[0].What != holders.Cwd || be.State != store.StateOpen {
		t.Fatalf("error %v: want pid %d's working directory, sandbox open", err, pid)
	}
	sb, err := f.e.getSandbox("docs")
	if err != nil || sb.State != store.StateOpen {
		t.Fatalf("sandbox %+v, %v; want open again", sb, err)
	}
	var ses *store.Session
	if err := f.e.store.View(func(tx *store.Tx) error {
		ses, err = tx.GetSession("docs", sb.Session)
		return err
	}); err != nil || ses.State != store.StateOpen {
		t.Fatalf("session %+v, %v; want open again", ses, err)
	}
	afterScan = nil
	f.reopenEnv()
	if b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/letter.txt")); err != nil || string(b) != "dear" {
		t.Fatalf("the session's change: %q, %v", b, err)
	}
}

// TestInterruptedCloseHeld: a close that an older build marked closing and
// whose unmount failed gives the holder, not a bare EBUSY; its mount blocks
// nothing else, check reports it, and the next close finishes once the
// holder is gone.
func TestInterruptedCloseHeld(t *testing.T) {
	defer func(w time.Duration) { holderWait = w }(holderWait)
	holderWait = 100 * time.Millisecond
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	if err := f.e.CreateSandbox("other", "base"); err != nil {
		t.Fatal(err)
	}
	root := f.open()
	write(t, root, "home/user/Documents/letter.txt", "dear", 0o644)
	pid, stop := holdRoot(t, root, holders.Cwd)
	sb, err := f.e.getSandbox("docs")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.markClosing(sb); err != nil { // what the older build did
		t.Fatal(err)
	}

	var warnings []string
	if err := f.e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err := OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state"), LockTimeout: 5 * time.Second,
		Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatalf("opening the state directory with a held, closing sandbox: %v", err)
	}
	f.e = e
	if len(warnings) != 0 {
		t.Fatalf("warnings %q: a closing sandbox's root is its close's to unmount", warnings)
	}
	for _, try := range []func() error{
		func() error { _, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{}); return err },
		func() error { _, err := f.e.OpenSandbox(f.ctx, "docs"); return err },
	} {
		err := try()
		if _, hs := busyHolders(t, err, pid); len(hs) != 1 || hs[0].What != holders.Cwd {
			t.Fatalf("error %v does not name pid %d's working directory", err, pid)
		}
		if !strings.Contains(err.Error(), "close was interrupted") {
			t.Fatalf("message %q", err)
		}
	}
	if _, err := f.e.OpenSandbox(f.ctx, "other"); err != nil {
		t.Fatal(err)
	}
	problems, err := f.e.Check(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !containsLine(problems, "sandbox docs: its root is still mounted at "+root, "busy: pid ") {
		t.Fatalf("check %q does not report the busy mount", problems)
	}
	stop()
	sum := f.close()
	if !persisted(sum, "/home/user/Documents/letter.txt") {
		t.Fatalf("finished close: %+v", sum)
	}
}

// TestStaleMountBusy: a stale mount under mnt/ that cannot be removed is
// left in place and reported, and the command goes on.
func TestStaleMountBusy(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	stale := f.e.MountPath("ghost")
	if err := os.MkdirAll(filepath.Join(stale, "home/user"), 0o700); err != nil {
		t.Fatal(err)
	}
	tmpfs := exec.Command("mount", "-t", "tmpfs", "tmpfs", stale)
	if out, err := tmpfs.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(stale, "home/user"), 0o700); err != nil {
		t.Fatal(err)
	}
	pid, stop := holdRoot(t, stale, holders.Cwd)
	var warnings []string
	f.e.Close()
	e, err := OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state"), LockTimeout: 5 * time.Second,
		Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatalf("a busy stale mount failed the command: %v", err)
	}
	f.e = e
	if len(warnings) != 1 || !strings.Contains(warnings[0], "stale mount "+stale+" left in place") || !strings.Contains(warnings[0], "working directory") {
		t.Fatalf("warnings %q, want the busy stale mount named with pid %d", warnings, pid)
	}
	f.open()
	problems, err := f.e.Check(f.ctx)
	if err != nil || !containsLine(problems, "stray mount "+stale, "busy: pid ") {
		t.Fatalf("check %q, %v", problems, err)
	}
	stop()
	f.reopenEnv()
	if ok, _ := snapshot.IsMounted(stale); ok {
		t.Fatal("the stale mount stayed once free")
	}
}

func containsLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}
