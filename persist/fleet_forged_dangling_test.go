package persist

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// Was a hole: a row of the pending index naming a record that does not
// exist, which spillway never writes but any host of a shared ledger can,
// failed the review queue as a whole for every reviewer of the fleet
// (review ls, serve). Now the walk skips it and warns, the real pending
// records are listed, and check names the entry.
func TestForged2DanglingPendingEntry(t *testing.T) {
	h1, h2, _ := forgedFleet(t)
	forgeRecords(t, h1, "docs", &store.Record{Path: "/home/user/Documents/a.txt", Type: change.TypeFile})
	var real uint64
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		return tx.ForEachRecord(h1.ctx, "docs", func(r *store.Record) error {
			real = r.ID
			return nil
		})
	})
	mustUpdate(t, h1.e, func(tx *store.Tx) error {
		r, err := tx.GetRecord(real)
		if err != nil {
			return err
		}
		r.Status = change.StatusPending // waits for review: in both pending indexes
		return tx.PutRecord(r)
	})
	ghost := real + 1<<30
	id := binary.BigEndian.AppendUint64(nil, ghost)
	conn := sqlConn(t, h1)
	for _, k := range [][]byte{append([]byte("rq:"), id...), append([]byte("rQ:docs\x00"), id...)} {
		if _, err := conn.Exec(t.Context(), `INSERT INTO kv (k, v) VALUES ($1, '')`, k); err != nil {
			t.Fatal(err)
		}
	}
	var warned []string
	h2.e.warn = func(msg string) { warned = append(warned, msg) }
	for _, sb := range []string{"", "docs"} {
		warned = nil
		recs, err := h2.e.ReviewList(h2.ctx, sb)
		if err != nil {
			t.Fatalf("review list of %q: %v", sb, err)
		}
		if len(recs) != 1 || recs[0].ID != real {
			t.Errorf("review list of %q: %d records, want record %d alone", sb, len(recs), real)
		}
		if len(warned) != 1 || !strings.Contains(warned[0], fmt.Sprintf("record %d, which does not exist", ghost)) {
			t.Errorf("review list of %q warned %q", sb, warned)
		}
	}
	warned = nil
	err := h2.e.ReviewEachHost(h2.ctx, "", 0, func(r *store.Record, host string) error { return nil })
	if err != nil || len(warned) != 1 {
		t.Errorf("ReviewEachHost: %v, warned %q", err, warned)
	}
	problems, err := h2.e.Check(h2.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("the pending index of all sandboxes names record %d, which does not exist", ghost),
		fmt.Sprintf("the pending index of sandbox docs names record %d, which does not exist", ghost),
	}
	for _, w := range want {
		found := false
		for _, p := range problems {
			found = found || strings.HasPrefix(p, w)
		}
		if !found {
			t.Errorf("check does not report %q: %q", w, problems)
		}
	}
}
