package store

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOpenAfterKillWithEmptyMemtable: a process killed right after badger
// created a memtable file leaves it empty; Open must still succeed and keep
// every committed write (badger issue #2207).
func TestOpenAfterKillWithEmptyMemtable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.PutMeta("k", "v") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00099.mem"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("open with an empty memtable file: %v", err)
	}
	defer s.Close()
	var v string
	if err := s.View(func(tx *Tx) (err error) { v, _, err = tx.GetMeta("k"); return }); err != nil || v != "v" {
		t.Fatalf("meta after reopen: %q %v", v, err)
	}
}
