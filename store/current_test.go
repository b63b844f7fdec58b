package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

func currentAt(t *testing.T, s *Store, sb string, gen uint64) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	var last string
	err := s.View(func(tx *Tx) error {
		return tx.ForEachCurrentAt(context.Background(), sb, gen, func(p string, id uint64) error {
			if p <= last && last != "" {
				t.Errorf("paths out of order: %q after %q", p, last)
			}
			last = p
			out[p] = id
			got, ok, err := tx.CurrentAt(sb, p, gen)
			if err != nil || !ok || got != id {
				t.Errorf("CurrentAt(%q, %d) = %d %v %v, ForEachCurrentAt says %d", p, gen, got, ok, err, id)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func versions(t *testing.T, s *Store, sb, p string) int {
	t.Helper()
	n := 0
	s.View(func(tx *Tx) error {
		return tx.scan(currentPathPrefix(sb, p), false, func([]byte, []byte) error { n++; return nil })
	})
	return n
}

// TestCurrentVersions: a reader at generation G sees the versions written
// at or below G, never those staged above it; a path keeps at most the
// version readers at G-1 see plus the new one; tombstones hide a path;
// staged versions can be dropped; sandboxes and path prefixes never mix.
func TestCurrentVersions(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		put := func(gen uint64, kv ...any) {
			t.Helper()
			if err := s.Update(func(tx *Tx) error {
				for i := 0; i < len(kv); i += 2 {
					if err := tx.PutCurrent("a", kv[i].(string), gen, uint64(kv[i+1].(int))); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		put(1, "/x", 1, "/x/y", 2, "/x y", 3)
		s.Update(func(tx *Tx) error { return tx.PutCurrent("ab", "/x", 1, 99) })
		put(2, "/x", 4, "/x y", 0)
		if got := fmt.Sprint(currentAt(t, s, "a", 1)); got != "map[/x:1 /x y:3 /x/y:2]" {
			t.Errorf("at 1: %s", got)
		}
		if got := fmt.Sprint(currentAt(t, s, "a", 2)); got != "map[/x:4 /x/y:2]" {
			t.Errorf("at 2: %s", got)
		}
		put(3, "/x", 5)
		put(4, "/x", 6)
		if n := versions(t, s, "a", "/x"); n != 2 {
			t.Errorf("/x has %d versions, want 2", n)
		}
		if got := currentAt(t, s, "a", 3)["/x"]; got != 5 {
			t.Errorf("/x at 3 = %d", got)
		}
		put(5, "/z", 7) // staged, never made current
		n, err := s.DropCurrentAbove(context.Background(), "a", 4)
		if err != nil || n != 1 {
			t.Fatalf("DropCurrentAbove = %d, %v", n, err)
		}
		if got := fmt.Sprint(currentAt(t, s, "a", 9)); got != "map[/x:6 /x/y:2]" {
			t.Errorf("after the drop: %s", got)
		}
		if got := fmt.Sprint(currentAt(t, s, "ab", 9)); got != "map[/x:99]" {
			t.Errorf("sandbox ab: %s", got)
		}
		// The change log above 4 went with the versions; below, and of
		// sandbox ab, it stays.
		if got := changesOf(t, s, "a"); got != "1:/x 1:/x y 1:/x/y 2:/x 2:/x y 3:/x 4:/x" {
			t.Errorf("change log of a after the drop: %s", got)
		}
		if got := changesOf(t, s, "ab"); got != "1:/x" {
			t.Errorf("change log of ab after the drop of a: %s", got)
		}
		if _, err := s.DropCurrent(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
		if got := len(currentAt(t, s, "a", 9)); got != 0 {
			t.Errorf("%d paths after DropCurrent", got)
		}
		if got := len(currentAt(t, s, "ab", 9)); got != 1 {
			t.Errorf("DropCurrent of a touched ab")
		}
	})
}

// changesOf lists sandbox's change log as GEN:PATH, in order.
func changesOf(t *testing.T, s *Store, sandbox string) string {
	t.Helper()
	var out []string
	if err := s.View(func(tx *Tx) error {
		return tx.ForEachChange(context.Background(), sandbox, 0, math.MaxUint64, func(gen uint64, path string, _ uint64) error {
			out = append(out, fmt.Sprintf("%d:%s", gen, path))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}
