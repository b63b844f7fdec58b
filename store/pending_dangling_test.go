package store

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestPendingWalkSkipsDanglingEntries: an entry of a pending index that
// names no record (spillway writes none; a host of a shared ledger can)
// is skipped by the pending walks, in a read-only transaction (batched
// reads on PostgreSQL) and a read-write one, passed to missing, and
// listed by DanglingPending with its index; the real records are walked
// as before.
func TestPendingWalkSkipsDanglingEntries(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		var ids []uint64
		mustUpdate(t, s, func(tx *Tx) error {
			var recs []*Record
			for i := range 3 {
				recs = append(recs, &Record{Sandbox: "docs", Session: 1, Path: fmt.Sprintf("/d/f%d", i), Kind: change.KindAdd,
					Type: change.TypeFile, Size: 1, Status: change.StatusPending})
			}
			if err := tx.StageRecords("docs", 1, recs, nil); err != nil {
				return err
			}
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			return nil
		})
		ghost, other := ids[1]+1000, ids[1]+2000
		mustUpdate(t, s, func(tx *Tx) error {
			for _, k := range [][]byte{key(pPend, ghost), key(pPendSb, "docs", ghost), key(pPendSb, "gone", other)} {
				if err := tx.set(k, nil); err != nil {
					return err
				}
			}
			return nil
		})
		walk := func(tx *Tx, sandbox string) ([]uint64, []uint64) {
			var got, missing []uint64
			err := tx.ForEachPendingMissing(ctx, sandbox, 0, func(r *Record) error {
				got = append(got, r.ID)
				return nil
			}, func(id uint64) { missing = append(missing, id) })
			if err != nil {
				t.Fatalf("pending walk of %q: %v", sandbox, err)
			}
			return got, missing
		}
		check := func(tx *Tx, how string) error {
			for _, sb := range []string{"", "docs"} {
				got, missing := walk(tx, sb)
				if !slices.Equal(got, ids) || !slices.Equal(missing, []uint64{ghost}) {
					t.Errorf("%s, pending of %q: records %v, missing %v; want %v, [%d]", how, sb, got, missing, ids, ghost)
				}
			}
			var plain []uint64
			if err := tx.ForEachPending(ctx, "docs", func(r *Record) error { plain = append(plain, r.ID); return nil }); err != nil {
				t.Errorf("%s: ForEachPending: %v", how, err)
			}
			if !slices.Equal(plain, ids) {
				t.Errorf("%s: ForEachPending %v, want %v", how, plain, ids)
			}
			var dangling []string
			err := tx.DanglingPending(ctx, func(sb string, id uint64) error {
				dangling = append(dangling, fmt.Sprintf("%s:%d", sb, id))
				return nil
			})
			want := []string{fmt.Sprintf(":%d", ghost), fmt.Sprintf("docs:%d", ghost), fmt.Sprintf("gone:%d", other)}
			if err != nil || !slices.Equal(dangling, want) {
				t.Errorf("%s: DanglingPending %v (%v), want %v", how, dangling, err, want)
			}
			return nil
		}
		if err := s.View(func(tx *Tx) error { return check(tx, "view") }); err != nil {
			t.Fatal(err)
		}
		mustUpdate(t, s, func(tx *Tx) error { return check(tx, "update") })
		// Without a dangling entry there is nothing to list.
		mustUpdate(t, s, func(tx *Tx) error {
			for _, k := range [][]byte{key(pPend, ghost), key(pPendSb, "docs", ghost), key(pPendSb, "gone", other)} {
				if err := tx.del(k); err != nil {
					return err
				}
			}
			return nil
		})
		err := s.View(func(tx *Tx) error {
			return tx.DanglingPending(ctx, func(sb string, id uint64) error {
				t.Errorf("dangling %s:%d after the entries were removed", sb, id)
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestDanglingPendingInBatches: more dangling entries than one batch
// (pgPage) of DanglingPending, among real ones, are all listed once.
func TestDanglingPendingInBatches(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		mustUpdate(t, s, func(tx *Tx) error {
			var recs []*Record
			for i := range 300 {
				recs = append(recs, &Record{Sandbox: "docs", Session: 1, Path: fmt.Sprintf("/d/f%d", i), Kind: change.KindAdd,
					Type: change.TypeFile, Size: 1, Status: change.StatusPending})
			}
			return tx.StageRecords("docs", 1, recs, nil)
		})
		const n = pgPage + 100
		mustUpdate(t, s, func(tx *Tx) error {
			for i := range uint64(n) {
				if err := tx.set(key(pPend, 1<<40+i), nil); err != nil {
					return err
				}
			}
			return nil
		})
		got := map[uint64]int{}
		mustView(t, s, func(tx *Tx) error {
			return tx.DanglingPending(ctx, func(sb string, id uint64) error {
				if sb != "" {
					t.Errorf("dangling %d in the index of %q", id, sb)
				}
				got[id]++
				return nil
			})
		})
		if len(got) != n {
			t.Fatalf("%d dangling entries listed, want %d", len(got), n)
		}
		for id, c := range got {
			if c != 1 || id < 1<<40 {
				t.Fatalf("entry %d listed %d times", id, c)
			}
		}
	})
}
