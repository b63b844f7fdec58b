package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/internal/testenv"
)

func init() {
	// newdb VAR: a new, empty database of the throwaway cluster, its URL
	// in $VAR (a mistyped --store, another fleet's ledger).
	scriptCmds["newdb"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: newdb VAR")
		}
		u, err := pgtest.NewDB()
		ts.Check(err)
		ts.Setenv(args[0], u)
	}
}

// pgDB is a new database in this binary's throwaway cluster, which the
// test's end stops (tests of cmd/spillway restart it).
func pgDB(t *testing.T) string {
	t.Helper()
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop)
	url, err := pgtest.NewDB()
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// postgresParams runs scripts with the ledger in a PostgreSQL database of
// their own (SPILLWAY_STORE, a throwaway cluster from internal/pgtest) and,
// with sharedBlobs, the blobs in $WORK/shared-blobs outside the root
// (SPILLWAY_BLOBS).
func postgresParams(t *testing.T, p testscript.Params, sharedBlobs bool) testscript.Params {
	pgtest.Require(t)
	t.Cleanup(pgtest.Stop)
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if err := setup(env); err != nil {
			return err
		}
		u, err := pgtest.NewDB()
		if err != nil {
			return err
		}
		env.Setenv("SPILLWAY_STORE", u)
		if sharedBlobs {
			env.Setenv("SPILLWAY_BLOBS", "dir://"+filepath.Join(env.WorkDir, "shared-blobs"))
		}
		return nil
	}
	return p
}

// TestFleetScripts runs testdata/fleet/*.txtar on PostgreSQL.
func TestFleetScripts(t *testing.T) {
	requireRoot(t)
	testscript.Run(t, postgresParams(t, scriptParams(filepath.Join("testdata", "fleet")), true))
}

// TestScriptsOnPostgres runs scripts of testdata/ written for badger
// unchanged on PostgreSQL: the CLI behaves the same on either ledger.
// (Not noop_changes: it opens a second root, which here shares the ledger
// and so its recorded snapshotter.)
func TestScriptsOnPostgres(t *testing.T) {
	requireRoot(t)
	p := scriptParams("")
	p.Dir = ""
	for _, f := range []string{"lifecycle", "exceptions", "review_flow", "review_before", "persisted_export", "review_errors", "recover", "review_pages"} {
		p.Files = append(p.Files, filepath.Join("testdata", f+".txtar"))
	}
	for _, f := range p.Files {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	testscript.Run(t, postgresParams(t, p, false))
}

// TestFleetThroughPgBouncer runs the fleet scripts with every connection
// through a PgBouncer: the roam script in session pooling, as
// docs/fleet.md suggests for a fleet (the store's connection setup must be
// one a pooler accepts: a startup parameter it does not know is refused),
// and all of them in transaction pooling with the URL's
// default_query_exec_mode=exec (a transaction may run on another server
// connection than the one before it, which does not hold the statements
// pgx prepared there).
func TestFleetThroughPgBouncer(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		testenv.Missing(t, "pgbouncer is not installed")
	}
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			p := postgresParams(t, scriptParams(filepath.Join("testdata", "fleet")), true)
			if mode == "session" {
				// Session pooling hands each client one server
				// connection, as a direct one: the roam script suffices.
				p.Dir = ""
				p.Files = []string{filepath.Join("testdata", "fleet", "roam.txtar")}
			}
			setup := p.Setup
			p.Setup = func(env *testscript.Env) error {
				if err := setup(env); err != nil {
					return err
				}
				u, stop, err := pgtest.BouncerMode(env.Getenv("SPILLWAY_STORE"), mode)
				if err != nil {
					return err
				}
				env.Defer(stop)
				if mode == "transaction" {
					u += "&default_query_exec_mode=exec"
				}
				env.Setenv("SPILLWAY_STORE", u)
				return nil
			}
			testscript.Run(t, p)
		})
	}
}
