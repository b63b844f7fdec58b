package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestPools: Stores opened one after another through a Pools run on the
// same server connection, which outlives each Store's Close; each open
// still reads the schema versions (a newer schema is refused); a badger
// URL opens as OpenURL does; after Close the Pools opens nothing. Without
// Pools, a Store's Close closes its connections.
func TestPools(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	p := NewPools()
	defer p.Close()
	pid := func(s *Store) uint32 {
		t.Helper()
		var pid uint32
		if err := s.be.(*pgBackend).pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	var pids []uint32
	for i := range 3 {
		s, err := p.Open(ctx, u, "")
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := s.Update(func(tx *Tx) error { return tx.PutMeta("k", "v") }); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		pids = append(pids, pid(s))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if pids[0] != pids[1] || pids[1] != pids[2] {
		t.Errorf("server processes %v: want one connection kept across the opens", pids)
	}

	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `UPDATE spillway_schema SET version = $1`, PGSchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Open(ctx, u, ""); err == nil || !strings.Contains(err.Error(), "newer than this spillway") {
		t.Errorf("open through Pools of a newer schema: %v, want it refused", err)
	}
	if _, err := c.Exec(ctx, `UPDATE spillway_schema SET version = $1`, PGSchemaVersion); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "store")
	b, err := p.Open(ctx, "", dir)
	if err != nil || b.Driver() != "badger" {
		t.Fatalf("badger through Pools: %v", err)
	}
	b.Close()

	own, err := OpenURL(ctx, u, "")
	if err != nil {
		t.Fatal(err)
	}
	pool := own.be.(*pgBackend).pool
	own.Close()
	if err := pool.Ping(ctx); err == nil {
		t.Error("a Store opened without Pools left its connections open")
	}

	p.Close()
	if _, err := p.Open(ctx, u, ""); err == nil {
		t.Error("a closed Pools opened a store")
	}
}
