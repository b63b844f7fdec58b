package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestScanSeesOwnWrites: inside one transaction, a scan sees the
// transaction's own writes and deletes, merged in key order with what was
// committed before, on either driver; from= starts it mid-prefix; keys
// just outside the prefix, pending or committed, never show.
func TestScanSeesOwnWrites(t *testing.T) {
	// Past 50 pending writes a PostgreSQL scan sends them first: both
	// ways are taken.
	defer func(n int) { pgMergeMax = n }(pgMergeMax)
	pgMergeMax = 50
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		rng := rand.New(rand.NewPCG(1, 2))
		model := map[string]string{}
		k := func() string { return fmt.Sprintf("m:x%03d", rng.IntN(300)) }
		check := func(tx *Tx, from string) {
			t.Helper()
			var want []string
			for k, v := range model {
				if k >= from {
					want = append(want, k+"="+v)
				}
			}
			slices.Sort(want)
			var got []string
			var f []byte
			if from != "" {
				f = []byte(from)
			}
			if err := tx.scanFrom(context.Background(), []byte("m:x"), f, true, func(k, v []byte) error {
				got = append(got, string(k)+"="+string(v))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("scan from %q: %d keys, want %d\n got %v\nwant %v", from, len(got), len(want), got, want)
			}
		}
		for round := 0; round < 4; round++ {
			mustUpdate(t, s, func(tx *Tx) error {
				for i := 0; i < 400; i++ {
					key := k()
					switch rng.IntN(3) {
					case 0:
						if err := tx.del([]byte(key)); err != nil {
							return err
						}
						delete(model, key)
					default:
						v := fmt.Sprint(round, i)
						if err := tx.set([]byte(key), []byte(v)); err != nil {
							return err
						}
						model[key] = v
						// Neighbours outside the prefix, before and after it.
						if err := errors.Join(tx.set([]byte("m:w"+key[3:]), []byte(v)), tx.set([]byte("m:y"+key[3:]), []byte(v))); err != nil {
							return err
						}
					}
					if i%37 == 0 {
						check(tx, "")
						check(tx, k())
					}
				}
				return nil
			})
			mustView(t, s, func(tx *Tx) error { check(tx, ""); return nil })
		}
	})
}
