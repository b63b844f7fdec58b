package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
)

type logged struct {
	gen  uint64
	path string
	prev uint64
}

func changes(t *testing.T, s *Store, sb string, from, to uint64) []logged {
	t.Helper()
	var out []logged
	if err := s.View(func(tx *Tx) error {
		return tx.ForEachChange(context.Background(), sb, from, to, func(gen uint64, p string, prev uint64) error {
			out = append(out, logged{gen, p, prev})
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChangeLog: every PutCurrent that changes what a reader sees is
// logged at its generation with the id before; one that writes the same
// id is not; ForEachChange reads a range in order; sandboxes never mix;
// DropChanges drops up to a generation.
func TestChangeLog(t *testing.T) {
	s, _ := newStore(t)
	put := func(sb string, gen uint64, p string, id uint64) {
		t.Helper()
		if err := s.Update(func(tx *Tx) error { return tx.PutCurrent(sb, p, gen, id) }); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 1, "/x", 10)
	put("a", 1, "/y", 11)
	put("ab", 1, "/x", 99) // another sandbox whose name has a's as prefix
	put("a", 2, "/x", 12)
	put("a", 2, "/y", 11) // the same id: no change
	put("a", 3, "/x", 0)  // gone
	put("a", 3, "/z/deep", 13)
	want := []logged{{1, "/x", 0}, {1, "/y", 0}, {2, "/x", 10}, {3, "/x", 12}, {3, "/z/deep", 0}}
	if got := changes(t, s, "a", 1, 3); !reflect.DeepEqual(got, want) {
		t.Fatalf("changes 1..3 = %v, want %v", got, want)
	}
	if got := changes(t, s, "a", 2, 2); !reflect.DeepEqual(got, want[2:3]) {
		t.Fatalf("changes 2..2 = %v", got)
	}
	if got := changes(t, s, "ab", 1, 9); !reflect.DeepEqual(got, []logged{{1, "/x", 0}}) {
		t.Fatalf("sandbox ab: %v", got)
	}
	// Written twice at one generation: the entry follows the last write.
	put("a", 4, "/y", 20)
	put("a", 4, "/y", 11)
	if got := changes(t, s, "a", 4, 4); len(got) != 0 {
		t.Fatalf("a write taken back at generation 4 is still logged: %v", got)
	}
	n, err := s.DropChanges(context.Background(), "a", 2)
	if err != nil || n != 3 {
		t.Fatalf("DropChanges up to 2 = %d %v, want 3", n, err)
	}
	if got := changes(t, s, "a", 0, AllGenerations); !reflect.DeepEqual(got, want[3:]) {
		t.Fatalf("after the drop: %v", got)
	}
	if got := changes(t, s, "ab", 0, AllGenerations); len(got) != 1 {
		t.Fatalf("dropping a's log touched ab's: %v", got)
	}
}

// TestForEachCurrentUnder lists only the paths strictly below a directory,
// at a generation, never a sibling that shares its name's prefix.
func TestForEachCurrentUnder(t *testing.T) {
	s, _ := newStore(t)
	if err := s.Update(func(tx *Tx) error {
		for i, p := range []string{"/d", "/d/a", "/d/b/c", "/d b", "/dd", "/d/gone"} {
			if err := tx.PutCurrent("a", p, 1, uint64(i+1)); err != nil {
				return err
			}
		}
		if err := tx.PutCurrent("a", "/d/gone", 2, 0); err != nil {
			return err
		}
		return tx.PutCurrent("a", "/d/later", 3, 9)
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.View(func(tx *Tx) error {
		return tx.ForEachCurrentUnder(context.Background(), "a", "/d", 2, func(p string, id uint64) error {
			got = append(got, fmt.Sprintf("%s=%d", p, id))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/d/a=2", "/d/b/c=3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("under /d at 2: %v, want %v", got, want)
	}
}
