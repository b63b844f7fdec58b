package persist

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// heldPastScenario: a file held back for review (review before) in
// session 1; session 2, which never saw it, creates its directory again
// with another file; then both are approved.
func heldPastScenario(t *testing.T, f *fixture) {
	f.except(func(x *exceptions.Exception) { x.Review = change.ReviewBefore }, "/home/user/held/**")
	root := f.open()
	write(t, root, "home/user/held/a.txt", "a", 0o644)
	f.close()
	root = f.open()
	if _, err := os.Lstat(filepath.Join(root, "home/user/held")); err == nil {
		t.Fatal("a directory held back for review is in the next session")
	}
	write(t, root, "home/user/held/b.txt", "b", 0o644)
	f.close()
	if _, err := f.e.ApproveAll(f.ctx, "docs", ""); err != nil {
		t.Fatal(err)
	}
}

// TestHeldPastNewDirectory: an approved file stays in the persisted state
// (listing, counters, the next open) when a later session that could not
// see it created its directory again.
func TestHeldPastNewDirectory(t *testing.T) {
	f := newFixture(t, "overlayfs")
	heldPastScenario(t, f)
	st, c := stateAndCounts(t, f)
	for _, p := range []string{"/home/user/held/a.txt", "/home/user/held/b.txt"} {
		if st[p] == nil {
			t.Errorf("%s is not in the persisted state", p)
		}
	}
	if c.Files != 2 {
		t.Errorf("counters say %d files, want 2", c.Files)
	}
	assertHeldBoth(t, f)
}

// TestHeldPastFixesOlderLedger: a ledger whose counters and layers
// followed the old rule (a.txt left out) has them put right once, by the
// first command, which names the sandbox.
func TestHeldPastFixesOlderLedger(t *testing.T) {
	f := newFixture(t, "overlayfs")
	heldPastScenario(t, f)
	f.open() // builds the layers of the generation
	f.close()
	// What an older spillway left: counters without a.txt, no marks.
	pretendOlderLedger(t, f, store.Counts{Files: 1, Bytes: 1}, nil)
	var warned []string
	f.e.Close()
	f.openEnvWarn(func(s string) { warned = append(warned, s) })
	if len(warned) != 1 {
		t.Fatalf("warnings %q, want one naming docs", warned)
	}
	keys, err := f.e.snap.Keys(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(k) > len(sandboxKeyPrefix("docs")) && k[:len(sandboxKeyPrefix("docs"))] == sandboxKeyPrefix("docs") {
			t.Errorf("layer %s kept: the next open would use it", k)
		}
	}
	problems, err := f.e.Check(f.ctx)
	if err != nil || len(problems) > 0 {
		t.Errorf("check: %v, %v", problems, err)
	}
	warned = nil
	f.e.Close()
	f.openEnvWarn(func(s string) { warned = append(warned, s) })
	if len(warned) != 0 {
		t.Errorf("the second command warned again: %q", warned)
	}
}

// openEnvWarn opens the state directory again with warn told each warning.
func (f *fixture) openEnvWarn(warn func(string)) {
	f.t.Helper()
	e, err := OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state"), LockTimeout: 5 * time.Second, Warn: warn})
	if err != nil {
		f.t.Fatal(err)
	}
	f.e = e
}

// TestHeldPastApprovedWhileOpen: approved while the later session is open
// (a decision takes effect at the next open, so that session never saw
// the file either), the file stays when that session's close records its
// new directory.
func TestHeldPastApprovedWhileOpen(t *testing.T) {
	f := newFixture(t, "overlayfs")
	f.except(func(x *exceptions.Exception) { x.Review = change.ReviewBefore }, "/home/user/held/**")
	root := f.open()
	write(t, root, "home/user/held/a.txt", "a", 0o644)
	f.close()
	root = f.open()
	if _, err := f.e.ApproveAll(f.ctx, "docs", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "home/user/held")); err == nil {
		t.Fatal("a decision made while open reached the open root")
	}
	write(t, root, "home/user/held/b.txt", "b", 0o644)
	f.close()
	if _, err := f.e.ApproveAll(f.ctx, "docs", ""); err != nil {
		t.Fatal(err)
	}
	assertHeldBoth(t, f)
}

// TestHeldPastWaitsForOpenSandbox: a sandbox open on this host while the
// fix runs keeps its layers (they are its root's lowers) and is marked
// waiting; once it is closed, the next command drops them, and from then on
// commands look at nothing but the marks.
func TestHeldPastWaitsForOpenSandbox(t *testing.T) {
	f := newFixture(t, "overlayfs")
	heldPastScenario(t, f)
	f.open() // builds the layers, and stays open
	if err := f.e.store.Update(func(tx *store.Tx) error {
		return errors.Join(tx.DeleteMeta(heldPastMeta), tx.DeleteMeta(f.e.heldPastLayersMeta()))
	}); err != nil {
		t.Fatal(err)
	}
	layers := func() int {
		keys, err := f.e.snap.Keys(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, k := range keys {
			if strings.HasPrefix(k, sandboxKeyPrefix("docs")+"gen/") {
				n++
			}
		}
		return n
	}
	mark := func() string {
		var v string
		f.e.store.View(func(tx *store.Tx) (err error) { v, _, err = tx.GetMeta(f.e.heldPastLayersMeta()); return err })
		return v
	}
	f.e.Close()
	f.openEnvWarn(nil)
	if mark() != "waiting" || layers() == 0 {
		t.Fatalf("with docs open: mark %q, %d layers; want waiting and its layers kept", mark(), layers())
	}
	f.close()
	f.e.Close()
	f.openEnvWarn(nil)
	if mark() != "1" || layers() != 0 {
		t.Fatalf("after docs closed: mark %q, %d layers; want 1 and none", mark(), layers())
	}
}

// assertHeldBoth checks that the next open of docs has both held/a.txt and
// held/b.txt, and that check finds nothing wrong.
func assertHeldBoth(t *testing.T, f *fixture) {
	t.Helper()
	root := f.open()
	for _, n := range []string{"a.txt", "b.txt"} {
		if _, err := os.Lstat(filepath.Join(root, "home/user/held", n)); err != nil {
			t.Errorf("the next open: %v", err)
		}
	}
	f.close()
	problems, err := f.e.Check(f.ctx)
	if err != nil || len(problems) > 0 {
		t.Errorf("check: %v, %v", problems, err)
	}
}

// TestHeldPastDeletedInBetween: a file held back for review whose
// directory a later session deleted stays gone when it is approved while a
// still later session, which creates the directory again, is open: the
// delete came after the file, and the same decisions made between the two
// sessions give the same state.
func TestHeldPastDeletedInBetween(t *testing.T) {
	for _, whileOpen := range []bool{true, false} {
		name := "approved while the last session is open"
		if !whileOpen {
			name = "approved before it opened"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, "overlayfs")
			deletedInBetween(t, f, whileOpen)
			st, c := stateAndCounts(t, f)
			if st["/home/user/held/a.txt"] != nil || st["/home/user/held/b.txt"] == nil {
				t.Errorf("state: a.txt %v, b.txt %v; want only b.txt", st["/home/user/held/a.txt"], st["/home/user/held/b.txt"])
			}
			if c.Files != 1 {
				t.Errorf("counters say %d files, want 1", c.Files)
			}
			root := f.open()
			if _, err := os.Lstat(filepath.Join(root, "home/user/held/a.txt")); err == nil {
				t.Error("the next open has a.txt, deleted after it was written")
			}
			f.close()
			if problems, err := f.e.Check(f.ctx); err != nil || len(problems) > 0 {
				t.Errorf("check: %v, %v", problems, err)
			}
		})
	}
}

// stateAndCounts returns docs's persisted state and its counters.
func stateAndCounts(t *testing.T, f *fixture) (State, store.Counts) {
	t.Helper()
	var st State
	var c store.Counts
	if err := f.e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		if st, err = LoadState(f.ctx, tx, sb); err != nil {
			return err
		}
		c, err = tx.CountsAt("docs", sb.Generation)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st, c
}

// deletedInBetween: a.txt held back for review in session 1, its directory
// deleted by session 2, made again with b.txt by session 3; a.txt approved
// while session 3 is open (whileOpen) or before it opened.
func deletedInBetween(t *testing.T, f *fixture, whileOpen bool) {
	t.Helper()
	f.except(func(x *exceptions.Exception) { x.Review = change.ReviewBefore }, "/home/user/held/a.txt")
	f.except(nil, "/home/user/held/**")
	root := f.open()
	write(t, root, "home/user/held/a.txt", "a", 0o644)
	f.close()
	root = f.open()
	must(t, os.RemoveAll(filepath.Join(root, "home/user/held")))
	f.close()
	if !whileOpen {
		if _, err := f.e.ApproveAll(f.ctx, "docs", ""); err != nil {
			t.Fatal(err)
		}
	}
	root = f.open()
	if whileOpen {
		if _, err := f.e.ApproveAll(f.ctx, "docs", ""); err != nil {
			t.Fatal(err)
		}
	}
	write(t, root, "home/user/held/b.txt", "b", 0o644)
	f.close()
}

// TestHeldPastFixesLedgerOfTheNextRule: a ledger the release before
// removedBetween fixed (its marks set, its counters and layers keeping
// a.txt) is put right once more by the first command: counters recounted,
// this host's layers dropped, the sandbox named.
func TestHeldPastFixesLedgerOfTheNextRule(t *testing.T) {
	f := newFixture(t, "overlayfs")
	deletedInBetween(t, f, true)
	f.open() // builds the layers of the generation
	f.close()
	// What the release before left: counters with a.txt, its own marks.
	pretendOlderLedger(t, f, store.Counts{Files: 2, Bytes: 2}, []string{"rule/held-past", "rule/held-past-layers/" + f.e.hostID})
	var warned []string
	f.e.Close()
	f.openEnvWarn(func(s string) { warned = append(warned, s) })
	if len(warned) != 1 || !strings.Contains(warned[0], "sandbox docs:") {
		t.Fatalf("warnings %q, want one naming docs", warned)
	}
	keys, err := f.e.snap.Keys(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, sandboxKeyPrefix("docs")) {
			t.Errorf("layer %s kept: the next open would use it", k)
		}
	}
	if problems, err := f.e.Check(f.ctx); err != nil || len(problems) > 0 {
		t.Errorf("check: %v, %v", problems, err)
	}
	root := f.open()
	if _, err := os.Lstat(filepath.Join(root, "home/user/held/a.txt")); err == nil {
		t.Error("the next open has a.txt, deleted after it was written")
	}
	f.close()
}

// pretendOlderLedger makes docs's ledger what an older spillway left:
// counters c at its generation, none of today's held-past marks, and
// marks (set to "1").
func pretendOlderLedger(t *testing.T, f *fixture, c store.Counts, marks []string) {
	t.Helper()
	if err := f.e.store.Update(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		if err := tx.SetCounts("docs", sb.Generation, c); err != nil {
			return err
		}
		for _, k := range []string{heldPastMeta, f.e.heldPastLayersMeta()} {
			if err := tx.DeleteMeta(k); err != nil {
				return err
			}
		}
		for _, k := range marks {
			if err := tx.PutMeta(k, "1"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
