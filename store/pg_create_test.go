package store

import (
	"bytes"
	"context"
	"testing"
)

// TestPGCreate: keys written with create go in a plain INSERT, so a key
// that exists after all fails the transaction instead of being
// overwritten; a key created and then written again, in the same
// statement batch or after a flush sent it, is upserted like any other.
func TestPGCreate(t *testing.T) {
	s, _ := pgStore(t)
	ctx := context.Background()
	get := func(k string) []byte {
		t.Helper()
		var v []byte
		if err := s.View(func(tx *Tx) error {
			var err error
			v, _, err = tx.get([]byte(k))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	err := s.Update(func(tx *Tx) error {
		for _, step := range []func() error{
			func() error { return tx.create([]byte("t/a"), []byte("1")) },
			func() error { return tx.create([]byte("t/b"), []byte("1")) },
			func() error { return tx.set([]byte("t/b"), []byte("2")) }, // pending: upserted
			func() error { return tx.create([]byte("t/c"), []byte("1")) },
			// A scan sends the pending writes: t/c is in the database now.
			func() error { return tx.scanCtx(ctx, []byte("t/"), false, func(_, _ []byte) error { return nil }) },
			func() error { return tx.create([]byte("t/c"), []byte("2")) }, // sent: upserted
			func() error { return tx.create([]byte("t/d"), []byte("1")) },
			func() error { return tx.del([]byte("t/d")) },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create, set and del in one transaction: %v", err)
	}
	for k, want := range map[string]string{"t/a": "1", "t/b": "2", "t/c": "2", "t/d": ""} {
		if got := get(k); !bytes.Equal(got, []byte(want)) && !(want == "" && got == nil) {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// A created key that exists fails the transaction: nothing is written.
	err = s.Update(func(tx *Tx) error {
		if err := tx.set([]byte("t/e"), []byte("1")); err != nil {
			return err
		}
		return tx.create([]byte("t/a"), []byte("overwritten"))
	})
	if err == nil {
		t.Fatal("creating an existing key succeeded")
	}
	t.Logf("creating an existing key: %v", err)
	if got := get("t/a"); string(got) != "1" {
		t.Errorf("t/a = %q after the failed create, want 1", got)
	}
	if got := get("t/e"); got != nil {
		t.Errorf("t/e = %q: the failed transaction wrote it", got)
	}
}
