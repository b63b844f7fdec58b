package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
)

// exportSizes are the files persisted for the export scenario, and the
// interleaved runs, per mode. SPILLWAY_BENCH_EXPORT_N sets another number
// of files; SPILLWAY_BENCH_EXPORT_PPROF=FILE writes a CPU profile of the
// timed runs (the export's and tar's waits).
var exportSizes = map[string][2]int{"full": {100000, 7}, "quick": {2000, 3}, "tiny": {200, 1}}

// export is issue 12's whole-tree export check: `persisted export SANDBOX /
// -` of a state of N 4 KiB files into a tar file, against `tar -cf` of
// the same files in the mounted sandbox root, runs interleaved.
func (b *bench) export(ctx context.Context) error {
	size := exportSizes[b.cfg.Name]
	n, reps := size[0], size[1]
	if v, err := strconv.Atoi(os.Getenv("SPILLWAY_BENCH_EXPORT_N")); err == nil && v > 0 {
		n = v
	}
	root := filepath.Join(b.work, "export")
	e, err := openEnv(ctx, root, snapshot.KindOverlay)
	if err != nil {
		return err
	}
	defer e.Close()
	if _, err := b.importImage(ctx, e, "img", imageSpec{Files: 100, Docs: 10, Seed: seed + 12}); err != nil {
		return err
	}
	if err := e.CreateSandbox("exp", "img"); err != nil {
		return err
	}
	x := &exceptions.Exception{Sandbox: "exp", Patterns: []string{"/home/user/Documents/**"}, Reason: "keep documents",
		Limits: exceptions.Limits{MaxFiles: int64(n) + 1000, MaxBytes: int64(n+1000) * 8192}}
	if _, err := e.AddException(ctx, x); err != nil {
		return err
	}
	op, err := e.OpenSandbox(ctx, "exp")
	if err != nil {
		return err
	}
	if err := manyFiles(op.Path, "home/user/Documents/export", n, func(*rand.Rand) int { return 4096 }); err != nil {
		return err
	}
	d, err := timed(func() error {
		sum, err := e.CloseSandbox(ctx, "exp", persist.CloseOptions{})
		if err == nil && len(sum.Persisted) < n {
			err = fmt.Errorf("close persisted %d files, want %d", len(sum.Persisted), n)
		}
		return err
	})
	if err != nil {
		return err
	}
	b.logf("export: persisted %d files in %s", n, fmtDur(d))
	// The same files, mounted: the open lays the persisted state out.
	if op, err = e.OpenSandbox(ctx, "exp"); err != nil {
		return err
	}
	out := filepath.Join(b.work, "export.tar")
	stop, err := cpuProfile(os.Getenv("SPILLWAY_BENCH_EXPORT_PPROF"))
	if err != nil {
		return err
	}
	defer stop()
	var exps, tars []time.Duration
	for rep := range reps {
		settle()
		d, err := timed(func() error { return exportTo(ctx, e, out) })
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		exps = append(exps, d)
		settle()
		t, err := timed(func() error { return sh(op.Path, "tar", "-cf", out, "home/user/Documents") })
		if err != nil {
			return err
		}
		tars = append(tars, t)
		b.logf("export rep %d: export %s, tar -cf %s", rep+1, fmtDur(d), fmtDur(t))
	}
	os.Remove(out)
	grp := fmt.Sprintf("whole-state export of %d files", n)
	ex := b.add(grp, "persisted export SANDBOX / - > file (derive, check digests, write)", exps)
	tr := b.add(grp, "tar -cf of the same mounted tree", tars)
	b.ratio(fmt.Sprintf("export of %d files / tar -cf (issue 12)", n), ex, tr, 1.5)
	_, err = e.CloseSandbox(ctx, "exp", persist.CloseOptions{})
	return err
}

// exportTo writes the whole current state of sandbox exp as a tar file, as
// `spillway persisted export exp / - > out` does.
func exportTo(ctx context.Context, e *persist.Env, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	set, err := e.Export(ctx, "exp", "/", persist.At{})
	if err == nil {
		_, err = e.ExportTar(ctx, set, f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
