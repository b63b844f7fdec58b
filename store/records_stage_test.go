package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/spillway/spillway/internal/change"
)

// TestStageRecordsMatchesPutRecord: StageRecords leaves the ledger exactly
// as NextRecordID, PutRecord and PutCurrent per record leave it (records,
// indexes, current-state versions, change log, counters, pending count),
// on random batches of files, directories and deletions over paths that
// nest, repeat within a batch and already have versions, some left out of
// the index, sometimes after PutCurrent calls in the same transaction, in
// two batches of one transaction, with a version taken back after them,
// and after a staged generation was dropped; and the counters match a
// recount. The counters of staged paths skip reads the looped ones make
// (current_counts_known.go): a wrong skip shows as a key that differs.
func TestStageRecordsMatchesPutRecord(t *testing.T) { forEachDriver(t, testStageRecordsMatches) }

func testStageRecordsMatches(t *testing.T) {
	staged, _ := newStore(t)
	looped, _ := newStore(t)
	ctx := context.Background()
	names := []string{"a", "a-b", "a.b", "b"}
	known, changed := 0, 0
	for seed := range uint64(25) {
		r := rand.New(rand.NewPCG(seed, 7))
		sb := fmt.Sprintf("s%d", seed)
		gen := uint64(0)
		for range 6 {
			gen++
			var recs []*Record
			for range 1 + r.IntN(8) {
				p := ""
				for range 1 + r.IntN(3) {
					p += "/" + names[r.IntN(len(names))]
				}
				rec := &Record{Sandbox: sb, Session: gen, Path: p, Kind: change.KindAdd, Type: change.TypeFile,
					Size: int64(1 + r.IntN(1000)), Status: change.StatusPending, Exception: "ex1"}
				switch r.IntN(6) {
				case 0:
					rec.Kind, rec.Size = change.KindDelete, 0
				case 1, 2:
					rec.Type, rec.Size = change.TypeDir, 0
				case 3:
					rec.Status, rec.Exception = change.StatusApproved, ""
				case 4:
					rec.Type = change.TypeSymlink
				}
				recs = append(recs, rec)
			}
			// Stage in two batches of one transaction now and then, and
			// take the last version back after them.
			split, takeBack := len(recs), r.IntN(5) == 0
			if r.IntN(3) == 0 {
				split = r.IntN(len(recs) + 1)
			}
			last := recs[len(recs)-1].Path
			skip := r.IntN(3) == 0 // leave some out of the index
			inIndex := func(rec *Record) bool { return !skip || rec.Size%3 != 0 }
			before := ""
			if r.IntN(4) == 0 {
				before = "/" + names[r.IntN(len(names))] // a PutCurrent first, in the same transaction
			}
			clone := func() []*Record {
				out := make([]*Record, len(recs))
				for i, rec := range recs {
					c := *rec
					out[i] = &c
				}
				return out
			}
			mustUpdate(t, staged, func(tx *Tx) error {
				if before != "" {
					if err := tx.PutCurrent(sb, before, gen, 0); err != nil {
						return err
					}
				}
				cs := clone()
				if err := tx.StageRecords(sb, gen, cs[:split], inIndex); err != nil {
					return err
				}
				if err := tx.StageRecords(sb, gen, cs[split:], inIndex); err != nil {
					return err
				}
				for _, ps := range tx.before {
					known += len(ps)
				}
				for _, ps := range tx.changed {
					changed += len(ps)
				}
				if takeBack {
					return tx.DeleteCurrentVersion(sb, last, gen)
				}
				return nil
			})
			mustUpdate(t, looped, func(tx *Tx) error {
				if before != "" {
					if err := tx.PutCurrent(sb, before, gen, 0); err != nil {
						return err
					}
				}
				for _, rec := range clone() {
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					rec.ID = id
					if err := tx.PutRecord(rec); err != nil {
						return err
					}
					if inIndex(rec) {
						if err := tx.PutCurrent(sb, rec.Path, gen, id); err != nil {
							return err
						}
					}
				}
				if takeBack {
					return tx.DeleteCurrentVersion(sb, last, gen)
				}
				return nil
			})
			if r.IntN(5) == 0 {
				for _, s := range []*Store{staged, looped} {
					if _, err := s.DropCurrentAbove(ctx, sb, gen-1); err != nil {
						t.Fatal(err)
					}
				}
				gen--
			}
			sameLedger(t, staged, looped)
			checkCounts(t, staged, sb, max(gen, 1))
		}
	}
	// The counters of staged paths skip the reads of entries StageRecords
	// knows (current_counts_known.go), and not of every path.
	if known == 0 || known == changed {
		t.Errorf("%d of %d changed paths had their entries known: the test exercises one way only", known, changed)
	}
}

// sameLedger fails unless a and b hold the same keys and values.
func sameLedger(t *testing.T, a, b *Store) {
	t.Helper()
	da, db := dumpLedger(t, a), dumpLedger(t, b)
	for k, v := range da {
		if w, ok := db[k]; !ok || !bytes.Equal(v, w) {
			t.Fatalf("key %q: staged %x, looped %x (present %v)", k, v, w, ok)
		}
	}
	for k := range db {
		if _, ok := da[k]; !ok {
			t.Fatalf("key %q only in the looped ledger", k)
		}
	}
}

// dumpLedger returns every key and value of s.
func dumpLedger(t *testing.T, s *Store) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	if err := s.View(func(tx *Tx) error {
		return tx.scan(nil, true, func(k, v []byte) error {
			m[string(k)] = append([]byte(nil), v...)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStageRecordsTwiceAtGen: a path staged again at a generation that
// already holds a committed version of it (a later batch of the same
// close) replaces that version: StageRecords creates the version only
// where its read found none (on PostgreSQL a plain INSERT, which a
// committed key would fail).
func TestStageRecordsTwiceAtGen(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		var ids []uint64
		for range 2 {
			mustUpdate(t, s, func(tx *Tx) error {
				rec := &Record{Sandbox: "a", Session: 1, Path: "/doc", Kind: change.KindAdd, Type: change.TypeFile, Size: 5, Status: change.StatusPending, Exception: "ex1"}
				if err := tx.StageRecords("a", 1, []*Record{rec}, nil); err != nil {
					return err
				}
				ids = append(ids, rec.ID)
				return nil
			})
		}
		if err := s.View(func(tx *Tx) error {
			id, ok, err := tx.CurrentAt("a", "/doc", 1)
			if err != nil || !ok || id != ids[1] {
				t.Errorf("version at 1: %d %v %v, want the second record %d", id, ok, err, ids[1])
			}
			c, err := tx.CountsAt("a", 1)
			if err != nil || c != (Counts{Files: 1, Bytes: 5}) {
				t.Errorf("counts at 1: %+v %v, want one file of 5 bytes", c, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}
