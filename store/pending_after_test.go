package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// TestForEachPendingAfter: the pending records above an id, of the whole
// queue or of one sandbox, are those ForEachPending gives with a higher
// id, in a read-only transaction (batched on PostgreSQL) as in a
// read-write one; past the last id, and at the largest, there are none.
func TestForEachPendingAfter(t *testing.T) { forEachDriver(t, testForEachPendingAfter) }

func testForEachPendingAfter(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	const n = 300 // more than the first batches of a batched walk
	mustUpdate(t, s, func(tx *Tx) error {
		for i := range n {
			id, err := tx.NextRecordID()
			if err != nil {
				return err
			}
			st := change.StatusPending
			if i%7 == 0 {
				st = change.StatusApproved // not in the pending index
			}
			r := &Record{ID: id, Sandbox: []string{"a", "b"}[i%2], Session: 1, Path: fmt.Sprintf("/p%03d", i), Kind: change.KindAdd,
				Type: "file", Exception: "ex1", Status: st, Created: time.Now()}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
		}
		return nil
	})
	ids := func(view bool, sandbox string, after uint64, all bool) []uint64 {
		t.Helper()
		var out []uint64
		walk := func(tx *Tx) error {
			fn := func(r *Record) error {
				if !all || r.ID > after {
					out = append(out, r.ID)
				}
				return nil
			}
			if all {
				return tx.ForEachPending(ctx, sandbox, fn)
			}
			return tx.ForEachPendingAfter(ctx, sandbox, after, fn)
		}
		var err error
		if view {
			err = s.View(walk)
		} else {
			err = s.Update(walk)
		}
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, view := range []bool{true, false} {
		for _, sandbox := range []string{"", "a"} {
			for _, after := range []uint64{0, 1, 2, 17, 150, 299, 300, 1000, math.MaxUint64} {
				want := ids(view, sandbox, after, true)
				got := ids(view, sandbox, after, false)
				if !slices.Equal(got, want) {
					t.Errorf("view=%v sandbox %q after %d: %v, want %v", view, sandbox, after, got, want)
				}
				if after == 150 && len(want) == 0 {
					t.Errorf("sandbox %q after 150: no records, the comparison shows nothing", sandbox)
				}
			}
		}
	}
}
