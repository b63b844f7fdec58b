package persist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// A close whose COMMIT got no answer (the connection to the ledger lost)
// reads the outcome back: committed, it carries on; not committed, it
// commits again. Either way the close takes effect exactly once: one
// generation, one close entry in the audit log.
func TestCloseCommitAnswerLost(t *testing.T) {
	for _, c := range []struct {
		name  string
		after []bool // per commit attempt: lose the answer after committing (true) or before (false)
	}{
		{"after the commit", []bool{true}},
		{"before the commit", []bool{false}},
		{"before then after", []bool{false, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, snapshot.KindOverlay)
			f.except(nil, "/home/user/Documents/**")
			root := f.open()
			write(t, root, "/home/user/Documents/a.txt", "kept\n", 0o644)
			attempts := 0
			loseCommitAnswer = func(step string) (bool, bool) {
				if step != "close" {
					return false, false
				}
				attempts++
				if attempts > len(c.after) {
					return false, false
				}
				return true, c.after[attempts-1]
			}
			defer func() { loseCommitAnswer = nil }()
			sum := f.close()
			loseCommitAnswer = nil
			if sum.Generation != 1 {
				t.Errorf("close reports generation %d, want 1", sum.Generation)
			}
			sb, err := f.e.getSandbox("docs")
			if err != nil {
				t.Fatal(err)
			}
			if sb.Generation != 1 || sb.State != store.StateClosed {
				t.Errorf("sandbox after the close: generation %d, state %s", sb.Generation, sb.State)
			}
			closes := 0
			if err := f.e.ForEachEvent(f.ctx, "docs", func(ev *store.Event) error {
				if ev.Type == "sandbox.close" {
					closes++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if closes != 1 {
				t.Errorf("%d close entries in the audit log, want 1", closes)
			}
			root = f.open()
			if b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/a.txt")); string(b) != "kept\n" {
				t.Errorf("a.txt after the close: %q (%v)", b, err)
			}
			f.close()
		})
	}
}

// When every commit loses its answer, close says so and what to do; the
// sandbox stays closing and the next close finishes it.
func TestCloseCommitAnswerAlwaysLost(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "/home/user/Documents/a.txt", "kept\n", 0o644)
	loseCommitAnswer = func(string) (bool, bool) { return true, false }
	_, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	loseCommitAnswer = nil
	if err == nil || !strings.Contains(err.Error(), "outcome is unknown") {
		t.Fatalf("close with every answer lost: %v", err)
	}
	sb, _ := f.e.getSandbox("docs")
	if sb.State != store.StateClosing || sb.Generation != 0 {
		t.Fatalf("after the failed close: state %s, generation %d", sb.State, sb.Generation)
	}
	sum := f.close()
	if sum.Generation != 1 {
		t.Errorf("the close run again reports generation %d, want 1", sum.Generation)
	}
}

// An open whose COMMIT got no answer reads the session back: committed,
// the open stands (its root mounted, its session this host's); not
// committed, the root is removed and the sandbox stays closed.
func TestOpenCommitAnswerLost(t *testing.T) {
	for _, after := range []bool{true, false} {
		t.Run(map[bool]string{true: "after the commit", false: "before the commit"}[after], func(t *testing.T) {
			f := newFixture(t, snapshot.KindOverlay)
			loseCommitAnswer = func(step string) (bool, bool) { return step == "open", after }
			o, err := f.e.OpenSandbox(f.ctx, "docs")
			loseCommitAnswer = nil
			sb, gerr := f.e.getSandbox("docs")
			if gerr != nil {
				t.Fatal(gerr)
			}
			mounts := mustMounts(t, f.e.root)
			if after {
				if err != nil || sb.State != store.StateOpen || len(mounts) != 1 || o.Path != sb.Path {
					t.Fatalf("open committed but its answer lost: %v; state %s, mounts %v", err, sb.State, mounts)
				}
				f.close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), "outcome is unknown") || sb.State != store.StateClosed || len(mounts) != 0 {
				t.Fatalf("open not committed, its answer lost: %v; state %s, mounts %v", err, sb.State, mounts)
			}
			f.open()
			f.close()
		})
	}
}
