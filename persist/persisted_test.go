package persist

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// TestStreamedStateMatchesLoadState: on random states whose paths share
// prefixes ("/a", "/a-b", "/a.b", "/a/b"), with deletes, files and links
// over older subtrees and new directories over older children, the state
// streamed from the index (PersistedEach) and the single-path lookup
// (currentRecord) give exactly what LoadState gives.
func TestStreamedStateMatchesLoadState(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	names := []string{"a", "a-b", "a.b", "a0", "b", "a b"}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		sbName := fmt.Sprintf("s%d", seed)
		sb := &store.Sandbox{Name: sbName, Image: "img", State: store.StateClosed, Generation: 1}
		all := map[string]bool{}
		err := st.Update(func(tx *store.Tx) error {
			if err := tx.PutSandbox(sb); err != nil {
				return err
			}
			if err := tx.PutMeta(currentReady(sbName), "1"); err != nil {
				return err
			}
			latest := map[string]uint64{}
			for range 1 + r.IntN(30) {
				p := ""
				for range 1 + r.IntN(4) {
					p += "/" + names[r.IntN(len(names))]
				}
				all[p] = true
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				rec := &store.Record{ID: id, Sandbox: sbName, Session: 1, Path: p, Kind: change.KindAdd, Type: change.TypeFile,
					Status: change.StatusApproved, Exception: "ex1"}
				switch r.IntN(4) {
				case 0:
					rec.Kind, rec.Type = change.KindDelete, change.TypeFile
				case 1, 2:
					rec.Type = change.TypeDir
				}
				if err := tx.PutRecord(rec); err != nil {
					return err
				}
				latest[p] = id
			}
			for p, id := range latest {
				if err := tx.PutCurrent(sbName, p, 1, id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = st.View(func(tx *store.Tx) error {
			want, err := LoadState(ctx, tx, sb)
			if err != nil {
				return err
			}
			var got []string
			if err := eachCurrent(ctx, tx, sb, func(r *store.Record) error {
				got = append(got, fmt.Sprintf("%s=r%d", r.Path, r.ID))
				return nil
			}); err != nil {
				return err
			}
			var w []string
			for _, r := range want.Sorted() {
				w = append(w, fmt.Sprintf("%s=r%d", r.Path, r.ID))
			}
			if fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("seed %d: streamed %v, LoadState %v", seed, got, w)
			}
			for p := range all {
				r, err := currentRecord(ctx, tx, sb, p)
				if err != nil {
					return err
				}
				if r != want[p] && (r == nil || want[p] == nil || r.ID != want[p].ID) {
					t.Errorf("seed %d: currentRecord(%s) = %v, LoadState %v", seed, p, r, want[p])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckFindsWrongCounters: the counters kept beside the index agree
// with a recount of the records, and check reports counters that do not.
func TestCheckFindsWrongCounters(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	sb := &store.Sandbox{Name: "c", Image: "img", State: store.StateClosed, Generation: 1}
	err = st.Update(func(tx *store.Tx) error {
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		if err := tx.PutMeta(countsReady, "1"); err != nil {
			return err
		}
		for i, p := range []string{"/d", "/d/a", "/d/b", "/e"} {
			r := &store.Record{ID: uint64(i + 1), Sandbox: "c", Session: 1, Path: p, Kind: change.KindAdd, Type: change.TypeFile,
				Size: 10, Status: change.StatusPending, Exception: "ex1"}
			if p == "/d" {
				r.Type, r.Size = change.TypeDir, 0
			}
			if err := tx.PutRecord(r); err != nil {
				return err
			}
			if err := tx.PutCurrent("c", p, 1, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	problems := func() []string {
		var out []string
		if err := st.View(func(tx *store.Tx) error {
			want, err := derivedState(ctx, tx, sb)
			if err != nil {
				return err
			}
			out, err = checkCounts(ctx, tx, sb, want)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if p := problems(); len(p) != 0 {
		t.Fatalf("kept counters disagree with the records: %q", p)
	}
	st.View(func(tx *store.Tx) error {
		c, pending, err := stateCounts(ctx, tx, sb)
		if err != nil || c.Files != 3 || c.Bytes != 30 || pending != 4 {
			t.Errorf("stateCounts = %+v, %d, %v; want 3 files, 30 bytes, 4 pending", c, pending, err)
		}
		return nil
	})
	st.Update(func(tx *store.Tx) error {
		if err := tx.SetCounts("c", 1, store.Counts{Files: 2, Bytes: 30}); err != nil {
			return err
		}
		return tx.SetPendingCount("c", 7)
	})
	if p := problems(); len(p) != 2 || !strings.Contains(p[0], "counters say 2 files, 30 bytes; its records 3 files, 30 bytes") || !strings.Contains(p[1], "pending counter says 7, its records 4") {
		t.Fatalf("check of wrong counters: %q", p)
	}
}
