package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestCountsFollowTheIndex: after random changes of the index (files,
// links, deletes and new directories over older subtrees, staged versions
// taken back one by one or dropped), the counters a reader at each
// generation sees equal a recount of the state that reader sees.
func TestCountsFollowTheIndex(t *testing.T) { forEachDriver(t, testCountsFollowTheIndex) }

func testCountsFollowTheIndex(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	names := []string{"a", "a-b", "a.b", "b"}
	last := map[string]uint64{} // each sandbox's last generation
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 3))
		sb := fmt.Sprintf("s%d", seed)
		var paths []string
		gen := uint64(0)
		for range 8 {
			gen++
			err := s.Update(func(tx *Tx) error {
				for range 1 + r.IntN(6) {
					p := ""
					for range 1 + r.IntN(3) {
						p += "/" + names[r.IntN(len(names))]
					}
					paths = append(paths, p)
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					rec := &Record{ID: id, Sandbox: sb, Session: gen, Path: p, Kind: change.KindAdd, Type: change.TypeFile,
						Size: int64(1 + r.IntN(1000)), Status: change.StatusApproved}
					switch r.IntN(5) {
					case 0:
						rec.Kind, rec.Size = change.KindDelete, 0
					case 1, 2:
						rec.Type, rec.Size = change.TypeDir, 0
					}
					if err := tx.PutRecord(rec); err != nil {
						return err
					}
					if r.IntN(6) == 0 {
						id = 0 // the path leaves the state
					}
					if err := tx.PutCurrent(sb, p, gen, id); err != nil {
						return err
					}
				}
				// Take back one staged version now and then.
				if r.IntN(3) == 0 {
					return tx.DeleteCurrentVersion(sb, paths[len(paths)-1], gen)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			from := gen - 1 // a reader at gen-1 is served too
			if r.IntN(4) == 0 {
				if _, err := s.DropCurrentAbove(ctx, sb, gen-1); err != nil {
					t.Fatal(err)
				}
				gen--
				from = gen // what gen-1 saw may be gone since gen was written
			}
			for g := max(from, 1); g <= gen; g++ {
				checkCounts(t, s, sb, g)
			}
		}
		last[sb] = gen
	}
	// CountsOfEach, one batched read of every sandbox at every
	// generation (none yet, past the last one too), is CountsAt of each.
	var sbs []*Sandbox
	for sb, gen := range last {
		for g := range gen + 2 {
			sbs = append(sbs, &Sandbox{Name: sb, Generation: g})
		}
	}
	sbs = append(sbs, &Sandbox{Name: "none", Generation: 3})
	err := s.View(func(tx *Tx) error {
		got, err := tx.CountsOfEach(ctx, sbs)
		if err != nil {
			return err
		}
		nonzero := 0
		for i, sb := range sbs {
			want, err := tx.CountsAt(sb.Name, sb.Generation)
			if err != nil {
				return err
			}
			if got[i] != want {
				t.Errorf("CountsOfEach: %s at %d: %+v, CountsAt %+v", sb.Name, sb.Generation, got[i], want)
			}
			if want != (Counts{}) {
				nonzero++
			}
		}
		if nonzero == 0 {
			t.Error("every sandbox has zero counters: the comparison shows nothing")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkCounts compares CountsAt with a recount at gen.
func checkCounts(t *testing.T, s *Store, sb string, gen uint64) {
	t.Helper()
	err := s.View(func(tx *Tx) error {
		var want Counts
		var f StateFilter
		if err := tx.ForEachCurrentAt(context.Background(), sb, gen, func(_ string, id uint64) error {
			r, err := tx.GetRecord(id)
			if err == nil && f.Keep(r) {
				want.add(r, 1)
			}
			return err
		}); err != nil {
			return err
		}
		got, err := tx.CountsAt(sb, gen)
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("%s at %d: counters %+v, recount %+v", sb, gen, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCountsOfSandboxesAfterFlush: one transaction that stages records of
// several sandboxes, with more pending writes than a scan merges, leaves
// each sandbox's counters equal to a recount. On PostgreSQL the commit
// reads the ledger as the transaction found it through the transaction
// itself, without its pending writes; the first sandbox's counter update
// scans, and used to send every pending write, after which the other
// sandboxes' "before" included their own new versions (counters 0). No
// caller stages several sandboxes in one transaction today.
func TestCountsOfSandboxesAfterFlush(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		defer func(n int) { pgMergeMax = n }(pgMergeMax)
		pgMergeMax = 8
		s, _ := newStore(t)
		for gen := uint64(1); gen <= 2; gen++ {
			mustUpdate(t, s, func(tx *Tx) error {
				for _, sb := range []string{"a", "b", "c"} {
					// StageRecords reads in batches, which merge any number
					// of pending writes: nothing is sent before the commit.
					var recs []*Record
					for i := range 20 {
						recs = append(recs, &Record{Sandbox: sb, Session: gen, Path: fmt.Sprintf("/d/f%d", i+int(gen)*10), Kind: change.KindAdd,
							Type: change.TypeFile, Size: int64(gen*100 + uint64(i)), Status: change.StatusApproved})
					}
					if err := tx.StageRecords(sb, gen, recs, nil); err != nil {
						return err
					}
				}
				return nil
			})
			for _, sb := range []string{"a", "b", "c"} {
				checkCounts(t, s, sb, gen)
			}
		}
	})
}

// TestCountsOfALargeStage: counters follow a batch whose changed subtrees
// take more than one batched read (pgRangeChunk ranges), where the first
// batch of versions is new and the second replaces half of them.
func TestCountsOfALargeStage(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		for gen := uint64(1); gen <= 2; gen++ {
			mustUpdate(t, s, func(tx *Tx) error {
				var recs []*Record
				for i := range 1400 {
					if gen == 2 && i%2 == 0 {
						continue
					}
					rec := &Record{Sandbox: "a", Session: gen, Path: fmt.Sprintf("/d%d/f%d", i%7, i), Kind: change.KindAdd,
						Type: change.TypeFile, Size: int64(gen*1000 + uint64(i)), Status: change.StatusApproved}
					if gen == 2 && i%3 == 0 {
						rec.Kind, rec.Size = change.KindDelete, 0
					}
					recs = append(recs, rec)
				}
				if len(recs) <= pgRangeChunk/2 {
					t.Fatalf("%d records: want more ranges than one batched read takes", len(recs))
				}
				return tx.StageRecords("a", gen, recs, nil)
			})
			checkCounts(t, s, "a", gen)
		}
	})
}
