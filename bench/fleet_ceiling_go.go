package main

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ceilingSQL is the close laid out for SQL (one row per record, real
// indexes) that scripts/pg-close-ceiling.sh runs with pgbench.
//
//go:embed sql/ceiling-schema.sql sql/ceiling-indexes.sql sql/ceiling-open.sql sql/ceiling-commit.sql
var ceilingSQL embed.FS

// fleetCeilingGo: the cycle of scripts/pg-close-ceiling.sh (open, mark
// closing, commit of 50 records with their index, current-state and
// change-log rows: bench/sql/ceiling-*.sql) run by 32 Go clients with pgx,
// one connection each, every transaction one pgx.Batch (one round trip,
// statements prepared and cached), then by pgbench (C, prepared, one
// statement a round trip) on a second fresh database of the same layout:
// the best a relational PostgreSQL driver written in Go could reach on
// this machine, next to what a C client reaches.
func (b *bench) fleetCeilingGo(ctx context.Context) error {
	const clients = 32
	dur := fleetSize(b.cfg, 30*time.Second, 4*time.Second, time.Second)
	txs, err := ceilingCycle()
	if err != nil {
		return err
	}
	url, err := b.fleetDB()
	if err != nil {
		return err
	}
	if err := ceilingSchema(ctx, url); err != nil {
		return err
	}
	grp := fmt.Sprintf("fleet-ceiling-go (%d clients, relational layout, 50 records a close)", clients)

	conns := make([]*pgx.Conn, clients)
	closeConns := func() {
		for i, c := range conns {
			if c != nil {
				c.Close(context.Background())
				conns[i] = nil
			}
		}
	}
	defer closeConns()
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, url); err != nil {
			return err
		}
	}
	var cycles, retries atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	m0 := measureCPU(url)
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := conns[i]
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t1 := time.Now()
				for _, tx := range txs {
					n, err := ceilingTx(ctx, conn, tx, i)
					retries.Add(int64(n))
					if err != nil {
						errs[i] = err
						return
					}
				}
				lat[i] = append(lat[i], time.Since(t1))
				cycles.Add(1)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	goCPU := measureCPU(url).minus(m0)
	goCPU.client, goCPU.self = goCPU.self, 0
	closeConns()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Nor the vacuum of this database's tables nor its checkpoint in
	// pgbench's figures.
	if err := dropDB(ctx, url); err != nil {
		b.logf("fleet-ceiling-go: %v", err)
	}
	var all []time.Duration
	for i := range clients {
		all = append(all, lat[i]...)
	}
	n := cycles.Load()
	if n == 0 {
		return fmt.Errorf("fleet-ceiling-go: no cycle finished in %s", fmtDur(wall))
	}
	rate := float64(n) / wall.Seconds()
	b.addValue(grp, "Go (pgx, 1 batch a transaction): cycles (open + close) in "+fmtDur(wall), fmt.Sprint(n))
	b.addValue(grp, "Go: closes per second", fmt.Sprintf("%.0f", rate))
	b.addValue(grp, "Go: cycle (3 transactions, 3 round trips): p50 / p99", fmtDur(percentile(all, 50))+" / "+fmtDur(percentile(all, 99)))
	goCPU.report(b, grp, "Go", n, wall)
	b.addValue(grp, "Go: transactions run again (serialization failure or deadlock)", fmt.Sprint(retries.Load()))
	b.ratios = append(b.ratios, ratio{Name: "Go client on the relational layout, closes per second / goal 500 (higher is better)", Value: rate / 500})
	b.logf("fleet-ceiling-go: Go: %d cycles in %s: %.0f/s, p99 %s, client CPU %s a cycle", n, fmtDur(wall), rate, fmtDur(percentile(all, 99)), fmtDur(goCPU.client/time.Duration(n)))

	pb, err := b.ceilingPgbench(ctx, clients, dur)
	if err != nil {
		if errors.Is(err, errNoPgbench) {
			b.note("fleet-ceiling-go: pgbench is not installed: the Go figure only")
			return nil
		}
		return err
	}
	b.addValue(grp, "pgbench (C, -M prepared, 1 statement a round trip): cycles in "+fmtDur(pb.wall), fmt.Sprint(pb.cycles))
	b.addValue(grp, "pgbench: closes per second", fmt.Sprintf("%.0f", pb.tps))
	b.addValue(grp, "pgbench: cycle, mean", fmt.Sprintf("%.2fms", pb.latMs))
	pb.cpu.report(b, grp, "pgbench", pb.cycles, pb.wall)
	if pb.tps > 0 {
		b.ratios = append(b.ratios, ratio{Name: "relational cycle: Go (pgx) closes per second / pgbench's (higher is better)", Value: rate / pb.tps})
	}
	b.logf("fleet-ceiling-go: pgbench: %d cycles: %.0f/s", pb.cycles, pb.tps)
	return nil
}

// cpuUse is CPU time spent: by this process (besides the client), by the
// client measured, by
// the PostgreSQL cluster's processes (the postmaster and its children,
// live or reaped; 0 when the cluster is not one pgtest started) and by
// the whole machine (/proc/stat).
type cpuUse struct {
	self, client, server, machine time.Duration
	serverOK                      bool
}

func (a cpuUse) minus(b cpuUse) cpuUse {
	return cpuUse{self: a.self - b.self, client: a.client - b.client, server: a.server - b.server,
		machine: a.machine - b.machine, serverOK: a.serverOK && b.serverOK}
}

// measureCPU reads the CPU used so far by this process, the cluster of
// url and the machine.
func measureCPU(url string) cpuUse {
	var u cpuUse
	u.self = rusageSelf()
	u.server, u.serverOK = clusterCPU(url)
	u.machine = machineCPU()
	return u
}

// report adds the per-cycle CPU figures of n cycles in wall.
func (a cpuUse) report(b *bench, grp, who string, n int64, wall time.Duration) {
	if n <= 0 {
		return
	}
	per := func(d time.Duration) string { return fmtDur(d / time.Duration(n)) }
	b.addValue(grp, who+": client process CPU per cycle (user+sys)", per(a.client))
	if !a.serverOK {
		return
	}
	b.addValue(grp, who+": PostgreSQL's CPU per cycle (the cluster's processes)", per(a.server))
	if a.machine > 0 && wall > 0 {
		other := max(0, a.machine-a.client-a.server-a.self)
		b.addValue(grp, who+": CPU of other processes meanwhile, share of the machine's cores",
			fmt.Sprintf("%.0f%%", 100*other.Seconds()/(wall.Seconds()*float64(runtime.NumCPU()))))
	}
}

// ceilingCycle reads the open and commit scripts into their transactions
// (BEGIN ... COMMIT, one statement a line), :client_id made $1.
func ceilingCycle() ([][]string, error) {
	var txs [][]string
	for _, name := range []string{"sql/ceiling-open.sql", "sql/ceiling-commit.sql"} {
		text, err := ceilingSQL.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var tx []string
		for line := range strings.SplitSeq(string(text), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "--") {
				continue
			}
			stmt := strings.ReplaceAll(strings.TrimSuffix(line, ";"), ":client_id", "$1")
			tx = append(tx, stmt)
			if strings.HasPrefix(stmt, "COMMIT") {
				txs = append(txs, tx)
				tx = nil
			}
		}
		if tx != nil {
			return nil, fmt.Errorf("%s: a transaction without COMMIT", name)
		}
	}
	if len(txs) != 3 {
		return nil, fmt.Errorf("ceiling cycle: %d transactions, want 3 (open, mark closing, commit)", len(txs))
	}
	return txs, nil
}

// ceilingSchema creates the tables, sequences and indexes of the layout.
func ceilingSchema(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, name := range []string{"sql/ceiling-schema.sql", "sql/ceiling-indexes.sql"} {
		text, err := ceilingSQL.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := conn.PgConn().Exec(ctx, string(text)).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// Each run starts without the dirty pages of what ran before it
	// (needs a superuser, as pgtest's postgres is; best effort).
	conn.Exec(ctx, "CHECKPOINT")
	return nil
}

// dropDB drops url's database, from the cluster's postgres database.
func dropDB(ctx context.Context, url string) error {
	u, err := neturl.Parse(url)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ceilingTx runs one transaction for client i as one batch, again after a
// serialization failure or a deadlock, and returns how many times it ran
// again.
func ceilingTx(ctx context.Context, conn *pgx.Conn, tx []string, i int) (int, error) {
	for again := 0; ; again++ {
		var bt pgx.Batch
		for _, s := range tx {
			if strings.Contains(s, "$1") {
				bt.Queue(s, i)
			} else {
				bt.Queue(s)
			}
		}
		err := conn.SendBatch(ctx, &bt).Close()
		if err == nil {
			return again, nil
		}
		// The pipeline ends with one Sync: a failed statement leaves the
		// transaction open and aborted.
		if conn.PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
				return again, errors.Join(err, rerr)
			}
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40001" && pe.Code != "40P01") {
			return again, err
		}
	}
}

// rusageSelf returns this process's CPU time so far (user+sys).
func rusageSelf() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU returns the CPU time all cores spent busy since boot (the
// first line of /proc/stat: user, nice, system, irq, softirq, steal), 0
// when it cannot be read.
func machineCPU() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fs := strings.Fields(sc.Text())
	if len(fs) < 9 || fs[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, k := range []int{1, 2, 3, 6, 7, 8} { // idle (4) and iowait (5) left out
		v, err := strconv.ParseInt(fs[k], 10, 64)
		if err != nil {
			return 0
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// clusterCPU returns the CPU time used so far by the PostgreSQL cluster
// serving url, if it is one pgtest started (its socket directory in host=
// and its data directory in there): the postmaster's own and reaped
// children's time plus its live children's. false when it cannot be read.
func clusterCPU(url string) (time.Duration, bool) {
	u, err := neturl.Parse(url)
	if err != nil {
		return 0, false
	}
	host := u.Query().Get("host")
	if !filepath.IsAbs(host) {
		return 0, false
	}
	pidText, err := os.ReadFile(filepath.Join(host, "data", "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidText), "\n", 2)[0]))
	if err != nil {
		return 0, false
	}
	// A child reaped while its siblings are read would be counted in
	// neither sum (or both): read again until the postmaster's reaped
	// time did not change meanwhile.
	for range 100 {
		f, ok := procStat(pid)
		if !ok {
			return 0, false
		}
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return 0, false
		}
		ticks := f.utime + f.stime + f.cutime + f.cstime
		for _, e := range ents {
			child, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if c, ok := procStat(child); ok && c.ppid == pid {
				ticks += c.utime + c.stime
			}
		}
		if g, ok := procStat(pid); !ok || g.cutime != f.cutime || g.cstime != f.cstime {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return time.Duration(ticks) * 10 * time.Millisecond, true // USER_HZ is 100 on Linux
	}
	return 0, false
}

// procFields are fields of /proc/PID/stat, times in clock ticks.
type procFields struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// procStat reads /proc/PID/stat.
func procStat(pid int) (procFields, bool) {
	var f procFields
	text, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return f, false
	}
	// The command name, in parentheses, may hold spaces: the fields
	// that follow start at the state (field 3).
	i := strings.LastIndexByte(string(text), ')')
	if i < 0 {
		return f, false
	}
	fs := strings.Fields(string(text[i+1:]))
	if len(fs) < 15 {
		return f, false
	}
	f.ppid, _ = strconv.Atoi(fs[1])
	for k, p := range []*int64{&f.utime, &f.stime, &f.cutime, &f.cstime} {
		v, err := strconv.ParseInt(fs[11+k], 10, 64)
		if err != nil {
			return f, false
		}
		*p = v
	}
	return f, true
}

// errNoPgbench is returned when pgbench is not installed.
var errNoPgbench = errors.New("pgbench is not installed")

// pgbenchResult is what one pgbench run reported and cost.
type pgbenchResult struct {
	tps, latMs float64
	cycles     int64
	wall       time.Duration // pgbench's run, its connections included
	cpu        cpuUse
}

// ceilingPgbench runs the cycle with pgbench as scripts/pg-close-ceiling.sh
// does (-n -M prepared -c clients -j 2 -T seconds), on a fresh database of
// the same layout; as the postgres user when root.
func (b *bench) ceilingPgbench(ctx context.Context, clients int, dur time.Duration) (pgbenchResult, error) {
	var r pgbenchResult
	bin := pgbenchPath()
	if bin == "" {
		return r, errNoPgbench
	}
	url, err := b.fleetDB()
	if err != nil {
		return r, err
	}
	if err := ceilingSchema(ctx, url); err != nil {
		return r, err
	}
	dir, err := os.MkdirTemp("", "spillway-bench-pgbench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	var script []byte
	for _, name := range []string{"sql/ceiling-open.sql", "sql/ceiling-commit.sql"} {
		text, err := ceilingSQL.ReadFile(name)
		if err != nil {
			return r, err
		}
		script = append(script, text...)
	}
	cycle := filepath.Join(dir, "cycle.sql")
	if err := os.WriteFile(cycle, script, 0o644); err != nil {
		return r, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // readable by postgres
		return r, err
	}
	secs := max(1, int(dur.Round(time.Second)/time.Second))
	// The database's URL (its socket directory in host=) as pgbench's
	// dbname: libpq expands it.
	argv := []string{bin, "-n", "-M", "prepared", "-c", fmt.Sprint(clients), "-j", "2", "-T", fmt.Sprint(secs), "-f", cycle, url}
	if os.Geteuid() == 0 {
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	m0 := measureCPU(url)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	r.wall = time.Since(t0)
	r.cpu = measureCPU(url).minus(m0)
	if err != nil {
		return r, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		// wait4's usage of runuser includes the pgbench it waited for.
		r.cpu.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	field := func(re string) (string, bool) {
		m := regexp.MustCompile(re).FindSubmatch(out)
		if m == nil {
			return "", false
		}
		return string(m[1]), true
	}
	s, ok := field(`(?m)^tps = ([0-9.]+)`)
	if !ok {
		return r, fmt.Errorf("pgbench: no tps in its output:\n%s", out)
	}
	r.tps, _ = strconv.ParseFloat(s, 64)
	if s, ok := field(`(?m)^number of transactions actually processed: ([0-9]+)`); ok {
		r.cycles, _ = strconv.ParseInt(s, 10, 64)
	}
	if s, ok := field(`(?m)^latency average = ([0-9.]+) ms`); ok {
		r.latMs, _ = strconv.ParseFloat(s, 64)
	}
	if s, ok := field(`(?m)^number of failed transactions: ([0-9]+)`); ok && s != "0" {
		return r, fmt.Errorf("pgbench: %s failed transactions:\n%s", s, out)
	}
	return r, nil
}

// pgbenchPath finds pgbench: the newest PostgreSQL's, else on PATH.
func pgbenchPath() string {
	ds, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	slices.SortFunc(ds, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return va - vb
	})
	if len(ds) > 0 {
		return ds[len(ds)-1]
	}
	p, _ := exec.LookPath("pgbench")
	return p
}
