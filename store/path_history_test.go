package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/change"
)

// countGets counts the point reads (SELECT v FROM kv WHERE k = $1) of the
// stores opened while it is set.
type countGets struct{ n atomic.Int64 }

func (c *countGets) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(d.SQL, "SELECT v FROM kv WHERE k = $1") && !strings.Contains(d.SQL, "FOR ") {
		c.n.Add(1)
	}
	return ctx
}

func (*countGets) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestPathHistoryInUpdate: PathHistory gives every version of a path, in
// order, in a read-write transaction as in a view, and on PostgreSQL
// reads the records in batches in either, not one round trip a version
// (a review decision on a document of many versions runs it in an Update).
func TestPathHistoryInUpdate(t *testing.T) {
	forEachDriver(t, func(t *testing.T) {
		counter := &countGets{}
		if driverOf(t) == "postgres" {
			pgTestTracer = counter
			t.Cleanup(func() { pgTestTracer = nil })
		}
		s, _ := newStore(t)
		const n = 300
		mustUpdate(t, s, func(tx *Tx) error {
			for i := range n {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &Record{ID: id, Sandbox: "s", Session: uint64(i + 1), Path: "/notes.txt", Kind: change.KindModify, Type: "file",
					Size: int64(i), Exception: "ex1", Status: change.StatusApproved, Created: time.Now()}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		history := func(view bool) []*Record {
			var out []*Record
			run := s.Update
			if view {
				run = s.View
			}
			if err := run(func(tx *Tx) error {
				var err error
				out, err = tx.PathHistory("s", "/notes.txt")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return out
		}
		counter.n.Store(0)
		got := history(false)
		if len(got) != n {
			t.Fatalf("read-write PathHistory: %d versions, want %d", len(got), n)
		}
		for i, r := range got {
			if r.Size != int64(i) || (i > 0 && r.ID <= got[i-1].ID) {
				t.Fatalf("version %d: size %d, id %d after %d", i, r.Size, r.ID, got[max(i-1, 0)].ID)
			}
		}
		if driverOf(t) == "postgres" {
			if g := counter.n.Load(); g > 10 {
				t.Errorf("read-write PathHistory of %d versions: %d point reads, want them batched", n, g)
			}
		}
		if fmt.Sprint(historyIDs(history(true))) != fmt.Sprint(historyIDs(got)) {
			t.Error("a view's PathHistory differs from a read-write one's")
		}
	})
}

func historyIDs(rs []*Record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}
