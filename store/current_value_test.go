package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

// listed returns what ForEachCurrentRecordAt yields at gen, with each
// record checked against GetRecord.
func listed(t *testing.T, s *Store, sb string, gen uint64) []string {
	t.Helper()
	var out []string
	err := s.View(func(tx *Tx) error {
		return tx.ForEachCurrentRecordAt(context.Background(), sb, gen, func(r *Record) error {
			want, err := tx.GetRecord(r.ID)
			if err != nil {
				return err
			}
			if !SameCopy(r, want) {
				t.Errorf("copy of r%d %+v differs from the record %+v", r.ID, r, want)
			}
			out = append(out, fmt.Sprintf("%s=r%d:%s", r.Path, r.ID, r.Status))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCurrentCopies: the index holds a copy of each record in effect that
// lists exactly as the record does; an approval of a record in effect
// rewrites its copies (the version readers at G-1 see too); a value
// written by older code (a bare id) is read by lookup and CopyCurrent
// turns it into a copy, once; an id with no record stays a bare id.
func TestCurrentCopies(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		mtime := time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)
		recs := []*Record{
			{ID: 1, Sandbox: "a", Session: 1, Path: "/d", Kind: change.KindAdd, Type: change.TypeDir, Mode: 0o755, Status: change.StatusApproved, Exception: "ex1"},
			{ID: 2, Sandbox: "a", Session: 1, Path: "/d/f", Kind: change.KindAdd, Type: change.TypeFile, Size: 5, Mode: 0o644,
				Digest: "sha256:" + fmt.Sprintf("%064x", 7), Mtime: mtime, Status: change.StatusPending, Review: change.ReviewAfter, Exception: "ex1", UID: 1000, GID: 1000},
			{ID: 3, Sandbox: "a", Session: 1, Path: "/d/l", Kind: change.KindAdd, Type: change.TypeSymlink, Link: "f", Mode: 0o777, Status: change.StatusApproved},
		}
		if err := s.Update(func(tx *Tx) error {
			for _, r := range recs {
				if err := tx.PutRecord(r); err != nil {
					return err
				}
				if err := tx.PutCurrent("a", r.Path, 1, r.ID); err != nil {
					return err
				}
			}
			return tx.PutCurrent("b", "/gone", 1, 42) // no record 42
		}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(listed(t, s, "a", 1)); got != "[/d=r1:approved /d/f=r2:pending /d/l=r3:approved]" {
			t.Fatalf("listed %s", got)
		}
		// Stage generation 2 (a reader at 1 keeps version 1 of /d/f), then
		// approve r2 in place: both versions' copies follow.
		if err := s.Update(func(tx *Tx) error { return tx.PutCurrent("a", "/d/f", 2, 2) }); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(func(tx *Tx) error {
			r, err := tx.GetRecord(2)
			if err != nil {
				return err
			}
			r.Status, r.DecidedBy, r.Note = change.StatusApproved, "alice", "ok"
			return tx.PutRecord(r)
		}); err != nil {
			t.Fatal(err)
		}
		for _, gen := range []uint64{1, 2} {
			if got := fmt.Sprint(listed(t, s, "a", gen)); got != "[/d=r1:approved /d/f=r2:approved /d/l=r3:approved]" {
				t.Errorf("at %d after the approval: %s", gen, got)
			}
		}
		// As older code left it: bare ids, read by lookup.
		n, err := s.BareCurrentForTest(ctx, "a")
		if err != nil || n != 4 { // three paths, /d/f in two versions
			t.Fatalf("BareCurrentForTest = %d, %v", n, err)
		}
		if got := fmt.Sprint(listed(t, s, "a", 2)); got != "[/d=r1:approved /d/f=r2:approved /d/l=r3:approved]" {
			t.Errorf("bare ids listed %s", got)
		}
		bare := func(sb string) int {
			n := 0
			s.View(func(tx *Tx) error {
				return tx.scan(key(pCurrent, sb), true, func(k, v []byte) error {
					if len(v) > 0 && v[0] != currentCopy {
						n++
					}
					return nil
				})
			})
			return n
		}
		for _, sb := range []string{"a", "b"} {
			if n, err := s.CopyCurrent(ctx, sb); err != nil || n != 4 && sb == "a" || n != 1 && sb == "b" {
				t.Fatalf("CopyCurrent(%s) = %d, %v", sb, n, err)
			}
		}
		if bare("a") != 0 || bare("b") != 1 {
			t.Errorf("bare ids after CopyCurrent: a %d (want 0), b %d (want 1: no record 42)", bare("a"), bare("b"))
		}
		if got := fmt.Sprint(listed(t, s, "a", 2)); got != "[/d=r1:approved /d/f=r2:approved /d/l=r3:approved]" {
			t.Errorf("after CopyCurrent: %s", got)
		}
		if n, err := s.CopyCurrent(ctx, "a"); err != nil || n != 0 {
			t.Errorf("CopyCurrent again = %d, %v; want nothing to do", n, err)
		}
	})
}
