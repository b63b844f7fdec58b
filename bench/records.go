package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// records measures review ls and persisted ls with many records in the
// store, written directly through store (as closes would have left them:
// pending, review after, one sandbox, 1,000 a session).
func (b *bench) records(ctx context.Context) error {
	var first, full, pers [2][]time.Duration
	b.cfg.Records = sizesFrom("SPILLWAY_BENCH_RECORDS", b.cfg.Records)
	for i, n := range b.cfg.Records {
		root := filepath.Join(b.work, fmt.Sprintf("records-%d", n))
		// The records go straight into the store of a prepared state
		// directory, then the Env opens it.
		e, err := openEnv(ctx, root, snapshot.KindOverlay)
		if err != nil {
			return err
		}
		if err := e.Close(); err != nil {
			return err
		}
		d, err := timed(func() error {
			st, err := store.Open(filepath.Join(root, "store"))
			if err != nil {
				return err
			}
			return errors.Join(fillRecords(st, "rec", n), st.Close())
		})
		if err != nil {
			return fmt.Errorf("write %d records: %w", n, err)
		}
		if e, err = openEnv(ctx, root, snapshot.KindOverlay); err != nil {
			return err
		}
		b.logf("records: wrote %d in %s", n, fmtDur(d))
		reps := b.cfg.Reps
		if n > 100000 {
			reps = 1 // a full listing of a million records takes about a minute
		}
		for range b.cfg.Reps {
			d, err := timed(func() error { return firstPage(e, b.cfg.Page) })
			if err != nil {
				e.Close()
				return err
			}
			first[i] = append(first[i], d)
		}
		for range reps {
			var got int
			d, err := timed(func() error {
				recs, err := e.ReviewList(ctx, "")
				got = len(recs)
				return err
			})
			if err != nil || got != n {
				e.Close()
				return fmt.Errorf("review ls: %d records, %v", got, err)
			}
			full[i] = append(full[i], d)
			d, err = timed(func() error {
				recs, err := e.Persisted(ctx, "rec")
				got = len(recs)
				return err
			})
			if err != nil || got != n {
				e.Close()
				return fmt.Errorf("persisted ls: %d records, %v", got, err)
			}
			pers[i] = append(pers[i], d)
		}
		if err := e.Close(); err != nil {
			return err
		}
		grp := fmt.Sprintf("%d records", n)
		if err := b.persistedLsCLI(root, grp, n, reps); err != nil {
			return err
		}
		b.add(grp, fmt.Sprintf("review ls first page (%d rows, as the CLI streams them)", b.cfg.Page), first[i])
		b.add(grp, "review ls full listing (ReviewList)", full[i])
		b.add(grp, "persisted ls full listing (Persisted, streamed from the index)", pers[i])
	}
	name := func(what string) string {
		return fmt.Sprintf("%s %d / %d records", what, b.cfg.Records[1], b.cfg.Records[0])
	}
	b.ratio(name("review ls first page (streamed)"), median(first[1]), median(first[0]), 2)
	b.ratio(name("review ls full listing"), median(full[1]), median(full[0]), 0)
	b.ratio(name("persisted ls full listing"), median(pers[1]), median(pers[0]), 0)
	b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("persisted ls full listing of a %d-path state (issue 12)", b.cfg.Records[1]),
		Value: median(pers[1]).Seconds(), Target: 5, Unit: " s"})
	return nil
}

// persistedLsCLI times the spillway binary named by SPILLWAY_BENCH_CLI (if
// set) listing the whole state, as a user runs it: `spillway --root ROOT
// persisted ls rec`, and with --json, output to a pipe that counts lines.
func (b *bench) persistedLsCLI(root, grp string, n, reps int) error {
	bin := os.Getenv("SPILLWAY_BENCH_CLI")
	if bin == "" {
		return nil
	}
	for _, args := range [][]string{{"persisted", "ls", "rec"}, {"persisted", "ls", "--json", "rec"}} {
		var runs []time.Duration
		for range max(reps, 3) {
			cmd := exec.Command(bin, append([]string{"--root", root}, args...)...)
			var lines lineCounter
			cmd.Stdout, cmd.Stderr = &lines, os.Stderr
			d, err := timed(cmd.Run)
			if err != nil {
				return fmt.Errorf("%s %s: %w", bin, strings.Join(args, " "), err)
			}
			if want := n + 1; lines.n < want { // a header, or one line per row plus brackets
				return fmt.Errorf("%s %s: %d lines, want at least %d", bin, strings.Join(args, " "), lines.n, want)
			}
			runs = append(runs, d)
		}
		b.add(grp, "spillway "+strings.Join(args, " ")+" (whole state, CLI)", runs)
		if n == b.cfg.Records[1] && len(args) == 3 {
			b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("spillway persisted ls of a %d-path state, CLI (issue 12)", n),
				Value: median(runs).Seconds(), Target: 5, Unit: " s"})
		}
	}
	return nil
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// firstPage reads the first page of review ls the way a pager needs it:
// the pending index in id order, stopped after page rows.
func firstPage(e *persist.Env, page int) error {
	// What review ls does: stream the reviewable records, print a page.
	rows := 0
	err := e.ReviewEach(context.Background(), "", 0, func(*store.Record) error {
		rows++
		if rows == page {
			return store.ErrStop
		}
		return nil
	})
	if err == nil && rows != page {
		err = errors.New("first page is short")
	}
	return err
}

// fillRecords writes n pending records of distinct paths into sandbox sb.
func fillRecords(st *store.Store, sb string, n int) error {
	const perSession = 1000
	const batch = 2000
	now := time.Now().UTC()
	sessions := uint64((n + perSession - 1) / perSession)
	if err := st.Update(func(tx *store.Tx) error {
		return tx.PutSandbox(&store.Sandbox{Name: sb, Image: "img", Created: now, State: store.StateClosed,
			Session: sessions, Generation: sessions})
	}); err != nil {
		return err
	}
	for i := 0; i < n; i += batch {
		err := st.Update(func(tx *store.Tx) error {
			for j := i; j < min(n, i+batch); j++ {
				id, err := tx.NextRecordID()
				if err != nil {
					return err
				}
				r := &store.Record{
					ID: id, Sandbox: sb, Session: uint64(j/perSession + 1),
					Path: fmt.Sprintf("/home/user/Documents/p%02d/s%03d/doc%07d.odt", j%37, (j/37)%500, j),
					Kind: change.KindAdd, Type: "file", Size: int64(4096 + j%100000), Mode: 0o644, UID: 1000, GID: 1000,
					Mtime: now, Digest: fmt.Sprintf("sha256:%064x", j), Exception: "ex1", Review: "after",
					Status: change.StatusPending, Created: now,
				}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
