package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestDeleteSessionRecordsChunked deletes a session larger than one
// transaction may hold and leaves the other session alone.
func TestDeleteSessionRecordsChunked(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		const n = 12000 // past ErrTxnTooBig for one transaction of deletes
		for i := 0; i < n+10; i += 2000 {
			mustUpdate(t, s, func(tx *Tx) error {
				for j := i; j < min(i+2000, n+10); j++ {
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					session := uint64(1)
					if j >= n {
						session = 2
					}
					r := &Record{ID: id, Sandbox: "a", Session: session, Path: fmt.Sprintf("/d/f%06d", j), Exception: "ex1", Status: change.StatusPending}
					if err := tx.PutRecord(r); err != nil {
						return err
					}
				}
				return nil
			})
		}
		got, err := s.DeleteSessionRecordsChunked(context.Background(), "a", 1, 1000)
		if err != nil || got != n {
			t.Fatalf("deleted %d, %v; want %d", got, err, n)
		}
		var left []uint64
		if err := s.View(func(tx *Tx) error {
			left = ids(t, func(fn func(*Record) error) error { return tx.ForEachRecord(context.Background(), "a", fn) })
			if p := ids(t, func(fn func(*Record) error) error { return tx.ForEachPending(context.Background(), "", fn) }); len(p) != 10 {
				t.Errorf("pending index holds %d records, want 10", len(p))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(left) != 10 {
			t.Errorf("%d records left, want the 10 of session 2", len(left))
		}
		if again, err := s.DeleteSessionRecordsChunked(context.Background(), "a", 1, 1000); err != nil || again != 0 {
			t.Errorf("second run deleted %d, %v; want 0, nil", again, err)
		}
	})
}
