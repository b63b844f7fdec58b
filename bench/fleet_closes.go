package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/store"
)

// fleetCloses: concurrent clients, each a Store of its own (a process)
// with a sandbox and its lease, open and close sessions of 50 persisted
// files against one PostgreSQL. Each close runs the ledger transactions
// persist's close runs, in order: the session marked closing (token
// checked), the records an earlier try staged cleared, one batch of 50
// records staged with their current-state versions (token checked), and
// the commit (token checked, lease released, generation bumped, session
// and sandbox updated, audit entry). Each runs as persist runs it: the
// lease taken in UpdateLeaseTaker, the two commits in UpdateLeasedAudited,
// the rest in UpdateLeased. The open between closes (heartbeat, lease,
// session) is part of the loop, not of the close's latency.
//
// Then, side by side on fresh databases for as long, two bounds of
// the same cycle: the stage writing its rows blind (no reads, no counters:
// store's StageBlindForBench), and no stage at all. They say what the
// key-value layout's writes alone allow, whatever the close reads.
func (b *bench) fleetCloses(ctx context.Context) error {
	clients := 32
	dur := fleetSize(b.cfg, 30*time.Second, 4*time.Second, time.Second)
	if n := os.Getenv("SPILLWAY_BENCH_FLEET_CLIENTS"); n != "" {
		if _, err := fmt.Sscan(n, &clients); err != nil || clients < 1 {
			return fmt.Errorf("SPILLWAY_BENCH_FLEET_CLIENTS=%q: want a number of clients", n)
		}
	}
	stopProfile, err := cpuProfile(os.Getenv(childProfile))
	if err != nil {
		return err
	}
	r, err := b.runCloses(ctx, clients, dur, stageReal)
	stopProfile()
	if err != nil {
		return err
	}
	n := r.n
	rate := float64(n) / r.wall.Seconds()
	grp := fmt.Sprintf("fleet-closes (%d clients, 50 files a session)", clients)
	b.addValue(grp, "closes (open + close cycles) in "+fmtDur(r.wall), fmt.Sprint(n))
	b.addValue(grp, "closes per second", fmt.Sprintf("%.0f", rate))
	b.addValue(grp, "opens and closes that failed with a conflict (ErrConflict) and were run again", fmt.Sprint(r.conflicts))
	r.cpu.report(b, grp, "spillway", n, r.wall)
	b.addValue(grp, "close, ledger side (4 transactions): p50 / p99", fmtDur(percentile(r.lat, 50))+" / "+fmtDur(percentile(r.lat, 99)))
	b.addValue(grp, "commit transaction: p50 / p99", fmtDur(percentile(r.commits, 50))+" / "+fmtDur(percentile(r.commits, 99)))
	for k, name := range closeSteps {
		if len(r.steps[k]) > 0 {
			b.addValue(grp, "step "+name+": p50 / p99", fmtDur(percentile(r.steps[k], 50))+" / "+fmtDur(percentile(r.steps[k], 99)))
		}
	}
	if st, err := dbCounts(ctx, r.url); err == nil {
		// Each cycle rolls back one read-only transaction of its own (the
		// snapshot read of the current-state counters); the rest of the
		// rollbacks are serialization failures, run again.
		b.addValue(grp, "transactions committed / rolled back (serialization failures + 1 snapshot read a cycle)", fmt.Sprintf("%d / %d", st.commits, st.rollbacks))
		b.addValue(grp, "kv index scans (one a get or scan page) per cycle", fmt.Sprintf("%.0f", float64(st.idxScans)/float64(n)))
	}
	b.ratios = append(b.ratios, ratio{Name: "fleet closes per second / goal 500 (higher is better)", Value: rate / 500},
		ratio{Name: fmt.Sprintf("fleet commit p99 of %d clients", clients), Value: float64(percentile(r.commits, 99)) / 1e6, Target: 100, Unit: " ms"})
	b.logf("fleet-closes: %d closes in %s: %.0f/s, commit p99 %s, %d conflicts; CPU a close: clients %s, PostgreSQL %s",
		n, fmtDur(r.wall), rate, fmtDur(percentile(r.commits, 99)), r.conflicts, fmtDur(r.cpu.client/time.Duration(max(n, 1))), fmtDur(r.cpu.server/time.Duration(max(n, 1))))

	bgrp := fmt.Sprintf("fleet-closes bounds (%d clients, the same cycle, %s each)", clients, fmtDur(dur))
	bounds := []closeStage{stageWritesOnly, stageNone}
	if os.Getenv("SPILLWAY_BENCH_INDEX_COLUMNS") == "1" {
		bounds = append(bounds, stageWritesColumns)
	}
	for _, stage := range bounds {
		br, err := b.runCloses(ctx, clients, dur, stage)
		if err != nil {
			return fmt.Errorf("%s: %w", stage, err)
		}
		brate := float64(br.n) / br.wall.Seconds()
		b.addValue(bgrp, stage.String()+": closes per second", fmt.Sprintf("%.0f", brate))
		br.cpu.report(b, bgrp, stage.String(), br.n, br.wall)
		b.ratios = append(b.ratios, ratio{Name: "fleet closes per second / " + stage.String() + " (side by side)", Value: rate / brate})
		b.logf("fleet-closes, %s: %.0f/s; CPU a close: clients %s, PostgreSQL %s", stage, brate,
			fmtDur(br.cpu.client/time.Duration(max(br.n, 1))), fmtDur(br.cpu.server/time.Duration(max(br.n, 1))))
	}
	return nil
}

// closeStage is what a cycle's stage transaction does.
type closeStage int

const (
	stageReal       closeStage = iota // StageRecords, as persist's close
	stageWritesOnly                   // the same rows written blind
	stageNone                         // no stage transaction
	// the same written blind with each record's index keys as columns
	// of its row (SPILLWAY_BENCH_INDEX_COLUMNS=1)
	stageWritesColumns
)

func (s closeStage) String() string {
	switch s {
	case stageWritesOnly:
		return "the stage's writes alone"
	case stageNone:
		return "no stage"
	case stageWritesColumns:
		return "the stage's writes alone, index keys as columns"
	}
	return "the close"
}

// closeResult is what runCloses measured.
type closeResult struct {
	url          string
	n, conflicts int64
	wall         time.Duration
	cpu          cpuUse
	lat, commits []time.Duration
	steps        [len(closeSteps)][]time.Duration
}

// runCloses runs clients open and close cycles for dur on a fresh
// database, with stage as each close's stage transaction.
func (b *bench) runCloses(ctx context.Context, clients int, dur time.Duration, stage closeStage) (closeResult, error) {
	var r closeResult
	url, err := b.fleetDB()
	if err != nil {
		return r, err
	}
	r.url = url
	sts, closeAll, err := fleetStores(ctx, url, clients)
	if err != nil {
		return r, err
	}
	defer closeAll()
	if stage == stageWritesColumns {
		if err := sts[0].IndexColumnsForBench(ctx); err != nil {
			return r, err
		}
	}
	var closes, conflicts atomic.Int64
	errs := make([]error, clients)
	cs := make([]*closeClient, clients)
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	cpu0 := measureCPU(url)
	t0 := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &closeClient{st: sts[i], host: fmt.Sprintf("c%02d", i), sandbox: fmt.Sprintf("docs%02d", i), stage: stage}
			cs[i] = c
			if errs[i] = c.create(); errs[i] != nil {
				return
			}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				// An open that fails with ErrConflict is run again too.
				for errs[i] = c.open(); errors.Is(errs[i], store.ErrConflict); errs[i] = c.open() {
					conflicts.Add(1)
				}
				if errs[i] != nil {
					return
				}
				t1 := time.Now()
				var commit time.Duration
				for {
					// A close that fails with ErrConflict (serialization
					// failures past the driver's retries) is run again,
					// as its error tells the user to.
					commit, errs[i] = c.close()
					if !errors.Is(errs[i], store.ErrConflict) {
						break
					}
					conflicts.Add(1)
				}
				if errs[i] != nil {
					return
				}
				c.lat = append(c.lat, time.Since(t1))
				c.commits = append(c.commits, commit)
				closes.Add(1)
			}
		}()
	}
	wg.Wait()
	r.wall = time.Since(t0)
	r.cpu = measureCPU(url).minus(cpu0)
	r.cpu.client, r.cpu.self = r.cpu.self, 0 // the clients are this process
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	r.n, r.conflicts = closes.Load(), conflicts.Load()
	for _, c := range cs {
		r.lat, r.commits = append(r.lat, c.lat...), append(r.commits, c.commits...)
		for k := range closeSteps {
			r.steps[k] = append(r.steps[k], c.steps[k]...)
		}
	}
	return r, nil
}

// closeClient is one client: its Store, host id, sandbox, lease.
type closeClient struct {
	st            *store.Store
	host, sandbox string
	stage         closeStage
	token         uint64
	sb            *store.Sandbox
	steps         [len(closeSteps)][]time.Duration
	lat, commits  []time.Duration // each close's and its commit's
}

// closeSteps name the timed steps of a cycle.
var closeSteps = [6]string{"open (2 transactions)", "mark closing", "clear staged records", "drop current above", "stage 50 records", "commit"}

// step times fn as step i.
func (c *closeClient) step(i int, fn func() error) error {
	t0 := time.Now()
	err := fn()
	c.steps[i] = append(c.steps[i], time.Since(t0))
	return err
}

// create makes the client's sandbox.
func (c *closeClient) create() error {
	return c.st.Update(func(tx *store.Tx) error {
		return tx.PutSandbox(&store.Sandbox{Name: c.sandbox, Image: "base", Created: tx.Now(), State: store.StateClosed})
	})
}

// open takes the lease and opens a session, as persist's open does in its
// two transactions (takeLease; the session committed).
func (c *closeClient) open() error {
	return c.step(0, c.open2)
}

func (c *closeClient) open2() error {
	err := c.st.UpdateLeaseTaker(c.sandbox, func(tx *store.Tx) error {
		if _, err := tx.Heartbeat(c.host, time.Minute); err != nil {
			return err
		}
		l, _, err := tx.TakeLease(c.sandbox, c.host)
		if err != nil {
			return err
		}
		c.token = l.Token
		_, err = tx.GetSandbox(c.sandbox)
		return err
	})
	if err != nil {
		return err
	}
	return c.st.UpdateLeasedAudited(c.sandbox, c.host, c.token, func(tx *store.Tx) error {
		sb, err := tx.GetSandbox(c.sandbox)
		if err != nil {
			return err
		}
		sb.State, sb.Session, sb.OpenGeneration, sb.Path = store.StateOpen, sb.Session+1, sb.Generation, "/var/lib/spillway/mnt/"+c.sandbox
		ses := &store.Session{Sandbox: sb.Name, N: sb.Session, State: store.StateOpen, Opened: tx.Now(), Generation: sb.Generation, Host: c.host, Token: c.token}
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		c.sb = sb
		_, err = tx.Append(tx.Now(), "sandbox.open", sb.Name, map[string]string{"session": fmt.Sprint(sb.Session), "generation": fmt.Sprint(sb.Generation)})
		return err
	})
}

// close runs the close's ledger transactions and returns how long the
// commit took.
func (c *closeClient) close() (time.Duration, error) {
	name, n := c.sandbox, c.sb.Session
	err := c.step(1, func() error {
		return c.st.UpdateLeased(name, c.host, c.token, func(tx *store.Tx) error {
			sb, err := tx.GetSandbox(name)
			if err != nil {
				return err
			}
			ses, err := tx.GetSession(name, n)
			if err != nil {
				return err
			}
			sb.State, ses.State = store.StateClosing, store.StateClosing
			if err := tx.PutSession(ses); err != nil {
				return err
			}
			return tx.PutSandbox(sb)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("mark closing: %w", err)
	}
	// persist's close deletes the session's staged records and drops
	// index versions above G only after an earlier try of the close (or,
	// for the versions, an abandoned session), which this loop never has:
	// steps 2 and 3 are not run, and not reported.
	gen := c.sb.Generation
	if c.stage == stageNone {
		return c.commit(name, n)
	}
	err = c.step(4, func() error {
		// as persist's close stages a batch (persist/close_collect.go):
		// UpdateLeased checks the token
		return c.st.UpdateLeased(name, c.host, c.token, func(tx *store.Tx) error {
			recs := c.records(tx.Now(), n)
			if c.stage == stageWritesOnly || c.stage == stageWritesColumns {
				// every cycle writes the same paths: their versions at
				// gen-1 are the stale ones StageRecords would drop
				var stale uint64
				if gen > 1 {
					stale = gen - 1
				}
				if c.stage == stageWritesColumns {
					return tx.StageBlindColumnsForBench(name, gen+1, recs, stale)
				}
				return tx.StageBlindForBench(name, gen+1, recs, stale)
			}
			return tx.StageRecords(name, gen+1, recs, nil)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("stage: %w", err)
	}
	return c.commit(name, n)
}

// records are the 50 records a close of session n stages: the same paths
// every time, modified.
func (c *closeClient) records(now time.Time, n uint64) []*store.Record {
	recs := make([]*store.Record, 50)
	for j := range recs {
		p := fmt.Sprintf("/home/user/Documents/report-%02d.odt", j)
		recs[j] = &store.Record{Sandbox: c.sandbox, Session: n, Path: p, Kind: change.KindModify, Type: "file", Size: 4096, Mode: 0o644,
			UID: 1000, GID: 1000, Mtime: now, Digest: fmt.Sprintf("sha256:%032x%032x", n, j), Exception: "ex1", Review: "after",
			Status: change.StatusPending, Created: now}
	}
	return recs
}

// commit runs the close's commit transaction and returns how long it took.
func (c *closeClient) commit(name string, n uint64) (time.Duration, error) {
	t0 := time.Now()
	err := c.step(5, func() error {
		// as persist's commit (persist/close_commit.go, commitUpdate)
		return c.st.UpdateLeasedAudited(name, c.host, c.token, func(tx *store.Tx) error {
			if err := tx.ReleaseLease(name, c.host, c.token); err != nil {
				return err
			}
			sb, err := tx.GetSandbox(name)
			if err != nil {
				return err
			}
			sb.Generation++
			ses, err := tx.GetSession(name, n)
			if err != nil {
				return err
			}
			ses.State, ses.Closed, ses.ClosedGeneration = store.StateClosed, tx.Now(), sb.Generation
			ses.Report = make([]byte, 300) // about the size of a close report without its file list
			if err := tx.PutSession(ses); err != nil {
				return err
			}
			sb.State, sb.Path = store.StateClosed, ""
			if err := tx.PutSandbox(sb); err != nil {
				return err
			}
			_, err = tx.Append(tx.Now(), "sandbox.close", name, map[string]string{"session": fmt.Sprint(n), "generation": fmt.Sprint(sb.Generation),
				"persisted_files": "50", "persisted_bytes": "204800", "refused": "0", "discarded": "0"})
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return time.Since(t0), nil
}

// pgCounts are a database's statistics.
type pgCounts struct{ commits, rollbacks, idxScans int64 }

// dbCounts reads the database's committed and rolled-back transactions and
// the index scans of kv (the statistics collector may lag by a moment).
func dbCounts(ctx context.Context, url string) (pgCounts, error) {
	var c pgCounts
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return c, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT d.xact_commit, d.xact_rollback, coalesce(t.idx_scan, 0)
FROM pg_stat_database d, pg_stat_user_tables t WHERE d.datname = current_database() AND t.relname = 'kv'`).Scan(&c.commits, &c.rollbacks, &c.idxScans)
	return c, err
}
