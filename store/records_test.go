package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/change"
)

func ids(t *testing.T, each func(func(*Record) error) error) []uint64 {
	t.Helper()
	var out []uint64
	if err := each(func(r *Record) error { out = append(out, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func eq(t *testing.T, what string, got []uint64, want ...uint64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func TestRecordIndexes(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, dir := newStore(t)
		// sandbox a: session 1 → ids 1,2 (same path), session 2 → 3; sandbox b: 4.
		mustUpdate(t, s, func(tx *Tx) error {
			for _, r := range []*Record{
				{Sandbox: "a", Session: 1, Path: "/f", Exception: "ex1", Status: change.StatusPending},
				{Sandbox: "a", Session: 1, Path: "/g", Exception: "ex1", Status: change.StatusRefused},
				{Sandbox: "a", Session: 2, Path: "/f", Exception: "ex2", Status: change.StatusPending},
				{Sandbox: "b", Session: 1, Path: "/f", Exception: "ex3", Status: change.StatusPending},
			} {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r.ID = id
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		s = reopen(t, s, dir)
		mustView(t, s, func(tx *Tx) error {
			eq(t, "pending all", ids(t, func(f func(*Record) error) error { return tx.ForEachPending(context.Background(), "", f) }), 1, 3, 4)
			eq(t, "pending a", ids(t, func(f func(*Record) error) error { return tx.ForEachPending(context.Background(), "a", f) }), 1, 3)
			eq(t, "records a", ids(t, func(f func(*Record) error) error { return tx.ForEachRecord(context.Background(), "a", f) }), 1, 2, 3)
			eq(t, "records all", ids(t, func(f func(*Record) error) error { return tx.ForEachRecord(context.Background(), "", f) }), 1, 2, 3, 4)
			eq(t, "ex1", ids(t, func(f func(*Record) error) error { return tx.ForEachExceptionRecord(context.Background(), "ex1", f) }), 1, 2)
			h, err := tx.PathHistory("a", "/f")
			if err != nil || len(h) != 2 || h[0].ID != 1 || h[1].ID != 3 {
				t.Errorf("history: %v %v", h, err)
			}
			return nil
		})
		// approve 1, reject 3, move 4 to another exception and path
		mustUpdate(t, s, func(tx *Tx) error {
			for id, st := range map[uint64]change.Status{1: change.StatusApproved, 3: change.StatusRejected} {
				r, err := tx.GetRecord(id)
				if err != nil {
					return err
				}
				r.Status, r.DecidedAt = st, time.Now()
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			r, err := tx.GetRecord(4)
			if err != nil {
				return err
			}
			r.Exception, r.Path = "ex9", "/h"
			return tx.PutRecord(r)
		})
		mustView(t, s, func(tx *Tx) error {
			eq(t, "pending all after", ids(t, func(f func(*Record) error) error { return tx.ForEachPending(context.Background(), "", f) }), 4)
			eq(t, "pending a after", ids(t, func(f func(*Record) error) error { return tx.ForEachPending(context.Background(), "a", f) }))
			eq(t, "ex3 after", ids(t, func(f func(*Record) error) error { return tx.ForEachExceptionRecord(context.Background(), "ex3", f) }))
			eq(t, "ex9 after", ids(t, func(f func(*Record) error) error { return tx.ForEachExceptionRecord(context.Background(), "ex9", f) }), 4)
			if h, _ := tx.PathHistory("b", "/f"); len(h) != 0 {
				t.Errorf("stale history %v", h)
			}
			if h, _ := tx.PathHistory("b", "/h"); len(h) != 1 {
				t.Errorf("history /h %v", h)
			}
			return nil
		})
		// redo an interrupted close of a's session 1
		mustUpdate(t, s, func(tx *Tx) error {
			n, err := tx.DeleteSessionRecords("a", 1)
			if n != 2 {
				t.Errorf("deleted %d", n)
			}
			return err
		})
		mustView(t, s, func(tx *Tx) error {
			eq(t, "records a after delete", ids(t, func(f func(*Record) error) error { return tx.ForEachRecord(context.Background(), "a", f) }), 3)
			eq(t, "records all after delete", ids(t, func(f func(*Record) error) error { return tx.ForEachRecord(context.Background(), "", f) }), 3, 4)
			eq(t, "ex1 after delete", ids(t, func(f func(*Record) error) error { return tx.ForEachExceptionRecord(context.Background(), "ex1", f) }))
			if h, _ := tx.PathHistory("a", "/f"); len(h) != 1 || h[0].ID != 3 {
				t.Errorf("history after delete %v", h)
			}
			return nil
		})
		// no stray index keys remain: count every key under the record prefixes
		mustUpdate(t, s, func(tx *Tx) error {
			for _, id := range []uint64{3, 4} {
				if err := tx.DeleteRecord(id); err != nil {
					return err
				}
			}
			return nil
		})
		mustView(t, s, func(tx *Tx) error {
			for _, p := range []string{pRec, pRecSb, pRecPath, pRecExc, pRecSess, pPend, pPendSb} {
				tx.scan([]byte(p), false, func(k, _ []byte) error { t.Errorf("stray key %q", k); return nil })
			}
			return nil
		})
	})
}

func TestForEachPendingMany(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		n := 100000
		if testing.Short() {
			n = 20000
		}
		s, _ := newStore(t)
		const batch = 2000
		for start := 0; start < n; start += batch {
			mustUpdate(t, s, func(tx *Tx) error {
				for i := start; i < start+batch; i++ {
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					st := change.StatusApproved
					if i%50000 == 7 {
						st = change.StatusPending
					}
					r := &Record{ID: id, Sandbox: fmt.Sprint("s", i%3), Session: 1, Path: fmt.Sprintf("/home/u/doc%d.txt", i),
						Kind: change.KindAdd, Type: "file", Size: 1234, Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
						Exception: "ex1", Status: st, Created: time.Now()}
					if err := tx.PutRecord(r); err != nil {
						return err
					}
				}
				return nil
			})
		}
		start := time.Now()
		var got []uint64
		mustView(t, s, func(tx *Tx) error {
			return tx.ForEachPending(context.Background(), "", func(r *Record) error { got = append(got, r.ID); return nil })
		})
		el := time.Since(start)
		var want []uint64
		for i := 0; i < n; i++ {
			if i%50000 == 7 {
				want = append(want, uint64(i+1))
			}
		}
		eq(t, "pending", got, want...)
		t.Logf("%d records, %d pending: ForEachPending took %v", n, len(got), el)
		if el > 500*time.Millisecond {
			t.Errorf("ForEachPending too slow: %v", el)
		}
		// ErrStop ends early without error.
		var seen int
		mustView(t, s, func(tx *Tx) error {
			return tx.ForEachRecord(context.Background(), "s1", func(r *Record) error { seen++; return ErrStop })
		})
		if seen != 1 {
			t.Errorf("ErrStop: saw %d", seen)
		}
	})
}
