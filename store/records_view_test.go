package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
)

// TestForIndexInViews: an index walk in a read-only transaction (batched
// on PostgreSQL) gives the records a read-write one gives, in order,
// across batch boundaries; ErrStop ends it after exactly the record that
// returned it, within a batch or in the last one; an index key whose
// record is missing is ErrNotFound (the pending walks skip it).
func TestForIndexInViews(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		ctx := context.Background()
		s, _ := newStore(t)
		const n = 400 // batches of 16, 64, 256 and the rest
		mustUpdate(t, s, func(tx *Tx) error {
			for i := range n {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &Record{ID: id, Sandbox: "s", Session: 1, Path: fmt.Sprintf("/p%03d", i), Kind: change.KindAdd, Type: "file",
					Exception: "ex1", Status: change.StatusPending, Created: time.Now()}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		paths := func(view bool, stop int) ([]string, error) {
			var got []string
			walk := func(tx *Tx) error {
				return tx.ForEachPending(ctx, "s", func(r *Record) error {
					got = append(got, r.Path)
					if len(got) == stop {
						return ErrStop
					}
					return nil
				})
			}
			if view {
				return got, s.View(walk)
			}
			return got, s.Update(walk)
		}
		want, err := paths(false, 0)
		if err != nil || len(want) != n || want[0] != "/p000" || want[n-1] != fmt.Sprintf("/p%03d", n-1) {
			t.Fatalf("read-write walk: %d records (%v)", len(want), err)
		}
		got, err := paths(true, 0)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("read-only walk: %d records, %v", len(got), err)
		}
		for _, stop := range []int{1, 16, 17, 80, 81, 336, 390} {
			got, err := paths(true, stop)
			if err != nil || len(got) != stop || got[stop-1] != want[stop-1] {
				t.Fatalf("ErrStop at %d: %d records, %v", stop, len(got), err)
			}
		}
		mustUpdate(t, s, func(tx *Tx) error { return tx.del(key(pRec, want100(t, s))) })
		err = s.View(func(tx *Tx) error {
			return tx.ForEachExceptionRecord(ctx, "ex1", func(*Record) error { return nil })
		})
		if !errors.Is(err, ErrNotFound) && !errdefs.IsNotFound(err) {
			t.Fatalf("index key without its record: %v", err)
		}
		// The pending walks skip such a key (ForEachPendingMissing).
		got, err = paths(true, 0)
		if err != nil || len(got) != n-1 {
			t.Fatalf("pending walk past a key without its record: %d records, %v", len(got), err)
		}
	})
}

// want100 returns the id of the 100th record of sandbox s.
func want100(t *testing.T, s *Store) uint64 {
	t.Helper()
	var id uint64
	n := 0
	mustView(t, s, func(tx *Tx) error {
		return tx.ForEachRecord(context.Background(), "s", func(r *Record) error {
			if n++; n == 100 {
				id = r.ID
				return ErrStop
			}
			return nil
		})
	})
	return id
}
