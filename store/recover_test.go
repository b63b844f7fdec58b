package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestRecordsOfExceptionRecover checks that the store takes records of the
// exception "recover" (made by `recover restore`, which has no rule): they
// are stored, indexed by that id, and looking the rule up is not found.
func TestRecordsOfExceptionRecover(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *Tx) error {
		id, err := tx.NextRecordID()
		if err != nil {
			return err
		}
		return tx.PutRecord(&Record{ID: id, Sandbox: "docs", Session: 1, Path: "/home/user/Documents/letter.txt",
			Kind: change.KindAdd, Type: "file", Exception: "recover", Status: change.StatusPending})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		n := 0
		if err := tx.ForEachExceptionRecord(context.Background(), "recover", func(r *Record) error {
			n++
			return nil
		}); err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("%d records of exception recover, want 1", n)
		}
		if _, err := tx.GetException("recover"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetException(recover) = %v, want not found", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
