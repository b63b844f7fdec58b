package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/store"
)

// The fleet scenarios (issue 16) run against a throwaway PostgreSQL
// cluster that internal/pgtest starts (initdb in a temporary directory,
// unix socket, fsync=off, synchronous_commit=off), or the one
// SPILLWAY_TEST_PG names; every scenario gets a database of its own.
// `go run ./bench --only fleet` runs them all, `--only fleet-opens` one.

// fleetPG is whether this run started the cluster (stopFleetPG stops it).
var fleetPG bool

// fleetDB returns the URL of a new database on the cluster, starting it at
// the first call.
func (b *bench) fleetDB() (string, error) {
	if !fleetPG {
		t0 := time.Now()
		if err := pgtest.Start(); err != nil {
			return "", fmt.Errorf("fleet scenarios need PostgreSQL: %w", err)
		}
		fleetPG = true
		b.logf("fleet: PostgreSQL cluster up in %s", fmtDur(time.Since(t0)))
	}
	return pgtest.NewDB()
}

// stopFleetPG stops the cluster the fleet scenarios started.
func stopFleetPG() {
	if fleetPG {
		pgtest.Stop()
		fleetPG = false
	}
}

// fleetStores opens n Stores on url: n processes of their own (a Store
// serialises its own Updates, so one per simulated host or client).
func fleetStores(ctx context.Context, url string, n int) ([]*store.Store, func(), error) {
	var sts []*store.Store
	closeAll := func() {
		for _, s := range sts {
			s.Close()
		}
	}
	for range n {
		s, err := store.OpenURL(ctx, url, "")
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		sts = append(sts, s)
	}
	return sts, closeAll, nil
}

// percentile returns the p-th percentile (0..100) of s, nearest rank.
func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(float64(len(c))*p/100+0.999999) - 1
	return c[max(0, min(i, len(c)-1))]
}

// fleetSize picks the size of a fleet scenario for the run's mode.
func fleetSize[T any](cfg config, full, quick, tiny T) T {
	switch cfg.Name {
	case "full":
		return full
	case "quick":
		return quick
	}
	return tiny
}
