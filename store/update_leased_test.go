package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestUpdateLeased: a write under the lease commits with the holder's
// token and is fenced (nothing written) with another; on PostgreSQL a
// takeover of the lease waits for a leased write under way, so the write
// never commits after the lease changed hands.
func TestUpdateLeased(t *testing.T) { forEachDriver(t, testUpdateLeased) }

func testUpdateLeased(t *testing.T) {
	s, where := newStore(t)
	var l *Lease
	mustUpdate(t, s, func(tx *Tx) error {
		if _, err := tx.Heartbeat("h1", time.Hour); err != nil {
			return err
		}
		var err error
		l, _, err = tx.TakeLease("docs", "h1")
		return err
	})
	if err := s.UpdateLeased("docs", "h1", l.Token, func(tx *Tx) error { return tx.PutMeta("w", "1") }); err != nil {
		t.Fatal(err)
	}
	err := s.UpdateLeased("docs", "h1", l.Token+1, func(tx *Tx) error { return tx.PutMeta("w", "2") })
	if !IsFenced(err) {
		t.Fatalf("a write with a stale token: %v, want fenced", err)
	}
	if v := getMeta(t, s, "w"); v != "1" {
		t.Fatalf("meta w = %q after the fenced write, want 1", v)
	}
	if driverOf(t) != "postgres" {
		return
	}
	// A second process evicts h1 while h1's leased write is under way.
	other := openStore(t, where)
	defer other.Close()
	inside, evicted := make(chan struct{}), make(chan error, 1)
	go func() {
		<-inside
		evicted <- other.Update(func(tx *Tx) error { _, err := tx.EvictHost("h1", "test"); return err })
	}()
	first := true
	err = s.UpdateLeased("docs", "h1", l.Token, func(tx *Tx) error {
		if first {
			first = false
			close(inside)
			time.Sleep(300 * time.Millisecond) // the eviction waits for the lease's row
			select {
			case err := <-evicted:
				t.Errorf("the eviction committed during a leased write: %v", err)
			default:
			}
		}
		return tx.PutMeta("w", "3")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-evicted; err != nil {
		t.Fatal(err)
	}
	err = s.UpdateLeased("docs", "h1", l.Token, func(tx *Tx) error { return tx.PutMeta("w", "4") })
	if !IsFenced(err) || errors.Is(err, context.Canceled) {
		t.Fatalf("a write after the eviction: %v, want fenced", err)
	}
	if v := getMeta(t, s, "w"); v != "3" {
		t.Fatalf("meta w = %q, want 3", v)
	}
}

func getMeta(t *testing.T, s *Store, k string) string {
	t.Helper()
	var v string
	if err := s.View(func(tx *Tx) error {
		var err error
		v, _, err = tx.GetMeta(k)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}
