package store

import (
	"errors"
	"testing"
)

// TestParkReopensOnNextUse: a parked badger store lets another Open in,
// and its next transaction reopens it (after the reopen hook) with what
// was committed meanwhile.
func TestParkReopensOnNextUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entered := 0
	s.SetReopen(func() error { entered++; return nil })
	if err := s.Update(func(tx *Tx) error { return tx.PutMeta("a", "1") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Park(); err != nil {
		t.Fatal(err)
	}
	if !s.Parked() {
		t.Fatal("not parked after Park")
	}
	// Another process's turn: here a second Store on the same directory.
	other, err := Open(dir)
	if err != nil {
		t.Fatalf("open beside a parked store: %v", err)
	}
	if err := other.Update(func(tx *Tx) error { return tx.PutMeta("b", "2") }); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	var a, b string
	if err := s.View(func(tx *Tx) error {
		a, _, _ = tx.GetMeta("a")
		b, _, err = tx.GetMeta("b")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if a != "1" || b != "2" || entered != 1 || s.Parked() {
		t.Fatalf("after reopen: a=%q b=%q entered=%d parked=%v", a, b, entered, s.Parked())
	}
	if s.Driver() != "badger" {
		t.Fatalf("driver %q", s.Driver())
	}
}

// TestParkHookFailureKeepsParked: when the hook fails (the lock is busy),
// the transaction fails with its error and the store stays parked.
func TestParkHookFailureKeepsParked(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	busy := errors.New("ledger busy")
	s.SetReopen(func() error { return busy })
	if err := s.Park(); err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error { return nil })
	if !errors.Is(err, busy) || !s.Parked() {
		t.Fatalf("err = %v, parked %v", err, s.Parked())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close of a parked store: %v", err)
	}
	if err := s.View(func(tx *Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v, want ErrClosed", err)
	}
}
