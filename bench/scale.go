package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
)

// close100 is issue 2's check: a close of about 100 changes costs about the
// same on a small and a large image (overlay reads only the upperdir).
func (b *bench) close100(ctx context.Context) error {
	var closes, opens [2][]time.Duration
	for i, n := range b.cfg.Close100N {
		root := filepath.Join(b.work, fmt.Sprintf("close100-%d", n))
		e, err := openEnv(ctx, root, snapshot.KindOverlay)
		if err != nil {
			return err
		}
		g, err := b.importImage(ctx, e, "img", imageSpec{Files: n, Docs: 10, Seed: seed + 1})
		if err != nil {
			e.Close()
			return err
		}
		for rep := range b.cfg.Reps {
			name := fmt.Sprintf("c%d", rep)
			d, c, err := b.close100Once(ctx, e, g, name, rep)
			if err != nil {
				e.Close()
				return fmt.Errorf("close100 N=%d: %w", n, err)
			}
			opens[i] = append(opens[i], d)
			closes[i] = append(closes[i], c)
		}
		if err := e.Close(); err != nil {
			return err
		}
		grp := fmt.Sprintf("close %d changes N=%d", b.cfg.Close100, n)
		b.add(grp, "open", opens[i])
		b.add(grp, "close", closes[i])
	}
	b.ratio(fmt.Sprintf("close of %d changes N=%d / N=%d (issue 2)", b.cfg.Close100, b.cfg.Close100N[1], b.cfg.Close100N[0]),
		median(closes[1]), median(closes[0]), 1.2)
	return nil
}

func (b *bench) close100Once(ctx context.Context, e *persist.Env, g *genImage, name string, rep int) (open, cl time.Duration, err error) {
	if err := e.CreateSandbox(name, "img"); err != nil {
		return 0, 0, err
	}
	settle()
	var op *persist.Opened
	open, err = timed(func() (err error) {
		op, err = e.OpenSandbox(ctx, name)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	r := rand.New(rand.NewPCG(seed, uint64(rep)))
	nMod, nAdd := b.cfg.Close100*4/10, b.cfg.Close100*4/10
	touched := pick(r, g.Other, b.cfg.Close100-nAdd)
	for i, p := range touched {
		full := filepath.Join(op.Path, p)
		if i < nMod {
			err = appendTo(full, content(r, 100))
		} else {
			err = os.Remove(full)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	for i := range nAdd {
		if err := writeGen(op.Path, fmt.Sprintf("/var/lib/newapp/state%03d", i), content(r, 2000)); err != nil {
			return 0, 0, err
		}
	}
	settle()
	var sum *persist.CloseSummary
	cl, err = timed(func() (err error) {
		sum, err = e.CloseSandbox(ctx, name, persist.CloseOptions{})
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	if sum.Discarded.Count < int64(b.cfg.Close100) {
		return 0, 0, fmt.Errorf("close discarded %d changes, want at least %d", sum.Discarded.Count, b.cfg.Close100)
	}
	return open, cl, e.RemoveSandbox(ctx, name, false, nil)
}

// discard closes a session that made a huge number of small files (a build
// cache, say), all discarded, in a child process to read its peak memory.
func (b *bench) discard(ctx context.Context) error {
	n := b.cfg.DiscardFiles
	root := filepath.Join(b.work, "discard")
	x := &exceptions.Exception{Sandbox: "big", Patterns: []string{"/home/user/Documents/**"}, Reason: "keep documents"}
	d, err := b.floodSession(ctx, root, seed+2, x, n)
	if err != nil {
		return err
	}
	b.logf("discard: wrote %d files in %s", n, fmtDur(d))
	settle()
	res, err := closeInChild(root, "big", os.Getenv("SPILLWAY_BENCH_DISCARD_PPROF"))
	if err != nil {
		return err
	}
	if res.Discarded < int64(n) {
		return fmt.Errorf("close discarded %d changes, want at least %d", res.Discarded, n)
	}
	grp := fmt.Sprintf("close %d discarded files", n)
	b.add(grp, "close (CloseSandbox, in a child)", []time.Duration{res.Close})
	b.add(grp, "whole command (child: open env, close, release)", []time.Duration{res.Total})
	b.addValue(grp, "peak RSS of the child (VmHWM)", fmt.Sprintf("%d MiB", res.HWM>>20))
	b.addValue(grp, "wait4 ru_maxrss (includes the parent's at exec)", fmt.Sprintf("%d MiB", res.MaxRSS>>20))
	b.addValue(grp, "Go heap reserved at the end (HeapSys)", fmt.Sprintf("%d MiB", res.HeapSys>>20))
	b.ratios = append(b.ratios, ratio{Name: fmt.Sprintf("peak RSS closing %d discarded files", n),
		Value: float64(res.HWM >> 20), Target: 256, Unit: " MiB"})
	return nil
}

// manyFiles writes n small files under dir (a path inside root), 1,000 a
// directory, with two writers.
func manyFiles(root, dir string, n int, size func(*rand.Rand) int) error {
	const perDir = 1000
	dirs := (n + perDir - 1) / perDir
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for d := w; d < dirs; d += 2 {
				dp := filepath.Join(root, dir, fmt.Sprintf("d%04d", d))
				if err := os.MkdirAll(dp, 0o755); err != nil {
					errs[w] = err
					return
				}
				for i := d * perDir; i < min(n, (d+1)*perDir); i++ {
					if err := os.WriteFile(filepath.Join(dp, fmt.Sprintf("f%07d.o", i)), content(r, size(r)), 0o644); err != nil {
						errs[w] = err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// persistMany closes sessions that made PersistFiles new documents, all
// under the exception, next to the floor of the same copy.
func (b *bench) persistMany(ctx context.Context) error {
	n := b.cfg.PersistFiles
	root := filepath.Join(b.work, "persist")
	e, err := openEnv(ctx, root, snapshot.KindOverlay)
	if err != nil {
		return err
	}
	if _, err := b.importImage(ctx, e, "img", imageSpec{Files: 1000, Docs: 10, Seed: seed + 3}); err != nil {
		e.Close()
		return err
	}
	e.Close()
	var closes, floors, nexts []time.Duration
	var rss int64
	for rep := range b.cfg.PersistReps {
		c, f, next, m, err := b.persistOnce(ctx, root, fmt.Sprintf("p%d", rep), n)
		if err != nil {
			return fmt.Errorf("persist %d files: %w", n, err)
		}
		closes, floors, nexts = append(closes, c), append(floors, f), append(nexts, next)
		rss = max(rss, m)
		b.logf("persist %d files rep %d: close %s floor %s next open %s", n, rep+1, fmtDur(c), fmtDur(f), fmtDur(next))
	}
	grp := fmt.Sprintf("close persisting %d files", n)
	cl := b.add(grp, "close (in a child)", closes)
	fl := b.add(grp, "floor: find upper + cp -a persisted + sync", floors)
	b.add(grp, "next open (builds the persisted layer)", nexts)
	b.addValue(grp, "peak RSS of the close (VmHWM)", fmt.Sprintf("%d MiB", rss>>20))
	b.ratio(fmt.Sprintf("close persisting %d files / its floor", n), cl, fl, 0)
	return nil
}

func (b *bench) persistOnce(ctx context.Context, root, name string, n int) (cl, fl, next time.Duration, rss int64, err error) {
	e, err := openEnv(ctx, root, "")
	if err != nil {
		return
	}
	if err = e.CreateSandbox(name, "img"); err == nil {
		_, err = e.AddException(ctx, &exceptions.Exception{Sandbox: name, Patterns: []string{"/home/user/Documents/**"}, Reason: "keep documents"})
	}
	var op *persist.Opened
	if err == nil {
		op, err = e.OpenSandbox(ctx, name)
	}
	var upper string
	if err == nil {
		upper, err = upperOf(ctx, e, name)
	}
	e.Close()
	if err != nil {
		return
	}
	sub := "home/user/Documents/export"
	if err = manyFiles(op.Path, sub, n, func(r *rand.Rand) int { return min(fileSize(r), 256<<10) }); err != nil {
		return
	}
	settle()
	var rel []string
	if err = filepath.WalkDir(filepath.Join(upper, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel = append(rel, strings.TrimPrefix(p, upper+"/"))
		}
		return err
	}); err != nil {
		return
	}
	dest := filepath.Join(b.work, "floor")
	os.MkdirAll(dest, 0o700)
	if fl, err = timed(func() error { return floor(upper, rel, dest) }); err != nil {
		return
	}
	os.RemoveAll(dest)
	settle()
	res, err := closeInChild(root, name, "")
	if err != nil {
		return
	}
	if res.Persisted < n {
		err = fmt.Errorf("close persisted %d files, want %d", res.Persisted, n)
		return
	}
	cl, rss = res.Close, res.HWM
	if e, err = openEnv(ctx, root, ""); err != nil {
		return
	}
	defer e.Close()
	settle()
	if next, err = timed(func() error { _, err := e.OpenSandbox(ctx, name); return err }); err != nil {
		return
	}
	if _, err = e.CloseSandbox(ctx, name, persist.CloseOptions{}); err != nil {
		return
	}
	if rerr := e.RemoveSandbox(ctx, name, false, nil); rerr != nil {
		// A finding, not a reason to stop: the run's directory goes anyway.
		b.note(fmt.Sprintf("rm of a sandbox with %d records failed: %v", n, rerr))
	}
	return
}

// upperOf returns the upperdir of an open sandbox on overlay.
func upperOf(ctx context.Context, e *persist.Env, name string) (string, error) {
	// On an open sandbox, open returns its root's mounts and starts nothing.
	o, err := e.OpenSandbox(ctx, name)
	if err != nil {
		return "", err
	}
	mounts := o.Mounts
	upper, _, ok := snapshot.OverlayDirs(mounts)
	if !ok {
		return "", fmt.Errorf("sandbox %s is not on overlay", name)
	}
	return upper, nil
}
