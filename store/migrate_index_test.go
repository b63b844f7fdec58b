package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// schema2Store makes a store as schema 2 left it: a sandbox whose
// current-state index holds bare record ids. It returns the listing the
// index must keep.
func schema2Store(t *testing.T, dir string) string {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutSandbox(&Sandbox{Name: "docs", Image: "base", Created: t0, State: StateClosed, Generation: 1}); err != nil {
			return err
		}
		for i := 1; i <= 20; i++ {
			r := &Record{ID: uint64(i), Sandbox: "docs", Session: 1, Path: fmt.Sprintf("/home/user/f%02d", i), Kind: change.KindAdd,
				Type: change.TypeFile, Size: int64(i), Mode: 0o644, Digest: fmt.Sprintf("sha256:%064x", i), Exception: "ex1",
				Status: change.StatusPending, Review: change.ReviewAfter, Created: t0}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
			if err := tx.PutCurrent("docs", r.Path, 1, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	want := fmt.Sprint(listed(t, s, "docs", 1))
	if n, err := s.BareCurrentForTest(context.Background(), "docs"); err != nil || n != 20 {
		t.Fatalf("BareCurrentForTest = %d, %v", n, err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.set([]byte(keySchema), []byte("2")) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// bareValues counts the index values of sandbox that are bare ids.
func bareValues(t *testing.T, s *Store, sandbox string) int {
	t.Helper()
	n := 0
	mustView(t, s, func(tx *Tx) error {
		return tx.scan(key(pCurrent, sandbox), true, func(_, v []byte) error {
			if len(v) > 0 && v[0] != currentCopy {
				n++
			}
			return nil
		})
	})
	return n
}

// TestMigrateSchema2Index: a schema 2 store (an index of bare ids) is
// migrated at Open: schema 3, every value a copy, the same listing, the
// backup gone; a crash after any step leaves the backup and the next Open
// finishes.
func TestMigrateSchema2Index(t *testing.T) {
	for _, step := range []string{"", "backup", "schema", "index", "verified"} {
		t.Run("crash at "+step, func(t *testing.T) {
			dir := t.TempDir()
			want := schema2Store(t, dir)
			if step != "" {
				openCrashingAt(t, dir, step, 2)
			}
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.migrating() {
				t.Fatal("migration markers left")
			}
			if n := bareValues(t, s, "docs"); n != 0 {
				t.Errorf("%d bare ids left", n)
			}
			if got := fmt.Sprint(listed(t, s, "docs", 1)); got != want {
				t.Errorf("listed %s, want %s", got, want)
			}
			if _, err := os.Lstat(filepath.Join(dir, BackupName(2))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("backup left after a verified migration: %v", err)
			}
			mustView(t, s, func(tx *Tx) error {
				if v, _, err := tx.get([]byte(keySchema)); err != nil || string(v) != "3" {
					t.Errorf("schema = %q (%v)", v, err)
				}
				return nil
			})
		})
	}
}
