package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// migrateChildEnv names the store directory a child of this test binary
// opens (and so migrates) in TestMigrateChild.
const migrateChildEnv = "SPILLWAY_TEST_MIGRATE_DIR"

// TestMigrateChild is the child process of TestMigrateKilled: it opens the
// store named in its environment, one record a batch, and exits 0 when the
// migration finished. Run directly, without that environment, it has
// nothing to do.
func TestMigrateChild(t *testing.T) {
	dir := os.Getenv(migrateChildEnv)
	if dir == "" {
		return
	}
	migrateBatchSize = 1
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	s.Close()
	os.Exit(0)
}

// migrateKilled runs the migration of dir in a child killed with SIGKILL
// at the nth hit of failpoint name; it reports whether the kill happened.
func migrateKilled(t *testing.T, dir, name string, nth int) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), migrateChildEnv+"="+dir, "SPILLWAY_FAILPOINT="+name+":"+strconv.Itoa(nth))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	if err != nil {
		t.Fatalf("migration child: %v\n%s", err, out)
	}
	return false
}

// TestMigrateKilled kills the migration of the schema 1 fixture for real
// (SIGKILL, no deferred code) after each of its durable steps, and at
// random batches, then shows the next Open finishes it: every record,
// decision and audit entry is there and verifies, the backup is gone.
func TestMigrateKilled(t *testing.T) {
	points := []struct {
		name string
		nth  int
	}{
		{"migrate.backup", 1}, {"migrate.schema", 1}, {"migrate.batch", 1},
		{"migrate.batch", 4}, {"migrate.index", 1}, {"migrate.verified", 1},
	}
	for i := 0; i < 3; i++ {
		points = append(points, struct {
			name string
			nth  int
		}{"migrate.batch", 1 + rand.IntN(8)}) // the fixture has 8 records
	}
	for _, p := range points {
		t.Run(fmt.Sprintf("%s:%d", p.name, p.nth), func(t *testing.T) {
			dir := copyFixture(t)
			if !migrateKilled(t, dir, p.name, p.nth) {
				t.Fatalf("%s:%d never fired", p.name, p.nth)
			}
			// A second kill of the resumed migration, then a full run.
			migrateKilled(t, dir, "migrate.batch", 1)
			checkMigrated(t, dir)
		})
	}
}

// TestMigrateKilledSchema2 kills the migration of a schema 2 store (an
// index of bare record ids) after each of its durable steps; the next
// Open finishes it with every value a copy and the same listing.
func TestMigrateKilledSchema2(t *testing.T) {
	for _, name := range []string{"migrate.backup", "migrate.schema", "migrate.index", "migrate.verified"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			want := schema2Store(t, dir)
			if !migrateKilled(t, dir, name, 1) {
				t.Fatalf("%s never fired", name)
			}
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if n := bareValues(t, s, "docs"); n != 0 || s.migrating() {
				t.Errorf("%d bare ids left, markers left: %v", n, s.migrating())
			}
			if got := fmt.Sprint(listed(t, s, "docs", 1)); got != want {
				t.Errorf("listed %s, want %s", got, want)
			}
		})
	}
}
