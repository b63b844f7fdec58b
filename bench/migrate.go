package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/spillway/spillway/store"
)

// migrate measures the schema 1 → 3 migration of a store of many records
// (Open does it), in a child process so that its peak memory is its own.
func (b *bench) migrate(ctx context.Context) error {
	n := b.cfg.Records[len(b.cfg.Records)-1]
	if v, err := strconv.Atoi(os.Getenv("SPILLWAY_BENCH_MIGRATE_N")); err == nil && v > 0 {
		n = v // another size, e.g. to profile
	}
	dir := filepath.Join(b.work, fmt.Sprintf("migrate-%d", n), "store")
	st, err := store.Open(dir)
	if err != nil {
		return err
	}
	if err := fillRecords(st, "rec", n); err != nil {
		st.Close()
		return err
	}
	if err := st.DowngradeRecordsForBench(); err != nil {
		st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	before := dirBytes(dir)
	res, err := migrateInChild(dir)
	if err != nil {
		return err
	}
	grp := fmt.Sprintf("migration of %d records (schema 1 → 3)", n)
	b.add(grp, "Open with migration (child process)", []time.Duration{res.Close})
	b.addValue(grp, "peak Go heap (live objects, sampled every 10 ms)", fmt.Sprintf("%d MiB", res.HeapPeak>>20))
	b.addValue(grp, "peak RSS (VmHWM)", fmt.Sprintf("%d MiB", res.HWM>>20))
	b.addValue(grp, "store on disk before / after (badger defaults but 64 MiB value-log files, 16 MiB memtables)",
		fmt.Sprintf("%d MiB / %d MiB", before>>20, dirBytes(dir)>>20))
	return nil
}

// childMigrate is the child's job "migrate": open (and so migrate) one store.
func childMigrate() error {
	hs := sampleHeap()
	var st *store.Store
	d, err := timed(func() (err error) {
		st, err = store.Open(os.Getenv(childRoot))
		return err
	})
	if err != nil {
		return err
	}
	peak := hs.peak()
	if err := st.Close(); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return json.NewEncoder(os.Stdout).Encode(childResult{Close: d, HeapPeak: peak, HeapSys: ms.HeapSys, HWM: peakRSS()})
}
