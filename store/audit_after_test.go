package store

import (
	"context"
	"math"
	"slices"
	"testing"
)

// TestForEachEventAfter: the audit entries above a number, of the whole
// log or of one sandbox, are those ForEachEvent gives with a higher
// number; past the last, and at the largest, there are none.
func TestForEachEventAfter(t *testing.T) { forEachDriver(t, testForEachEventAfter) }

func testForEachEventAfter(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for i := range 40 {
			if _, err := tx.Append(tx.Now(), "sandbox.open", []string{"a", "b", ""}[i%3], nil); err != nil {
				return err
			}
		}
		return nil
	})
	seqs := func(sandbox string, after uint64, all bool) []uint64 {
		t.Helper()
		var out []uint64
		fn := func(e *Event) error {
			if !all || e.Seq > after {
				out = append(out, e.Seq)
			}
			return nil
		}
		var err error
		if all {
			err = s.ForEachEvent(ctx, sandbox, fn)
		} else {
			err = s.ForEachEventAfter(ctx, sandbox, after, fn)
		}
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, sandbox := range []string{"", "a"} {
		for _, after := range []uint64{0, 1, 2, 17, 39, 40, 41, 1000, math.MaxUint64} {
			want, got := seqs(sandbox, after, true), seqs(sandbox, after, false)
			if !slices.Equal(got, want) {
				t.Errorf("sandbox %q after %d: %v, want %v", sandbox, after, got, want)
			}
			if after == 17 && len(want) == 0 {
				t.Errorf("sandbox %q after 17: no entries, the comparison shows nothing", sandbox)
			}
		}
	}
}
