package store

import (
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestCountsWhenAnAncestorUncoversAPath: a file whose entry a newer
// directory above it replaced no longer hides its subtree, so staging it
// again must read that subtree: a file under it, written after the
// directory, left the state when the file came back.
func TestCountsWhenAnAncestorUncoversAPath(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		stage := func(gen uint64, paths ...string) {
			mustUpdate(t, s, func(tx *Tx) error {
				var recs []*Record
				for _, p := range paths {
					rec := &Record{Sandbox: "a", Session: gen, Path: p, Kind: change.KindAdd, Type: change.TypeFile, Size: 10, Status: change.StatusApproved}
					if p == "/a" {
						rec.Type, rec.Size = change.TypeDir, 0
					}
					recs = append(recs, rec)
				}
				return tx.StageRecords("a", gen, recs, nil)
			})
		}
		steps := [][]string{
			{"/a", "/a/b"},
			{"/a"},     // a new directory: /a/b leaves the state
			{"/a/b/x"}, // newer than /a: in the state
			{"/a/b"},   // a file again: /a/b/x leaves the state
		}
		want := []Counts{{1, 10}, {0, 0}, {1, 10}, {1, 10}}
		for i, paths := range steps {
			g := uint64(i + 1)
			stage(g, paths...)
			checkCounts(t, s, "a", g)
			err := s.View(func(tx *Tx) error {
				c, err := tx.CountsAt("a", g)
				if err == nil && c != want[i] {
					t.Errorf("at %d: counters %+v, want %+v", g, c, want[i])
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestCountsWhenATopNamesAnotherPath: an index value of a staged path
// that names, by bare id, a record of another path (a row spillway's
// commands do not write; review of this change found it) is no entry of
// the path for StateFilter, so the path's subtree is read: the counters
// equal the recount. (Found by review: the subtree was skipped.)
func TestCountsWhenATopNamesAnotherPath(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		var rid uint64
		mustUpdate(t, s, func(tx *Tx) error {
			id, err := tx.NextRecordID()
			if err != nil {
				return err
			}
			rid = id
			r := &Record{ID: id, Sandbox: "a", Session: 1, Path: "/z", Kind: change.KindAdd, Type: change.TypeFile, Size: 5, Status: change.StatusApproved}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
			if err := tx.PutCurrent("a", "/z", 1, id); err != nil {
				return err
			}
			return tx.StageRecords("a", 1, []*Record{{Sandbox: "a", Session: 1, Path: "/t/x", Kind: change.KindAdd, Type: change.TypeFile, Size: 7, Status: change.StatusApproved}}, nil)
		})
		checkCounts(t, s, "a", 1)
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutCurrent("a", "/t", 2, rid) }) // a bare id: the record is at /z
		checkCounts(t, s, "a", 2)
		mustUpdate(t, s, func(tx *Tx) error {
			return tx.StageRecords("a", 3, []*Record{{Sandbox: "a", Session: 3, Path: "/t", Kind: change.KindModify, Type: change.TypeFile, Size: 1, Status: change.StatusApproved}}, nil)
		})
		checkCounts(t, s, "a", 3)
	})
}

// TestCountsWhenAPathWasWrittenBeforeItsStaging: a path whose version
// this transaction wrote before staging it again (PutCurrent, then
// StageRecords) has no entry known from the staging's read, which saw
// that write: the counters read the entry as the ledger held it.
func TestCountsWhenAPathWasWrittenBeforeItsStaging(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		file := func(gen uint64, size int64) *Record {
			return &Record{Sandbox: "a", Session: gen, Path: "/f", Kind: change.KindModify, Type: change.TypeFile, Size: size, Status: change.StatusApproved}
		}
		mustUpdate(t, s, func(tx *Tx) error { return tx.StageRecords("a", 1, []*Record{file(1, 10)}, nil) })
		mustUpdate(t, s, func(tx *Tx) error {
			if err := tx.PutCurrent("a", "/f", 2, 0); err != nil { // /f leaves the state…
				return err
			}
			return tx.StageRecords("a", 2, []*Record{file(2, 3)}, nil) // …and comes back
		})
		checkCounts(t, s, "a", 2)
		mustView(t, s, func(tx *Tx) error {
			c, err := tx.CountsAt("a", 2)
			if err == nil && c != (Counts{1, 3}) {
				t.Errorf("counters at 2: %+v, want one file of 3 bytes", c)
			}
			return err
		})
	})
}
