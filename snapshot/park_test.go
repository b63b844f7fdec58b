package snapshot

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestParkLetsAnotherProcessIn: while a Manager is parked another can open
// the same database (here with a short timeout: it would fail if the first
// still held it); the parked one reopens on its next use and sees what the
// other did.
func TestParkLetsAnotherProcessIn(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := Open(ctx, dir, KindNative, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	entered := 0
	m.SetReopen(func() error { entered++; return nil })
	if _, err := m.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := m.Park(); err != nil {
		t.Fatal(err)
	}
	other, err := Open(ctx, dir, KindNative, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("open beside a parked Manager: %v", err)
	}
	if _, err := other.Prepare(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || entered != 1 || m.Parked() {
		t.Fatalf("after reopen: keys %v, entered %d, parked %v", keys, entered, m.Parked())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Keys(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v, want ErrClosed", err)
	}
}
