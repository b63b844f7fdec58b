package persist

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/store"
)

// A closed sandbox's row whose snapshot names another sandbox's open root
// on the victim: the victim's next command on it (open) finishes a close
// that crashed before its leftovers moved to the recovery area, and moves
// the upper directory of the session's own snapshot only, never the one
// the row names (it moved docs' unsaved work into the other sandbox's
// recovery area, out of docs' root).
func TestForgedClosedRowSnapshotRecoveryMove(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	if err := h1.e.CreateSandbox("other", "base"); err != nil {
		t.Fatal(err)
	}
	// other: a session closed with a discarded change (an entry of its
	// recovery area), then the area's tree removed as if the close had
	// crashed before moving the root's upper directory there.
	o, err := h2.e.OpenSandbox(h2.ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	write(t, o.Path, "/tmp/scratch", "discarded\n", 0o644)
	if _, err := h2.e.CloseSandbox(h2.ctx, "other", CloseOptions{}); err != nil {
		t.Fatal(err)
	}
	var n uint64
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("other")
		n = sb.Session
		return err
	})
	tree := filepath.Join(h2.e.sessionDir("other", n), treeDir)
	if _, err := os.Lstat(tree); err != nil {
		t.Fatalf("the close kept no tree of session %d of other: %v", n, err)
	}
	if err := os.RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	// docs open on the victim, with unsaved work.
	d, err := h2.e.OpenSandbox(h2.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.close()
	write(t, d.Path, "/home/user/Documents/unsaved.txt", "work in progress\n", 0o644)
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		docs, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		sb, err := tx.GetSandbox("other")
		if err != nil {
			return err
		}
		sb.Snapshot = docs.Snapshot
		return tx.PutSandbox(sb)
	})
	if _, err := h2.e.OpenSandbox(h2.ctx, "other"); err != nil {
		t.Logf("open other: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(tree, "home/user/Documents/unsaved.txt")); err == nil {
		t.Error("docs' unsaved file was moved into other's recovery area")
	}
	mounts, err := h2.e.snap.Mounts(h2.ctx, sessionKey("docs", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		for _, opt := range m.Options {
			if len(opt) > 9 && opt[:9] == "upperdir=" {
				if b, err := os.ReadFile(filepath.Join(opt[9:], "home/user/Documents/unsaved.txt")); err != nil || string(b) != "work in progress\n" {
					t.Errorf("docs' upper directory lost its unsaved file: %q %v", b, err)
				}
			}
		}
	}
}
