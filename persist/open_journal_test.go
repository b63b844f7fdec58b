package persist

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// A host evicted while its session is open runs gc before it opens or
// closes the sandbox again: gc keeps the session's root (this host's
// journal names it, whatever the ledger says; before the journal gc took
// it for a stray and the unsaved letter was lost), and the close that
// follows is fenced with the letter kept for recovery.
func TestGCAfterEvictionKeepsTheRoot(t *testing.T) {
	f, _ := evictedWhileOpen(t, "kept for recovery", true)
	freed, err := f.e.GC(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(freed.Snapshots, sessionKey("docs", 1)) {
		t.Fatalf("gc removed the root of this host's unclosed session: %v", freed.Snapshots)
	}
	_, err = f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	var fs *FencedSession
	if !errors.As(err, &fs) || fs.Entries != 1 {
		t.Fatalf("close after the eviction and gc: %v", err)
	}
	dest := filepath.Join(t.TempDir(), "letter.txt")
	if _, err := f.e.RecoverExport(f.ctx, "docs", "/home/user/Documents/letter.txt", dest, 1, false); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dest); err != nil || string(b) != "kept for recovery" {
		t.Fatalf("the letter from the recovery area: %q %v", b, err)
	}
	if _, ok := f.e.openHere("docs"); ok {
		t.Error("the journal still names the session after its fence")
	}
}

// The journal follows a session: written by open, removed by close; a
// ledger that says closed while the journal names a session with a root
// makes the next open keep that session's changes (a fence) before it
// builds a new root, with a warning; rm --force discards on purpose.
func TestOpenJournal(t *testing.T) {
	for _, kind := range []string{snapshot.KindOverlay, snapshot.KindNative} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, kind)
			f.except(nil, "/home/user/Documents/**")
			var warnings []string
			f.e.warn = func(s string) { warnings = append(warnings, s) }
			root := f.open()
			if n, ok := f.e.openHere("docs"); !ok || n != 1 {
				t.Fatalf("after open: journal %d %v, want session 1", n, ok)
			}
			write(t, root, "home/user/Documents/a.txt", "a", 0o644)
			f.close()
			if _, ok := f.e.openHere("docs"); ok {
				t.Fatal("after close: the journal still names a session")
			}
			// The ledger rewritten as closed while session 2 is open here.
			root = f.open()
			write(t, root, "home/user/Documents/unsaved.txt", "unsaved", 0o644)
			forgeSandbox(t, f, "docs", func(sb *store.Sandbox) { sb.State = store.StateClosed })
			f.open()
			if len(warnings) != 1 {
				t.Fatalf("warnings %q, want one saying the session was kept", warnings)
			}
			var n int
			if err := f.e.RecoverList(f.ctx, "docs", 2, "", func(x RecoverEntry) error {
				if x.Path == "/home/user/Documents/unsaved.txt" {
					n++
				}
				return nil
			}); err != nil || n != 1 {
				t.Fatalf("recover ls --session 2: %d entries for unsaved.txt, %v (warning %q)", n, err, warnings)
			}
			if m, ok := f.e.openHere("docs"); !ok || m != 3 {
				t.Fatalf("after the new open: journal %d %v, want session 3", m, ok)
			}
			// The ledger rewritten as closed again: rm refuses as for an
			// open sandbox; --force discards.
			forgeSandbox(t, f, "docs", func(sb *store.Sandbox) { sb.State = store.StateClosed })
			var nc *NotClosedError
			if err := f.e.RemoveSandbox(f.ctx, "docs", false, nil); !errors.As(err, &nc) {
				t.Fatalf("rm of a sandbox this host has open (the ledger says closed): %v", err)
			}
			if err := f.e.RemoveSandbox(f.ctx, "docs", true, nil); err != nil {
				t.Fatal(err)
			}
			if _, ok := f.e.openHere("docs"); ok {
				t.Error("after rm --force: the journal still names a session")
			}
		})
	}
}
