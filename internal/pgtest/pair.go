package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/testenv"
)

// Pair is a primary PostgreSQL cluster and a hot standby streaming from it
// with synchronous replication (synchronous_commit on, every standby
// synchronous: a commit is acknowledged only once the standby has flushed
// it), each on a unix socket of its own, for failover tests. It is
// separate from the cluster Require starts.
type Pair struct {
	dir              string
	as               []string // runuser -u postgres -- when root
	bin              string
	primary, standby string // data directories
	// PrimarySocket and StandbySocket are the servers' socket directories.
	PrimarySocket, StandbySocket string
}

// pairOpts are both servers' options: those of the shared cluster
// (fsync off: the tests crash processes, not the machine) with
// synchronous commits. synchronous_standby_names is set in the primary's
// postgresql.auto.conf instead (the base backup copies it), where Promote
// can change it: an option given here would override ALTER SYSTEM.
func pairOpts(sock string) string {
	return "-c listen_addresses='' -k " + sock + " -c fsync=off -c full_page_writes=off -c max_connections=100"
}

// NewPair starts a primary, takes a base backup of it, starts the standby
// on that backup and waits until it replicates synchronously. t's cleanup
// stops both and removes them. Without PostgreSQL it ends t through
// testenv.Missing.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	bin := binDir()
	if bin == "" {
		testenv.Missing(t, "PostgreSQL (initdb) is not installed")
	}
	p := &Pair{bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			testenv.Missing(t, "PostgreSQL's postgres user does not exist")
		}
		p.as = []string{"runuser", "-u", "postgres", "--"}
	}
	dir, err := os.MkdirTemp("", "spillway-pgpair-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(p.stop)
	if p.as != nil {
		if _, _, err := giveToPostgres(dir); err != nil {
			t.Fatal(err)
		}
	}
	p.primary, p.standby = filepath.Join(dir, "primary"), filepath.Join(dir, "standby")
	p.PrimarySocket, p.StandbySocket = filepath.Join(dir, "sp"), filepath.Join(dir, "ss")
	for _, d := range []string{p.PrimarySocket, p.StandbySocket} {
		if err := p.run("mkdir", d); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.run(filepath.Join(bin, "initdb"), "-D", p.primary, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		t.Fatal(err)
	}
	if err := p.start(p.primary, p.PrimarySocket); err != nil {
		t.Fatal(err)
	}
	if err := p.setSyncStandbys(p.PrimaryURL("postgres"), "*"); err != nil {
		t.Fatal(err)
	}
	// -R writes standby.signal and primary_conninfo; -X stream copies the
	// WAL written meanwhile.
	if err := p.run(filepath.Join(bin, "pg_basebackup"), "-h", p.PrimarySocket, "-U", "postgres", "-D", p.standby, "-R", "-X", "stream", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	if err := p.start(p.standby, p.StandbySocket); err != nil {
		t.Fatal(err)
	}
	if err := p.waitSync(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// URL is the address of database db on whichever of the two servers takes
// writes: both sockets, tried in turn, with target_session_attrs=read-write
// (a standby still in recovery is passed over), as a fleet's hosts would
// name a replicated ledger.
func (p *Pair) URL(db string) string {
	q := url.Values{}
	q.Set("host", p.PrimarySocket+","+p.StandbySocket)
	q.Set("target_session_attrs", "read-write")
	q.Set("connect_timeout", "5")
	return "postgres://postgres@/" + db + "?" + q.Encode()
}

// PrimaryURL is the address of database db on the primary alone.
func (p *Pair) PrimaryURL(db string) string {
	return "postgres://postgres@/" + db + "?host=" + url.QueryEscape(p.PrimarySocket)
}

// StandbyURL is the address of database db on the standby alone.
func (p *Pair) StandbyURL(db string) string {
	return "postgres://postgres@/" + db + "?host=" + url.QueryEscape(p.StandbySocket)
}

// CreateDB creates database db on the primary and waits until the standby
// has it.
func (p *Pair) CreateDB(db string) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.PrimaryURL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return err
	}
	// The synchronous commit means the standby has flushed the WAL, not
	// replayed it: until it has, a connection to the database there fails
	// with "does not exist". Wait for the replay.
	s, err := pgx.Connect(ctx, p.StandbyURL("postgres"))
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		if err := s.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n); err != nil {
			return err
		}
		if n == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the standby has not replayed CREATE DATABASE %s after 10 s", db)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CrashPrimary stops the primary as a crash does (pg_ctl stop -m
// immediate: every connection cut, no shutdown checkpoint). It stays down.
func (p *Pair) CrashPrimary() error {
	return p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.primary, "-m", "immediate", "-w", "stop")
}

// DetachStandby stops the standby's replication (its primary_conninfo
// emptied, the configuration reloaded) and waits until the primary has no
// standby: from then on a commit on the primary waits for a standby that
// never answers, and WAL written on the primary never reaches the standby.
func (p *Pair) DetachStandby() error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.StandbyURL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = ''"); err != nil {
		return err
	}
	if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	return p.waitStandbys(0, 30*time.Second)
}

// Promote makes the standby a primary (pg_ctl promote -w) that takes
// writes, and, as a failover's operator (or Patroni) would, sets its
// synchronous_standby_names empty: it has no standby of its own, and with
// '*' inherited from the old primary every commit would wait for one.
func (p *Pair) Promote() error {
	if err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.standby, "-w", "promote"); err != nil {
		return err
	}
	return p.setSyncStandbys(p.StandbyURL("postgres"), "")
}

// setSyncStandbys sets synchronous_standby_names of the server at u and
// reloads its configuration.
func (p *Pair) setSyncStandbys(u, names string) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = "+quoteLiteral(names)); err != nil {
		return err
	}
	_, err = c.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

// quoteLiteral quotes s as an SQL string literal (ALTER SYSTEM takes no
// parameters).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// WaitForSyncRepWaiter waits until a session of the primary waits for the
// standby to confirm its commit (wait event SyncRep): its commit is
// written on the primary and not acknowledged.
func (p *Pair) WaitForSyncRepWaiter(timeout time.Duration) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.PrimaryURL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("pgtest: no session waited for the standby within %v", timeout)
}

// waitSync waits until the primary has one synchronous standby streaming.
func (p *Pair) waitSync(timeout time.Duration) error {
	return p.waitStandbys(1, timeout)
}

// waitStandbys waits until the primary has n standbys streaming
// synchronously.
func (p *Pair) waitStandbys(n int, timeout time.Duration) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.PrimaryURL("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var got int
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'`).Scan(&got); err != nil {
			return err
		}
		if got == n {
			return nil
		}
	}
	return fmt.Errorf("pgtest: %d synchronous standbys streaming after %v, want %d", got, timeout, n)
}

// start starts the server of data on socket directory sock.
func (p *Pair) start(data, sock string) error {
	err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", data, "-l", data+".log", "-w", "-o", pairOpts(sock), "start")
	if err != nil {
		log, _ := os.ReadFile(data + ".log")
		return fmt.Errorf("%v\n%s", err, log)
	}
	return nil
}

// stop stops both servers, whichever still run, and removes them.
func (p *Pair) stop() {
	for _, d := range []string{p.primary, p.standby} {
		if d != "" {
			p.run(filepath.Join(p.bin, "pg_ctl"), "-D", d, "-m", "immediate", "stop")
		}
	}
	os.RemoveAll(p.dir)
}

// run runs argv as the servers' user.
func (p *Pair) run(argv ...string) error {
	return run(append(append([]string{}, p.as...), argv...))
}

// Async makes the primary acknowledge commits without waiting for a
// standby, as asynchronous replication does: with the standby detached,
// an acknowledged commit then exists on the primary alone.
func (p *Pair) Async() error { return p.setSyncStandbys(p.PrimaryURL("postgres"), "") }
