package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
)

// fleetRoam: two roots (hosts h1 and h2) share one PostgreSQL ledger and
// one blob directory. A sandbox persists files (1,000 of 100 KiB); each
// run h1 opens it, changes 10 of them and closes; then the next open on
// h1 (same host) and on h2 (the sandbox roamed) are timed, in alternating
// order, each followed by a close that changes nothing. Both build the
// new generation's layer from the one they built before; the first open
// on each host after the initial close builds it whole (one sample each).
func (b *bench) fleetRoam(ctx context.Context) error {
	files := fleetSize(b.cfg, 1000, 200, 50)
	size := fleetSize(b.cfg, 100<<10, 20<<10, 4<<10)
	reps := fleetSize(b.cfg, 7, 3, 1)
	url, err := b.fleetDB()
	if err != nil {
		return err
	}
	blobs := "dir://" + filepath.Join(b.work, "fleet-roam-blobs")
	var envs [2]*persist.Env
	for i := range envs {
		envs[i], err = persist.OpenEnv(ctx, persist.Options{Root: filepath.Join(b.work, fmt.Sprintf("fleet-roam-h%d", i+1)), Snapshotter: snapshot.KindOverlay,
			LockTimeout: 10 * time.Second, HostID: fmt.Sprintf("h%d", i+1), Store: url, Blobs: blobs})
		if err != nil {
			return err
		}
		defer envs[i].Close()
	}
	h1, h2 := envs[0], envs[1]
	src := filepath.Join(b.srcDir(), "src-roam")
	if _, err := buildImage(src, imageSpec{Files: 500, Docs: 0, Seed: 9}); err != nil {
		return err
	}
	for _, e := range envs {
		if _, err := e.ImportImage(ctx, "img", snapshot.Source{Dir: src}); err != nil {
			return err
		}
	}
	os.RemoveAll(src)
	const sb = "roam"
	if err := h1.CreateSandbox(sb, "img"); err != nil {
		return err
	}
	if _, err := h1.AddException(ctx, &exceptions.Exception{Sandbox: sb, Patterns: []string{"/home/user/Documents/**"}, Reason: "roaming documents"}); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(3, 4))
	write := func(o *persist.Opened, n int) error {
		for _, i := range r.Perm(files)[:n] {
			p := filepath.Join(o.Path, "home/user/Documents/roam", fmt.Sprintf("f%04d.bin", i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, content(r, size), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	// cycle opens on e (timed), writes n files and closes.
	cycle := func(e *persist.Env, n int) (time.Duration, error) {
		settle()
		var o *persist.Opened
		d, err := timed(func() error {
			var err error
			o, err = e.OpenSandbox(ctx, sb)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("open on %s: %w", e.HostID(), err)
		}
		if err := write(o, n); err != nil {
			return 0, err
		}
		sum, err := e.CloseSandbox(ctx, sb, persist.CloseOptions{})
		if err == nil {
			got := 0
			for _, p := range sum.Persisted {
				if p.Type == "file" {
					got++
				}
			}
			if got != n {
				err = fmt.Errorf("close persisted %d files of the %d written", got, n)
			}
		}
		if err != nil {
			return 0, fmt.Errorf("close on %s: %w", e.HostID(), err)
		}
		return d, nil
	}
	if _, err := cycle(h1, files); err != nil {
		return err
	}
	b.logf("fleet-roam: %d files of %d KiB persisted on h1", files, size>>10)
	coldSame, err := cycle(h1, 0)
	if err != nil {
		return err
	}
	coldRoam, err := cycle(h2, 0)
	if err != nil {
		return err
	}
	var same, roam []time.Duration
	for i := range reps {
		if _, err := cycle(h1, 10); err != nil {
			return err
		}
		order := []*persist.Env{h1, h2}
		if i%2 == 1 {
			order = []*persist.Env{h2, h1}
		}
		for _, e := range order {
			d, err := cycle(e, 0)
			if err != nil {
				return err
			}
			if e == h1 {
				same = append(same, d)
			} else {
				roam = append(roam, d)
			}
		}
	}
	grp := fmt.Sprintf("fleet-roam (%d files, %d MiB persisted; 10 changed on h1 before each run)", files, files*size>>20)
	b.add(grp, "first open after the initial close, on h1 (same host; layer built whole)", []time.Duration{coldSame})
	b.add(grp, "first open after the initial close, on h2 (roamed; layer built whole)", []time.Duration{coldRoam})
	b.add(grp, "open on h1 after a close on h1 (same host)", same)
	b.add(grp, "open on h2 after a close on h1 (roamed)", roam)
	// Both first opens build the 97 MiB layer from the ledger: the roamed
	// one against the same-host one is the like-for-like first comparison.
	b.ratio("fleet roamed first open / same-host first open (layer built whole on each)", coldRoam, coldSame, 2)
	b.ratio("fleet roamed open / same-host open (medians)", median(roam), median(same), 2)
	b.logf("fleet-roam: same-host %s, roamed %s", fmtDur(median(same)), fmtDur(median(roam)))
	return nil
}
