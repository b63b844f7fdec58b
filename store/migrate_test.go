package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// copyFixture copies the schema 1 store made by an older spillway.
func copyFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir("testdata/v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("testdata/v1", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkMigrated checks what the fixture holds after a migration.
func checkMigrated(t *testing.T, dir string) {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("open after migration: %v", err)
	}
	defer s.Close()
	if err := s.verifyRecords(); err != nil {
		t.Fatal(err)
	}
	if s.migrating() {
		t.Fatal("migration marker left")
	}
	if _, err := os.Lstat(filepath.Join(dir, BackupName(1))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backup left after a verified migration: %v", err)
	}
	got := map[uint64]*Record{}
	err = s.View(func(tx *Tx) error {
		v, _, err := tx.get([]byte(keySchema))
		if err != nil || string(v) != "3" {
			t.Errorf("schema = %q", v)
		}
		return tx.ForEachRecord(context.Background(), "docs", func(r *Record) error {
			got[r.ID] = r
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("%d records, want 8", len(got))
	}
	if got[1].Status != change.StatusApproved || got[1].Note != "ok" || got[1].DecidedAt.IsZero() {
		t.Errorf("r1 = %+v", got[1])
	}
	if got[3].Status != change.StatusRejected || got[3].Reason != "no" || got[3].Review != change.ReviewBefore {
		t.Errorf("r3 = %+v", got[3])
	}
	if got[2].Path != "/home/user/Documents/n\xffame.txt" || !strings.HasPrefix(got[2].Digest, "sha256:") {
		t.Errorf("r2 = %+v", got[2])
	}
	if got[6].Kind != change.KindDelete || got[5].Kind != change.KindModify || got[5].Size != 3 {
		t.Errorf("r5, r6 = %+v, %+v", got[5], got[6])
	}
	prob, err := s.VerifyAudit(context.Background())
	if err != nil || prob != nil {
		t.Fatalf("audit after migration: %v %v", prob, err)
	}
	var pending int
	s.View(func(tx *Tx) error {
		return tx.ForEachPending(context.Background(), "docs", func(*Record) error { pending++; return nil })
	})
	if pending != 6 {
		t.Errorf("%d pending, want 6", pending)
	}
}

func TestMigrateSchema1Fixture(t *testing.T) {
	checkMigrated(t, copyFixture(t))
}

// TestMigrateResumes stops the migration after each step, as a crash
// would, and shows the next Open finishes it with the same result; once
// the schema key says 3, a spillway that knows only schema 1 refuses the
// store with a clear message (checkSchema's "newer" branch).
func TestMigrateResumes(t *testing.T) {
	defer func(n int) { migrateBatchSize = n }(migrateBatchSize)
	migrateBatchSize = 3
	for _, step := range []string{"backup", "schema", "batch", "index", "verified"} {
		t.Run(step, func(t *testing.T) {
			dir := copyFixture(t)
			openCrashingAt(t, dir, step, 1)
			checkMigrated(t, dir)
		})
	}
}

// openCrashingAt opens the store in dir with its migration stopped after
// step, as a crash would, and checks that the backup of schema from is
// there.
func openCrashingAt(t *testing.T, dir, step string, from int) {
	t.Helper()
	crash := errors.New("crash at " + step)
	migrateHook = func(s string) error {
		if s == step {
			return crash
		}
		return nil
	}
	_, err := Open(dir)
	migrateHook = nil
	if !errors.Is(err, crash) {
		t.Fatalf("Open = %v, want the crash", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, BackupName(from))); err != nil {
		t.Fatalf("no backup after a crash at %s: %v", step, err)
	}
}

// TestMigrateRefusesANewerSchema is what an older spillway does with a
// migrated store.
func TestMigrateRefusesANewerSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(func(tx *Tx) error { return tx.set([]byte(keySchema), []byte("4")) })
	s.Close()
	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), "schema version 4 is newer than this spillway supports (3); use a newer spillway") {
		t.Fatalf("Open = %v", err)
	}
}

func TestRecordEncodingRoundTrips(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC)
	for _, r := range []*Record{
		{ID: 1, Sandbox: "docs", Session: 3, Path: "/a\xff\n", Kind: change.KindAdd, Type: change.TypeFile, Size: 1 << 40,
			Mode: 0o755, UID: 1 << 31, GID: 7, Mtime: now, Digest: "sha256:" + strings.Repeat("ab", 32), Exception: "ex12",
			Review: change.ReviewBefore, Status: change.StatusApproved, Created: now, DecidedBy: "alice", DecidedAt: now, Note: "n"},
		{ID: 2, Sandbox: "s", Path: "/l", Kind: change.KindDelete, Type: change.TypeSymlink, Link: "../x", Digest: "sha256:ABC", Purged: true, Reason: "r"},
		{ID: 3, Sandbox: "s", Path: "/", Size: -1, Mtime: now.Add(-time.Hour)},
		{ID: 4, Sandbox: "s", Path: "/p", Kind: change.KindModify, Type: change.TypeFile, Size: 5, Pruned: true, Status: change.StatusApproved},
		{ID: 5, Sandbox: "s", Path: "/d", Kind: change.KindModify, Type: change.TypeDir, Mode: 0o700, MetaOnly: true, Purged: true},
	} {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r, back) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back, r)
		}
		if len(b) > 160+len(r.Path)+len(r.Note) {
			t.Errorf("record %d encodes to %d bytes", r.ID, len(b))
		}
		for i := range b {
			if _, err := decodeRecord(b[:i]); err == nil && i > 0 {
				t.Errorf("record %d truncated to %d bytes decoded", r.ID, i)
			}
		}
	}
}

func FuzzDecodeRecordV2(f *testing.F) {
	b, _ := encodeRecord(&Record{ID: 9, Sandbox: "s", Path: "/p", Digest: "sha256:" + strings.Repeat("0", 64)})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil && len(b) > 0 && b[0] == recordV2 {
			again, err := encodeRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeRecord(again); err != nil {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
		}
	})
}

// A pruned record is told by its digest tag (3), so a record that is not
// pruned encodes exactly as before, and a pruned one cannot keep a digest.
func TestPrunedRecordEncoding(t *testing.T) {
	r := &Record{ID: 5, Sandbox: "s", Path: "/p", Kind: change.KindAdd, Type: change.TypeFile, Size: 3}
	plain, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Pruned = true
	pruned, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(pruned) != len(plain) || bytes.Equal(pruned, plain) {
		t.Fatalf("pruned %x, plain %x: want one tag byte apart", pruned, plain)
	}
	back, err := decodeRecord(pruned)
	if err != nil || !back.Pruned || back.Digest != "" {
		t.Fatalf("decode pruned = %+v, %v", back, err)
	}
	if back, err := decodeRecord(plain); err != nil || back.Pruned {
		t.Fatalf("decode plain = %+v, %v", back, err)
	}
	r.Digest = "sha256:" + strings.Repeat("ab", 32)
	if _, err := encodeRecord(r); err == nil || !strings.Contains(err.Error(), "a pruned record keeps no digest") {
		t.Fatalf("encode pruned with digest = %v", err)
	}
}

// TestMigrateOnEitherDriver: a store whose records are in the schema 1
// encoding is migrated by the next open, on badger and on PostgreSQL
// alike, batch by batch, every record kept.
func TestMigrateOnEitherDriver(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		defer func(n int) { migrateBatchSize = n }(migrateBatchSize)
		migrateBatchSize = 7
		s, where := newStore(t)
		const n = 50
		mustUpdate(t, s, func(tx *Tx) error {
			for i := 0; i < n; i++ {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &Record{ID: id, Sandbox: "docs", Session: 1, Path: fmt.Sprintf("/home/user/f%d", i), Exception: "ex1", Status: change.StatusPending, Created: t0}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err := s.DowngradeRecordsForBench(); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(where, "/") {
			// A shared ledger is migrated by fleet init alone: an ordinary
			// open is refused and changes nothing.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenURL(context.Background(), where, ""); !errors.Is(err, ErrMigrationNeeded) || !strings.Contains(err.Error(), "spillway fleet init") {
				t.Fatalf("an ordinary open of an older shared ledger: %v, want ErrMigrationNeeded naming fleet init", err)
			}
			var err error
			if s, err = OpenURL(AllowMigration(context.Background()), where, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
		} else {
			s = reopen(t, s, where)
		}
		if err := s.verifyRecords(); err != nil {
			t.Fatal(err)
		}
		if s.migrating() {
			t.Fatal("migration marker left")
		}
		var got int
		mustView(t, s, func(tx *Tx) error {
			if v, _, err := tx.get([]byte(keySchema)); err != nil || string(v) != "3" {
				t.Errorf("schema = %q (%v)", v, err)
			}
			return tx.ForEachPending(context.Background(), "docs", func(r *Record) error {
				if r.Path != fmt.Sprintf("/home/user/f%d", got) {
					t.Errorf("record %d: %q", r.ID, r.Path)
				}
				got++
				return nil
			})
		})
		if got != n {
			t.Errorf("%d records after migration, want %d", got, n)
		}
	})
}

// TestMigrationSaysSo: a migration run by an open under WithNotice says
// when it starts and when it ends; an open with nothing to migrate says
// nothing.
func TestMigrationSaysSo(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mustUpdate(t, s, func(tx *Tx) error {
		id, err := tx.NextRecordID()
		if err != nil {
			return err
		}
		return tx.PutRecord(&Record{ID: id, Sandbox: "docs", Session: 1, Path: "/home/user/f", Exception: "ex1", Status: change.StatusPending, Created: t0})
	})
	if err := s.DowngradeRecordsForBench(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var said []string
	ctx := WithNotice(context.Background(), func(m string) { said = append(said, m) })
	s, err := OpenURL(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(said) != 2 || !strings.HasPrefix(said[0], "migrating the ledger "+dir+" from schema 1 to 3") || !strings.HasPrefix(said[1], "migrated the ledger "+dir+" to schema 3 in ") {
		t.Fatalf("notices %q", said)
	}
	said = nil
	s, err = OpenURL(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(said) != 0 {
		t.Errorf("an open with nothing to migrate said %q", said)
	}
}
