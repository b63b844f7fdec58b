package store

import (
	"fmt"
	"testing"
)

// TestReadAhead: after ReadAheadMeta and ReadAheadPending of more keys
// than one query reads (pgPage), present and absent ones, GetMeta and
// PendingCount answer what they answer without it, and on PostgreSQL
// without a round trip of their own; a value written in the transaction
// before is not overwritten by what the database holds.
func TestReadAhead(t *testing.T) { forEachDriver(t, testReadAhead) }

func testReadAhead(t *testing.T) {
	s, _ := newStore(t)
	n := pgPage + 200
	var names []string
	var sbs []*Sandbox
	for i := range n {
		names = append(names, fmt.Sprintf("m%05d", i))
		sbs = append(sbs, &Sandbox{Name: fmt.Sprintf("s%05d", i)})
	}
	mustUpdate(t, s, func(tx *Tx) error {
		for i := 0; i < n; i += 3 { // every third one present
			if err := tx.PutMeta(names[i], fmt.Sprint(i)); err != nil {
				return err
			}
			if err := tx.SetPendingCount(sbs[i].Name, int64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	type read struct {
		meta    string
		ok      bool
		pending int64
	}
	readAll := func(tx *Tx) []read {
		out := make([]read, n)
		for i := range n {
			v, ok, err := tx.GetMeta(names[i])
			if err != nil {
				t.Fatal(err)
			}
			p, err := tx.PendingCount(sbs[i].Name)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = read{v, ok, p}
		}
		return out
	}
	var want []read
	mustView(t, s, func(tx *Tx) error { want = readAll(tx); return nil })
	if !want[3].ok || want[4].ok || want[3].pending != 3 {
		t.Fatalf("the reads without read-ahead: %+v %+v", want[3], want[4])
	}
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutMeta(names[3], "written"); err != nil {
			return err
		}
		var cq *countingQuerier
		if pt, ok := tx.b.(*pgTx); ok {
			cq = &countingQuerier{pgQuerier: pt.tx}
			pt.tx = cq
		}
		if err := tx.ReadAheadMeta(names); err != nil {
			return err
		}
		if err := tx.ReadAheadPending(sbs); err != nil {
			return err
		}
		if cq != nil && cq.n != 4 {
			t.Errorf("read-ahead of 2 × %d keys: %d queries, want 4", n, cq.n)
		}
		before := 0
		if cq != nil {
			before = cq.n
		}
		got := readAll(tx)
		if cq != nil && cq.n != before {
			t.Errorf("reads after the read-ahead made %d round trips, want none", cq.n-before)
		}
		for i := range n {
			w := want[i]
			if i == 3 {
				w.meta = "written"
			}
			if got[i] != w {
				t.Errorf("key %d: %+v after read-ahead, want %+v", i, got[i], w)
			}
		}
		return nil
	})
}
