package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAuditWalkNumbersByKey: an entry whose value says another number
// than its key (a row spillway never writes; a host of a shared ledger
// can) is walked under its key's number, so a page that ends on it
// continues after it instead of going back; VerifyAudit reports it.
func TestAuditWalkNumbersByKey(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		s, _ := newStore(t)
		ctx := context.Background()
		now := time.Now().UTC()
		var last *Event
		for range 3 {
			mustUpdate(t, s, func(tx *Tx) error {
				var err error
				last, err = tx.Append(now, "sandbox.open", "docs", nil)
				return err
			})
		}
		forged := *last
		forged.Seq = 1 // says it is the first entry
		at := last.Seq + 100
		mustUpdate(t, s, func(tx *Tx) error {
			v, err := encode(&forged)
			if err != nil {
				return err
			}
			return tx.create(AuditKey(at), v)
		})
		var seqs []uint64
		if err := s.ForEachEventAfter(ctx, "", 0, func(e *Event) error {
			seqs = append(seqs, e.Seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 4 || seqs[3] != at {
			t.Fatalf("walked entries %v, want the forged one as %d", seqs, at)
		}
		n := 0
		if err := s.ForEachEventAfter(ctx, "", seqs[3], func(*Event) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("after the last entry: %d entries (%v), want none", n, err)
		}
		prob, err := s.VerifyAudit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if prob == nil || prob.Seq != at || !strings.Contains(prob.Message, "holds entry 1") {
			t.Errorf("verify: %+v", prob)
		}
	})
}
