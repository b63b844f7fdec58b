package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestDatabasesAreSeparate: each URL is a new database; a table made in
// one is not in the other.
func TestDatabasesAreSeparate(t *testing.T) {
	ctx := context.Background()
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatalf("same database twice: %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table x in the other database: %d %v", n, err)
	}
}

// TestRestart: a row committed before Restart (on a database with
// SyncCommit, as a crash test needs) is there after it; a connection open across the
// restart is cut, a new one works.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	u := URL(t)
	if err := SyncCommit(u); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []string{"CREATE TABLE x (n int)", "INSERT INTO x VALUES (7)"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := Restart(0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a connection survived the restart")
	}
	c2, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var n int
	if err := c2.QueryRow(ctx, "SELECT n FROM x").Scan(&n); err != nil || n != 7 {
		t.Fatalf("after the restart: %d %v", n, err)
	}
}
