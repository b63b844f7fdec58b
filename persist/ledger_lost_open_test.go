package persist

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
)

// TestOpenAfterLedgerRollbackKeepsNewerSessions: the store is backed up
// while sandbox docs is its first incarnation, then docs is removed,
// created again and closed twice (sessions 1 and 2 of the second), and
// the backup is restored: the ledger shows the first incarnation at
// session 1. The open must not take the second incarnation's sessions
// still in the recovery area for an earlier sandbox's and remove them: it
// refuses, keeping them.
func TestOpenAfterLedgerRollbackKeepsNewerSessions(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "/home/user/Documents/old.txt", "old\n", 0o644)
	f.close()
	store, backup := filepath.Join(f.dir, "state", "store"), filepath.Join(f.dir, "store-backup")
	copyDir := func(from, to string) {
		t.Helper()
		os.RemoveAll(to)
		if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	f.e.Close()
	copyDir(store, backup)
	f.openEnv("")
	if err := f.e.RemoveSandbox(f.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.e.CreateSandbox("docs", "base"); err != nil {
		t.Fatal(err)
	}
	f.except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	for _, name := range []string{"new1", "new2"} {
		root = f.open()
		write(t, root, "/home/user/Documents/"+name+".txt", "new work\n", 0o644)
		write(t, root, "/tmp/scratch-"+name, "discarded\n", 0o644)
		f.close()
	}
	before, err := f.e.recoverySessions("docs")
	if err != nil || len(before) == 0 {
		t.Fatalf("the newer sandbox left %d sessions (%v) in the recovery area", len(before), err)
	}
	f.e.Close()
	copyDir(backup, store)
	f.openEnv("")
	_, err = f.e.OpenSandbox(f.ctx, "docs")
	var later *LaterSessionsError
	if !errors.As(err, &later) {
		t.Fatalf("open after the rollback: %v, want a LaterSessionsError", err)
	}
	rss, err := f.e.recoverySessions("docs")
	if err != nil || len(rss) != len(before) {
		t.Fatalf("the recovery area holds %d sessions (%v) after the open, want the newer sandbox's %d", len(rss), err, len(before))
	}
	if len(later.Sessions) != len(before) {
		t.Errorf("the refusal names sessions %v, want the newer sandbox's %d", later.Sessions, len(before))
	}
}
