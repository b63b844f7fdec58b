package store

import (
	"context"
	"errors"
	"net/url"
	"regexp"
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
	state := func() pgState {
		t.Helper()
		st, err := pgOpenState(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if state().sqlCurrent || state().keysCurrent {
		t.Fatal("an empty database reads as current")
	}
	s, err := OpenURL(ctx, u, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !state().sqlCurrent || !state().keysCurrent {
		t.Fatalf("a database just opened: SQL layout current %v, keys current %v", state().sqlCurrent, state().keysCurrent)
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
		if state().keysCurrent {
			t.Fatalf("%s set: keys read as current", k)
		}
		exec(`DELETE FROM kv WHERE k = $1`, []byte(k))
	}
	setKey(keySchema, strconv.Itoa(SchemaVersion-1))
	if state().keysCurrent {
		t.Fatal("an older key schema reads as current")
	}
	setKey(keySchema, strconv.Itoa(SchemaVersion+1))
	if state().keysCurrent {
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
	if state().sqlCurrent {
		t.Fatal("an older SQL layout reads as current")
	}
	exec(`DROP TABLE spillway_schema`)
	if state().sqlCurrent {
		t.Fatal("a database without spillway_schema reads as current")
	}
}

// TestPGOpenRefused: a server that answers but refuses the connection
// (here: no such database) is ErrRefused, not unavailable (a retry will
// not help: the URL must change); it is not taken for a database to
// create the schema in.
func TestPGOpenRefused(t *testing.T) {
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/spillway_no_such_database"
	_, err = OpenURL(context.Background(), u.String(), "")
	// At once, from the first query: not after migratePG's retries.
	want := regexp.MustCompile(`^store postgres://\S+: the database refused the connection: database "spillway_no_such_database" does not exist`)
	if !errors.Is(err, ErrRefused) || errors.Is(err, ErrUnavailable) || !want.MatchString(err.Error()) {
		t.Fatalf("open a database that does not exist: %v", err)
	}
}

// TestPGJITOff: the store's connections run with JIT compilation off
// (its first use in a connection costs about 80 ms, more than the
// statements), unless the URL sets jit itself.
func TestPGJITOff(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	for _, c := range []struct{ url, want string }{{u, "off"}, {u + "&jit=on", "on"}} {
		s, err := OpenURL(ctx, c.url, "")
		if err != nil {
			t.Fatal(err)
		}
		var jit string
		err = s.be.(*pgBackend).pool.QueryRow(ctx, `SHOW jit`).Scan(&jit)
		s.Close()
		if err != nil || jit != c.want {
			t.Errorf("%s: jit = %q (%v), want %s", c.url, jit, err, c.want)
		}
	}
}

// TestPGMigrationOnlyByFleetInit: an ordinary open of a ledger with an
// older SQL schema is refused, naming fleet init, and changes nothing
// (hosts still running the older spillway go on working); an open under
// AllowMigration (fleet init) migrates it. A newer schema is refused at
// once, as no retry helps, not as an unavailable database.
func TestPGMigrationOnlyByFleetInit(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	s, err := OpenURL(ctx, u, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	version := func() int {
		t.Helper()
		var v int
		if err := pool.QueryRow(ctx, `SELECT version FROM spillway_schema`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	// What schema 3 was: no ledger id column.
	if _, err := pool.Exec(ctx, `ALTER TABLE spillway_schema DROP COLUMN ledger_id; UPDATE spillway_schema SET version = 3`); err != nil {
		t.Fatal(err)
	}
	_, err = OpenURL(ctx, u, "")
	if !errors.Is(err, ErrMigrationNeeded) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "SQL schema is version 3") || !strings.Contains(err.Error(), "spillway fleet init") {
		t.Fatalf("ordinary open of SQL schema 3: %v", err)
	}
	if v := version(); v != 3 {
		t.Fatalf("the refused open left SQL schema %d", v)
	}
	s, err = OpenURL(AllowMigration(ctx), u, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.LedgerID() == "" || version() != PGSchemaVersion {
		t.Errorf("after fleet init's open: ledger id %q, SQL schema %d", s.LedgerID(), version())
	}
	s.Close()
	if _, err := pool.Exec(ctx, `UPDATE spillway_schema SET version = $1`, PGSchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	_, err = OpenURL(ctx, u, "")
	if !errors.Is(err, ErrNewerSchema) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("newer SQL schema: %v, want ErrNewerSchema and not unavailable", err)
	}
}
