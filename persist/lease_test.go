package persist

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// A root records the host it is at first use and refuses another id.
func TestHostIDIsRecorded(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "state")
	e, err := OpenEnv(t.Context(), Options{Root: root, HostID: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e, err = OpenEnv(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if e.HostID() != "h1" {
		t.Fatalf("host id %q, want the recorded h1", e.HostID())
	}
	e.Close()
	_, err = OpenEnv(t.Context(), Options{Root: root, HostID: "h2"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "h2 names another host than this state directory's, h1") {
		t.Fatalf("another host id: %v", err)
	}
}

// A command whose ledger does not open (a mistyped store URL) records no
// host id: the next command may still choose one.
func TestHostIDNotRecordedWhenTheLedgerFails(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	if _, err := OpenEnv(t.Context(), Options{Root: root, Store: "postgrs://x"}); err == nil {
		t.Fatal("a bad store URL opened")
	}
	if _, err := os.Stat(filepath.Join(root, hostIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("host id recorded by a command that failed: %v", err)
	}
	e, err := OpenEnv(t.Context(), Options{Root: root, HostID: "h7"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.HostID() != "h7" {
		t.Fatalf("host id %q, want h7", e.HostID())
	}
}

// Open takes the lease and records its token in the session; close gives
// it back; a lease another live host holds refuses the open, naming it.
func TestOpenTakesTheLease(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.open()
	var ses *store.Session
	var l *store.Lease
	f.e.store.View(func(tx *store.Tx) (err error) {
		if ses, err = tx.GetSession("docs", 1); err != nil {
			return err
		}
		l, err = tx.GetLease("docs")
		return err
	})
	if ses.Host != f.e.HostID() || ses.Token == 0 || l.Token != ses.Token || l.Host != ses.Host {
		t.Fatalf("session %+v, lease %+v", ses, l)
	}
	f.close()
	if err := f.e.store.View(func(tx *store.Tx) error { _, err := tx.GetLease("docs"); return err }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lease after close: %v", err)
	}
	mustUpdate(t, f.e, func(tx *store.Tx) error {
		if _, err := tx.Heartbeat("other", store.DefaultHostTTL); err != nil {
			return err
		}
		_, _, err := tx.TakeLease("docs", "other")
		return err
	})
	_, err := f.e.OpenSandbox(f.ctx, "docs")
	var held *store.HeldError
	if !errors.As(err, &held) || held.Holder != "other" {
		t.Fatalf("open while another host holds the lease: %v", err)
	}
	if _, err := f.e.EvictHost("other", "gone", true); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.close()
}

// A host whose lease went to another host while its session was open
// writes nothing at close: the session's changes go to its recovery area
// with reason "fenced", the ledger keeps the other host's state.
func TestCloseAfterTakeoverIsFenced(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/Documents/letter.txt", "from h1", 0o644)
	me := f.e.HostID()
	// Another host evicts this one and takes the sandbox over (the same
	// ledger seen from there: only its lease step, not its root).
	if err := f.e.store.Update(func(tx *store.Tx) error { _, err := tx.EvictHost(me, "test"); return err }); err != nil {
		t.Fatal(err)
	}
	f.e.hostID = "h2"
	if _, err := f.e.takeLease("docs"); err != nil {
		t.Fatal(err)
	}
	f.e.hostID = me
	var before *store.Sandbox
	f.e.store.View(func(tx *store.Tx) (err error) { before, err = tx.GetSandbox("docs"); return })
	if before.State != store.StateClosed || len(before.Abandoned) != 1 {
		t.Fatalf("after the takeover: %+v", before)
	}
	_, err := f.e.CloseSandbox(f.ctx, "docs", CloseOptions{})
	var fs *FencedSession
	if !errors.As(err, &fs) || !store.IsFenced(err) || fs.Entries == 0 {
		t.Fatalf("close after the takeover: %v", err)
	}
	if !strings.Contains(err.Error(), "host h2 holds it now") || !strings.Contains(err.Error(), "recover ls docs --session 1") {
		t.Errorf("message: %v", err)
	}
	var after *store.Sandbox
	var recs int
	f.e.store.View(func(tx *store.Tx) error {
		var err error
		if after, err = tx.GetSandbox("docs"); err != nil {
			return err
		}
		return tx.ForEachRecord(f.ctx, "docs", func(*store.Record) error { recs++; return nil })
	})
	if after.Generation != before.Generation || recs != 0 {
		t.Fatalf("the fenced close wrote to the ledger: generation %d→%d, %d records", before.Generation, after.Generation, recs)
	}
	if ms := mustMounts(t, f.e.root); len(ms) != 0 {
		t.Fatalf("still mounted: %v", ms)
	}
	rc, x, err := f.e.RecoverOpen(f.ctx, "docs", "/home/user/Documents/letter.txt", 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "from h1" || x.Reason != RefuseFenced {
		t.Fatalf("recovered %q (%+v)", b, x)
	}
}

func mustUpdate(t *testing.T, e *Env, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := e.store.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// forgeSandbox rewrites sandbox name's row through h's ledger with edit,
// as another host of a shared ledger (or a hand edit) could.
func forgeSandbox(t *testing.T, h *fixture, name string, edit func(*store.Sandbox)) {
	t.Helper()
	mustUpdate(t, h.e, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(name)
		if err != nil {
			return err
		}
		edit(sb)
		return tx.PutSandbox(sb)
	})
}
