package store

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/internal/pgtest"
)

// TestPGOpenFastPaths: the one-query checks that let OpenURL skip the
// schema transactions say "current" only for a database at both schema
// versions with no migration under way; whatever else they see leaves the
// decision to the transactions, which still refuse what they refused.
func TestPGOpenFastPaths(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if pgSchemaCurrent(ctx, pool) || pgKeysCurrent(ctx, pool) {
		t.Fatal("an empty database reads as current")
	}
	s, err := OpenURL(ctx, u, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !pgSchemaCurrent(ctx, pool) || !pgKeysCurrent(ctx, pool) {
		t.Fatalf("a database just opened: SQL layout current %v, keys current %v", pgSchemaCurrent(ctx, pool), pgKeysCurrent(ctx, pool))
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	setKey := func(k, v string) {
		exec(`INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2`, []byte(k), []byte(v))
	}
	for _, k := range []string{keyMigrating, keyCopying} {
		setKey(k, "0")
		if pgKeysCurrent(ctx, pool) {
			t.Fatalf("%s set: keys read as current", k)
		}
		exec(`DELETE FROM kv WHERE k = $1`, []byte(k))
	}
	setKey(keySchema, strconv.Itoa(SchemaVersion-1))
	if pgKeysCurrent(ctx, pool) {
		t.Fatal("an older key schema reads as current")
	}
	setKey(keySchema, strconv.Itoa(SchemaVersion+1))
	if pgKeysCurrent(ctx, pool) {
		t.Fatal("a newer key schema reads as current")
	}
	if _, err := OpenURL(ctx, u, ""); err == nil || !strings.Contains(err.Error(), "newer than this spillway") {
		t.Fatalf("newer key schema: %v", err)
	}
	setKey("x", "y")
	exec(`DELETE FROM kv WHERE k = $1`, []byte(keySchema))
	if _, err := OpenURL(ctx, u, ""); err == nil || !strings.Contains(err.Error(), "not a spillway store") {
		t.Fatalf("no key schema in a non-empty store: %v", err)
	}
	exec(`UPDATE spillway_schema SET version = $1`, PGSchemaVersion-1)
	if pgSchemaCurrent(ctx, pool) {
		t.Fatal("an older SQL layout reads as current")
	}
	exec(`DROP TABLE spillway_schema`)
	if pgSchemaCurrent(ctx, pool) {
		t.Fatal("a database without spillway_schema reads as current")
	}
}
