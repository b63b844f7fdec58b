// Package pgtest gives tests a throwaway PostgreSQL cluster: the one
// SPILLWAY_TEST_PG names, or one started in a temporary directory once per
// test binary (Main stops it), with a new database for every test.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/testenv"
)

// Env is the variable that names an existing cluster to use instead of
// starting one: a postgres:// URL of a role that may create databases.
const Env = "SPILLWAY_TEST_PG"

var cluster struct {
	once sync.Once
	base string // URL of the cluster's maintenance database
	dir  string // the started cluster's directory; "" for SPILLWAY_TEST_PG
	ctl  []string
	opts string // the server's options (pg_ctl -o)
	err  error
	skip string // why there is no cluster: PostgreSQL is not installed
	n    atomic.Int64
}

// Main runs the tests and stops the cluster they started, if any.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the cluster started by this test binary and removes it; a
// later Require starts another. A test binary whose TestMain cannot call
// Main (testscript.Main exits itself) calls Stop from a t.Cleanup.
func Stop() {
	if cluster.dir != "" {
		run(cluster.ctl, "-D", filepath.Join(cluster.dir, "data"), "-m", "immediate", "stop")
		os.RemoveAll(cluster.dir)
	}
	cluster.dir, cluster.base, cluster.err, cluster.skip = "", "", nil, ""
	cluster.once = sync.Once{}
}

// URL returns the URL of a new, empty database for t on the cluster,
// starting the cluster at the first call. Without PostgreSQL it ends t
// through testenv.Missing.
func URL(t testing.TB) string {
	t.Helper()
	Require(t)
	u, err := NewDB()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Require starts the cluster if it is not running; without PostgreSQL it
// ends t through testenv.Missing.
func Require(t testing.TB) {
	t.Helper()
	cluster.once.Do(start)
	if cluster.skip != "" {
		testenv.Missing(t, "%s", cluster.skip)
	}
	if cluster.err != nil {
		t.Fatalf("pgtest: %v", cluster.err)
	}
}

// Start starts the cluster if it is not running, for programs that are
// not tests (the benchmark); the caller stops it with Stop.
func Start() error {
	cluster.once.Do(start)
	if cluster.skip != "" {
		return fmt.Errorf("pgtest: %s", cluster.skip)
	}
	return cluster.err
}

// Restart stops the cluster this binary started with `pg_ctl stop -m
// immediate` (no shutdown checkpoint: the server recovers from its WAL,
// as after a crash; every connection is cut), leaves it down for down,
// starts it again and waits until it accepts connections. A cluster
// named by SPILLWAY_TEST_PG is not restarted.
func Restart(down time.Duration) error {
	if cluster.dir == "" {
		return fmt.Errorf("pgtest: no cluster started by this binary to restart")
	}
	data, log := filepath.Join(cluster.dir, "data"), filepath.Join(cluster.dir, "log")
	if err := run(cluster.ctl, "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
		return err
	}
	time.Sleep(down)
	return run(cluster.ctl, "-D", data, "-l", log, "-w", "-o", cluster.opts, "start")
}

// SyncCommit makes every new session of the database at url wait for its
// commits' WAL to be written (synchronous_commit on; the cluster runs with
// it off): a commit the server acknowledged then survives Restart. Open
// connections keep the old setting.
func SyncCommit(url string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+" SET synchronous_commit = on")
	return err
}

// NewDB creates a new, empty database on the cluster Require started and
// returns its URL.
func NewDB() (string, error) {
	if cluster.base == "" {
		return "", fmt.Errorf("pgtest: no cluster (call Require first)")
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), cluster.n.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cluster.base)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	u, err := url.Parse(cluster.base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// binDir finds the directory of initdb and pg_ctl.
func binDir() string {
	for _, d := range []string{"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"} {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

// start sets cluster.base, from SPILLWAY_TEST_PG or by starting one.
func start() {
	if u := os.Getenv(Env); u != "" {
		cluster.base = u
		return
	}
	bin := binDir()
	if bin == "" {
		cluster.skip = "PostgreSQL (initdb) is not installed"
		return
	}
	// initdb refuses to run as root: root runs the cluster as postgres.
	var as []string
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			cluster.skip = "PostgreSQL's postgres user does not exist"
			return
		}
		as = []string{"runuser", "-u", "postgres", "--"}
	}
	dir, err := os.MkdirTemp("", "spillway-pg-")
	if err != nil {
		cluster.err = err
		return
	}
	if as != nil {
		if _, _, err := giveToPostgres(dir); err != nil {
			cluster.err = err
			return
		}
	}
	cluster.dir = dir
	cluster.ctl = append(append([]string{}, as...), filepath.Join(bin, "pg_ctl"))
	data := filepath.Join(dir, "data")
	t0 := time.Now()
	initdb := append(append([]string{}, as...), filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	if err := run(initdb); err != nil {
		cluster.err = err
		return
	}
	cluster.opts = "-c listen_addresses='' -k " + dir + " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
	if err := run(cluster.ctl, "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-o", cluster.opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		cluster.err = fmt.Errorf("%v\n%s", err, log)
		return
	}
	cluster.base = "postgres://postgres@/postgres?host=" + url.QueryEscape(dir)
	if os.Getenv("PGTEST_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "pgtest: cluster started in %v at %s\n", time.Since(t0), dir)
	}
}

// giveToPostgres makes the postgres user the owner of dir (root runs
// PostgreSQL's programs as postgres) and returns its uid and gid.
func giveToPostgres(dir string) (uid, gid int, err error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, os.Chown(dir, uid, gid)
}

func run(argv []string, more ...string) error {
	argv = append(append([]string{}, argv...), more...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return nil
}
