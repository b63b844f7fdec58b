package persist

// What a lost commit persisted is kept whatever the recovery area's
// retention did with the session's directory meanwhile, and gc leaves its
// blobs alone. The ledger's loss of a commit is simulated as in
// TestOpenAfterLedgerRollbackKeepsNewerSessions: the badger store is
// copied while the session is open and copied back after its close.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// storeCopy copies the store aside (backup) or back (restore); the Env is
// closed and opened again around it.
type storeCopy struct {
	f           *fixture
	store, copy string
}

func newStoreCopy(f *fixture) *storeCopy {
	return &storeCopy{f: f, store: filepath.Join(f.dir, "state", "store"), copy: filepath.Join(f.dir, "store-backup")}
}

func (s *storeCopy) cp(from, to string) {
	s.f.t.Helper()
	s.f.e.Close()
	os.RemoveAll(to)
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		s.f.t.Fatalf("cp: %v %s", err, out)
	}
	s.f.openEnv("")
}

func (s *storeCopy) backup()  { s.cp(s.store, s.copy) }
func (s *storeCopy) restore() { s.cp(s.copy, s.store) }

// lostDocFixture: a forced exception on Documents, the store backed up
// while session 1 is open, doc.txt and scratch written; close it to lose.
func lostDocFixture(t *testing.T, mod func(f *fixture, root string)) (*fixture, *storeCopy) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	s := newStoreCopy(f)
	root := f.open()
	write(t, root, "/home/user/Documents/doc.txt", "the user's work\n", 0o644)
	for _, p := range []string{"/tmp/scratch1", "/tmp/scratch2", "/tmp/scratch3"} {
		write(t, root, p, "discarded\n", 0o644)
	}
	if mod != nil {
		mod(f, root)
	}
	s.backup() // the ledger as the standby has it: session 1 open
	return f, s
}

// TestLostCommitKeptAfterRetention: the lost close persisted doc.txt and
// discarded scratch files. Retention removed the session's directory at
// the close itself (keep-discarded 0), or dropped its discarded content a
// day later (the defaults, with the persisted file in the old tree);
// --abandon still names the lost generation and keeps doc.txt, from its
// blob.
func TestLostCommitKeptAfterRetention(t *testing.T) {
	for _, tc := range []struct {
		name        string
		discarded0  bool
		refused     bool
		expireLater bool
	}{
		{"keep-discarded-0", true, false, false},
		{"keep-discarded-0-something-refused", true, true, false},
		{"defaults-expired-a-day-later", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, s := lostDocFixture(t, func(f *fixture, root string) {
				if tc.discarded0 {
					zero := time.Duration(0)
					if _, err := f.e.SetRetention("docs", RetentionChange{KeepDiscarded: &zero}); err != nil {
						t.Fatal(err)
					}
				}
				if tc.refused {
					must(t, os.Symlink("/etc/passwd", filepath.Join(root, "home/user/Documents/link")))
				}
			})
			if sum := f.close(); !persisted(sum, "/home/user/Documents/doc.txt") {
				t.Fatalf("doc.txt not persisted: %+v", sum.Persisted)
			}
			later := func() time.Time { return time.Now().Add(25 * time.Hour).UTC() }
			if tc.expireLater {
				f.e.clock = later
				if _, err := f.e.ExpireRecovery(); err != nil {
					t.Fatal(err)
				}
			}
			s.restore() // the failover: the commit is lost
			if tc.expireLater {
				f.e.clock = later
			}
			ab, err := f.e.AbandonSession(f.ctx, "docs", "lost in a failover")
			if err != nil {
				t.Fatal(err)
			}
			if ab.LostGeneration != 1 || ab.Kept != 1 {
				t.Errorf("--abandon: lost generation %d, kept %d; want 1 and doc.txt kept", ab.LostGeneration, ab.Kept)
			}
			var lost []string
			if err := f.e.RecoverList(f.ctx, "docs", 1, "", func(x RecoverEntry) error {
				if x.Reason == LedgerLostReason {
					lost = append(lost, x.Path)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lost, []string{"/home/user/Documents/doc.txt"}) {
				t.Errorf("kept as ledger-lost: %q, want doc.txt", lost)
			}
		})
	}
}

// TestLostCommitBlobsKeptByGC: a gc between the loss and --abandon leaves
// the blob of doc.txt, which no record names any more, and says why;
// --abandon then keeps it, and gc says nothing more of it. The notes of
// closes the ledger shows keep nothing, also after the host was renamed
// (the ledger names the close's host by its old id): a purged record's
// blob is the records' to keep or free.
func TestLostCommitBlobsKeptByGC(t *testing.T) {
	f, s := lostDocFixture(t, nil)
	f.close()
	s.restore()
	var warned []string
	f.e.warn = func(m string) { warned = append(warned, m) }
	fr, err := f.e.GC(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fr.Blobs) != 0 || len(warned) != 1 || !strings.Contains(warned[0], "docs session 1") {
		t.Fatalf("gc after the loss freed %v and said %q; want nothing freed, the lost close named", fr.Blobs, warned)
	}
	ab, err := f.e.AbandonSession(f.ctx, "docs", "restored an old backup")
	if err != nil || ab.Kept != 1 {
		t.Fatalf("--abandon after gc: %+v, %v; want doc.txt kept", ab, err)
	}
	warned = nil
	if _, err := f.e.GC(f.ctx); err != nil || len(warned) != 0 {
		t.Fatalf("gc after --abandon: %v, said %q; want nothing said", err, warned)
	}

	// A close the ledger shows: its purged records free their blob.
	root := f.open()
	write(t, root, "/home/user/Documents/leak.txt", "a leak\n", 0o644)
	f.close()
	var id string
	if err := f.e.store.View(func(tx *store.Tx) error {
		xs, err := tx.ListExceptions("docs")
		id = xs[0].ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.RevokeException(f.ctx, id, "leaks", true); err != nil {
		t.Fatal(err)
	}
	f.e.Close() // the host renamed, as docs/fleet.md says
	must(t, os.Remove(filepath.Join(f.dir, "state", hostIDFile)))
	must(t, os.Remove(filepath.Join(f.dir, "state", rootIDFile)))
	if f.e, err = OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state"), LockTimeout: 5 * time.Second, HostID: "renamed"}); err != nil {
		t.Fatal(err)
	}
	f.e.warn = func(m string) { warned = append(warned, m) }
	warned = nil
	if keep, lost, err := f.e.lostCommitBlobs(); err != nil || len(keep)+len(lost) != 0 {
		t.Errorf("after a rename the notes keep %v for %v (%v); want nothing: the ledger shows both closes", keep, lost, err)
	}
	if _, err = f.e.GC(f.ctx); err != nil || len(warned) != 0 {
		t.Errorf("gc after a rename: %v, said %q; want nothing said", err, warned)
	}
}

// TestLostCommitTornManifest: the close's manifest ends in half a line (a
// write refused at the store's reserve left it so). --abandon cuts it
// back to its last whole line and keeps the lost commit's file, and can
// run again.
func TestLostCommitTornManifest(t *testing.T) {
	f, s := lostDocFixture(t, nil)
	f.close()
	man := filepath.Join(f.e.sessionDir("docs", 1), "manifest.jsonl")
	b, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(man, b[:len(b)-10], 0o600))
	s.restore()
	ab, err := f.e.AbandonSession(f.ctx, "docs", "lost")
	if err != nil || ab.Kept != 1 {
		t.Fatalf("--abandon with a torn manifest: %+v, %v; want doc.txt kept", ab, err)
	}
	if err := f.e.RecoverList(f.ctx, "docs", 1, "", func(RecoverEntry) error { return nil }); err != nil {
		t.Fatalf("recover ls after: %v", err)
	}
	mf, err := os.Open(man)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	var paths []string
	if err := eachManifestEntry(mf, func(x ManifestEntry) error { paths = append(paths, x.Path); return nil }); err != nil {
		t.Fatalf("the manifest after --abandon: %v", err)
	}
	if len(paths) != len(bytes.Split(b, []byte("\n")))-1 || paths[len(paths)-1] != "/home/user/Documents/doc.txt" {
		t.Errorf("the manifest after --abandon lists %q: want the whole lines before the torn one, then doc.txt", paths)
	}
}

// TestCommitNotesLifetime: each close notes its commit apart from its
// session's directory; a close removes the notes of earlier ones older
// than commitNoteKeep (its own stays), gc those older than that,
// `recover purge` a purged session's, rm all of them.
func TestCommitNotesLifetime(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	f.except(nil, "/home/user/Documents/**")
	session := func() {
		t.Helper()
		root := f.open()
		write(t, root, "/home/user/Documents/doc.txt", time.Now().String(), 0o644)
		write(t, root, "/tmp/scratch", "discarded\n", 0o644)
		f.close()
	}
	notes := func() []string {
		t.Helper()
		ents, _ := os.ReadDir(f.e.commitNotesDir("docs"))
		var names []string
		for _, ent := range ents {
			names = append(names, ent.Name())
		}
		return names
	}
	session()
	session()
	if got := notes(); !slices.Equal(got, []string{"1", "1.jsonl", "2", "2.jsonl"}) {
		t.Fatalf("notes after two closes: %q", got)
	}
	f.e.clock = func() time.Time { return time.Now().Add(commitNoteKeep + time.Hour).UTC() }
	session()
	if got := notes(); !slices.Equal(got, []string{"3", "3.jsonl"}) {
		t.Fatalf("notes after a close 8 days later: %q, want session 3's only", got)
	}
	if _, err := f.e.RecoverPurge("docs", 3); err != nil {
		t.Fatal(err)
	}
	if got := notes(); len(got) != 0 {
		t.Fatalf("notes after purging session 3: %q, want none", got)
	}
	session()
	f.e.clock = func() time.Time { return time.Now().Add(2*commitNoteKeep + time.Hour).UTC() }
	if _, err := f.e.GC(f.ctx); err != nil {
		t.Fatal(err)
	}
	if got := notes(); len(got) != 0 {
		t.Fatalf("notes after a gc 7 days after the last close: %q, want none", got)
	}
	session()
	if err := f.e.RemoveSandbox(f.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{f.e.commitNotesDir("docs"), filepath.Join(f.e.recoveryDir(), "docs")} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Fatalf("after rm %s is left (%v)", d, err)
		}
	}
}
