package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPairFailover: a row committed on the primary is on the standby; the
// pair's URL reaches the primary, refuses the standby while it is one
// (the primary crashed) and reaches it once promoted, with the row. A
// commit made while the standby was detached waits for it, and is not on
// the standby promoted after the primary crashed.
func TestPairFailover(t *testing.T) {
	ctx := context.Background()
	p := NewPair(t)
	if err := p.CreateDB("d"); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, p.URL("d"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE x (n int); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var recovering bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || recovering {
		t.Fatalf("the pair's URL reached a server in recovery (%v): want the primary", err)
	}
	if err := p.DetachStandby(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "INSERT INTO x VALUES (2)")
		done <- err
	}()
	if err := p.WaitForSyncRepWaiter(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.CrashPrimary(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("a commit the standby never confirmed was acknowledged")
	}
	c.Close(ctx)
	if _, err := pgx.Connect(ctx, p.URL("d")); err == nil || !strings.Contains(err.Error(), "read only") {
		t.Fatalf("the pair's URL with the primary down and the standby in recovery: %v, want a refusal of the read-only server", err)
	}
	if err := p.Promote(); err != nil {
		t.Fatal(err)
	}
	c, err = pgx.Connect(ctx, p.URL("d"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var rows []int
	r, err := c.Query(ctx, "SELECT n FROM x ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	rows, err = pgx.CollectRows(r, pgx.RowTo[int])
	if err != nil || len(rows) != 1 || rows[0] != 1 {
		t.Fatalf("the promoted standby holds %v (%v), want [1]: the row committed before, not the one never replicated", rows, err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO x VALUES (3)"); err != nil {
		t.Fatalf("the promoted standby takes no writes: %v", err)
	}
}
