package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Issue 12's costs that must follow the change, not what was persisted
// before: each scenario builds two state directories that differ only in
// size and times the same steps on both, runs interleaved.

// sizesFrom returns def, or the two sizes "SMALL,LARGE" of the variable
// env when set (to try a scenario at another size).
func sizesFrom(env string, def [2]int) [2]int {
	parts := strings.Split(os.Getenv(env), ",")
	if len(parts) != 2 {
		return def
	}
	a, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || a <= 0 || b <= 0 {
		return def
	}
	return [2]int{a, b}
}

// docsException is one exception on the documents folder, with limits
// that let n files through.
func docsException(sandbox string, n int) *exceptions.Exception {
	return &exceptions.Exception{Sandbox: sandbox, Patterns: []string{"/home/user/Documents/**"}, Reason: "keep documents",
		Limits: exceptions.Limits{MaxFiles: int64(n) + 1000, MaxBytes: int64(n+1000) * 8192}}
}

// persistedState makes a state directory whose sandbox sb has n files of
// 4 KiB persisted under /home/user/Documents/state, and leaves it open
// (the persisted layer built). It returns the Env and the open root.
func (b *bench) persistedState(ctx context.Context, root, sb string, n int) (*persist.Env, string, error) {
	e, err := openEnv(ctx, root, snapshot.KindOverlay)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*persist.Env, string, error) { e.Close(); return nil, "", err }
	if _, err := b.importImage(ctx, e, "img", imageSpec{Files: 100, Docs: 10, Seed: seed + 21}); err != nil {
		return fail(err)
	}
	// What the snapshotter holds for the image alone (see layerBytes).
	if err := os.WriteFile(filepath.Join(root, "bench-image-bytes"), []byte(strconv.FormatInt(dirBytes(filepath.Join(root, "snapshots")), 10)), 0o644); err != nil {
		return fail(err)
	}
	if err := e.CreateSandbox(sb, "img"); err != nil {
		return fail(err)
	}
	if _, err := e.AddException(ctx, docsException(sb, n)); err != nil {
		return fail(err)
	}
	op, err := e.OpenSandbox(ctx, sb)
	if err != nil {
		return fail(err)
	}
	if err := manyFiles(op.Path, "home/user/Documents/state", n, func(*rand.Rand) int { return 4096 }); err != nil {
		return fail(err)
	}
	sum, err := e.CloseSandbox(ctx, sb, persist.CloseOptions{})
	if err != nil {
		return fail(err)
	}
	if len(sum.Persisted) < n {
		return fail(fmt.Errorf("close persisted %d files, want %d", len(sum.Persisted), n))
	}
	if op, err = e.OpenSandbox(ctx, sb); err != nil {
		return fail(err)
	}
	return e, op.Path, nil
}

// oneFile is the file a one-file session changes (manyFiles' first).
const oneFile = "/home/user/Documents/state/d0000/f0000000.o"

// persistedScale: after a one-file change, with P files persisted (the
// two sizes of ScaleP), close, the next open and `persisted cat` of one
// file, on overlay; each pair of runs interleaved.
func (b *bench) persistedScale(ctx context.Context) error {
	sizes := sizesFrom("SPILLWAY_BENCH_SCALE_P", b.cfg.ScaleP)
	var envs [2]*persist.Env
	var roots [2]string
	defer func() {
		for _, e := range envs {
			if e != nil {
				e.Close()
			}
		}
	}()
	for i, n := range sizes {
		e, mnt, err := b.persistedState(ctx, filepath.Join(b.work, fmt.Sprintf("scale-%d", n)), "p", n)
		if err != nil {
			return fmt.Errorf("persisted state of %d files: %w", n, err)
		}
		envs[i], roots[i] = e, mnt
		b.logf("persisted-scale: %d files persisted", n)
	}
	var cl, next, cat [2][]time.Duration
	for rep := range b.cfg.ScaleReps {
		for i, e := range envs {
			body := fmt.Appendf(nil, "rep %d of %d\n", rep, sizes[i])
			if err := os.WriteFile(filepath.Join(roots[i], oneFile), body, 0o644); err != nil {
				return err
			}
			settle()
			d, err := timed(func() error {
				sum, err := e.CloseSandbox(ctx, "p", persist.CloseOptions{})
				if err == nil && len(sum.Persisted) != 1 {
					err = fmt.Errorf("close persisted %d files, want 1", len(sum.Persisted))
				}
				return err
			})
			if err != nil {
				return err
			}
			cl[i] = append(cl[i], d)
			settle()
			d, err = timed(func() error {
				op, err := e.OpenSandbox(ctx, "p")
				if err == nil {
					roots[i] = op.Path
				}
				return err
			})
			if err != nil {
				return err
			}
			next[i] = append(next[i], d)
			d, err = timed(func() error { return catOne(ctx, e, "p", oneFile, len(body)) })
			if err != nil {
				return err
			}
			cat[i] = append(cat[i], d)
		}
		b.logf("persisted-scale rep %d: close %s / %s, next open %s / %s, cat %s / %s", rep+1,
			fmtDur(cl[0][rep]), fmtDur(cl[1][rep]), fmtDur(next[0][rep]), fmtDur(next[1][rep]), fmtDur(cat[0][rep]), fmtDur(cat[1][rep]))
	}
	for i, n := range sizes {
		grp := fmt.Sprintf("one-file change, P=%d persisted (overlay)", n)
		b.add(grp, "close", cl[i])
		b.add(grp, "next open (Env.OpenSandbox)", next[i])
		b.add(grp, "persisted cat of one file", cat[i])
	}
	name := func(what string) string { return fmt.Sprintf("%s P=%d / P=%d (issue 12)", what, sizes[1], sizes[0]) }
	b.ratio(name("one-file close"), median(cl[1]), median(cl[0]), 1.5)
	b.ratio(name("next open after a one-file change"), median(next[1]), median(next[0]), 1.5)
	b.ratio(name("persisted cat"), median(cat[1]), median(cat[0]), 1.5)
	return nil
}

// catOne reads path's current version as `persisted cat` does (digest
// checked) and wants n bytes.
func catOne(ctx context.Context, e *persist.Env, sb, path string, n int) error {
	r, err := e.PersistedVersion(ctx, sb, path, 0)
	if err != nil {
		return err
	}
	f, err := e.OpenRecord(r)
	if err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && got != int64(n) {
		err = fmt.Errorf("persisted cat read %d bytes, want %d", got, n)
	}
	return err
}

// history: with H records of history (the two sizes of HistH: sessions
// that each changed the same HistPaths paths), open, ls, and the first
// page of persisted ls and of review ls; runs interleaved.
func (b *bench) history(ctx context.Context) error {
	sizes := sizesFrom("SPILLWAY_BENCH_HISTORY_H", b.cfg.HistH)
	var envs [2]*persist.Env
	defer func() {
		for _, e := range envs {
			if e != nil {
				e.Close()
			}
		}
	}()
	for i, h := range sizes {
		root := filepath.Join(b.work, fmt.Sprintf("history-%d", h))
		d, err := timed(func() error { return b.historyState(ctx, root, h) })
		if err != nil {
			return fmt.Errorf("history of %d records: %w", h, err)
		}
		// The product's own path for records it did not index: OpenEnv
		// builds the current-state index and counters from them.
		var e *persist.Env
		di, err := timed(func() (err error) { e, err = openEnv(ctx, root, snapshot.KindOverlay); return err })
		if err != nil {
			return err
		}
		envs[i] = e
		b.logf("history: %d records written in %s, indexed at open in %s", h, fmtDur(d), fmtDur(di))
		// The first open builds the persisted layer; the timed ones reuse it.
		if _, err := e.OpenSandbox(ctx, "hist"); err != nil {
			return err
		}
		if _, err := e.CloseSandbox(ctx, "hist", persist.CloseOptions{}); err != nil {
			return err
		}
	}
	page := b.cfg.Page
	var open, ls, pls, rls [2][]time.Duration
	for range b.cfg.HistReps {
		for i, e := range envs {
			settle()
			d, err := timed(func() error { _, err := e.OpenSandbox(ctx, "hist"); return err })
			if err != nil {
				return err
			}
			open[i] = append(open[i], d)
			if _, err := e.CloseSandbox(ctx, "hist", persist.CloseOptions{}); err != nil {
				return err
			}
			// ls takes a fraction of a millisecond: one sample is the
			// mean of lsCalls calls, so that one preemption on a busy
			// machine does not make the sample.
			d, err = timed(func() error {
				for range lsCalls {
					sbs, err := e.Sandboxes(ctx)
					if err == nil && (len(sbs) != 1 || sbs[0].PersistedFiles != int64(b.cfg.HistPaths) || sbs[0].Pending < int64(b.cfg.HistPaths)) {
						err = fmt.Errorf("ls: %+v, want %d files and as many pending", sbs, b.cfg.HistPaths)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			ls[i] = append(ls[i], d/lsCalls)
			// The first pages take under a millisecond too: means of
			// lsCalls calls, as for ls.
			d, err = timed(func() error { return repeat(lsCalls, func() error { return persistedFirstPage(ctx, e, "hist", page) }) })
			if err != nil {
				return err
			}
			pls[i] = append(pls[i], d/lsCalls)
			d, err = timed(func() error { return repeat(lsCalls, func() error { return firstPage(e, page) }) })
			if err != nil {
				return err
			}
			rls[i] = append(rls[i], d/lsCalls)
		}
	}
	for i, h := range sizes {
		grp := fmt.Sprintf("H=%d records of history (%d paths)", h, b.cfg.HistPaths)
		b.add(grp, "open (layer built already)", open[i])
		b.add(grp, fmt.Sprintf("ls (Env.Sandboxes, mean of %d calls a run)", lsCalls), ls[i])
		b.add(grp, fmt.Sprintf("persisted ls first page (%d rows, mean of %d calls a run)", page, lsCalls), pls[i])
		b.add(grp, fmt.Sprintf("review ls first page (%d rows, mean of %d calls a run)", page, lsCalls), rls[i])
	}
	name := func(what string) string { return fmt.Sprintf("%s H=%d / H=%d (issue 12)", what, sizes[1], sizes[0]) }
	b.ratio(name("open"), median(open[1]), median(open[0]), 1.5)
	b.ratio(name("ls"), median(ls[1]), median(ls[0]), 1.5)
	b.ratio(name("persisted ls first page"), median(pls[1]), median(pls[0]), 1.5)
	b.ratio(name("review ls first page"), median(rls[1]), median(rls[0]), 1.5)
	return nil
}

// lsCalls is how many calls of ls (and of each first page) one sample of
// the history scenario times.
const lsCalls = 200

// repeat runs fn n times, stopping at its first error.
func repeat(n int, fn func() error) error {
	for range n {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

// persistedFirstPage reads the first page of persisted ls as the CLI
// streams it.
func persistedFirstPage(ctx context.Context, e *persist.Env, sb string, page int) error {
	rows := 0
	err := e.PersistedEach(ctx, sb, func(*store.Record) error {
		if rows++; rows == page {
			return store.ErrStop
		}
		return nil
	})
	if err == nil && rows != page {
		err = fmt.Errorf("persisted ls first page has %d rows, want %d", rows, page)
	}
	return err
}

// historyState makes a state directory whose sandbox hist has h records:
// a real session persists HistPaths files (their blobs), then records of
// the same paths and contents are written straight into the store, as
// h/HistPaths sessions would have left them: every session approved but
// the last, whose records are pending (review after, so in effect).
func (b *bench) historyState(ctx context.Context, root string, h int) error {
	k := b.cfg.HistPaths
	e, err := openEnv(ctx, root, snapshot.KindOverlay)
	if err != nil {
		return err
	}
	err = func() error {
		if _, err := b.importImage(ctx, e, "img", imageSpec{Files: 100, Docs: 10, Seed: seed + 22}); err != nil {
			return err
		}
		if err := e.CreateSandbox("hist", "img"); err != nil {
			return err
		}
		if _, err := e.AddException(ctx, docsException("hist", k)); err != nil {
			return err
		}
		op, err := e.OpenSandbox(ctx, "hist")
		if err != nil {
			return err
		}
		if err := manyFiles(op.Path, "home/user/Documents/state", k, func(*rand.Rand) int { return 4096 }); err != nil {
			return err
		}
		_, err = e.CloseSandbox(ctx, "hist", persist.CloseOptions{})
		return err
	}()
	if err := errors.Join(err, e.Close()); err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(root, "store"))
	if err != nil {
		return err
	}
	return errors.Join(fillHistory(ctx, st, "hist", h, k), st.Close())
}

// fillHistory copies the records of session 1 of sb into sessions 2 … h/k
// and makes sb's index be built again at the next OpenEnv.
func fillHistory(ctx context.Context, st *store.Store, sb string, h, k int) error {
	var tmpl []*store.Record
	if err := st.View(func(tx *store.Tx) error {
		return tx.ForEachSessionRecord(ctx, sb, 1, func(r *store.Record) error {
			if r.Type == "file" {
				tmpl = append(tmpl, r)
			}
			return nil
		})
	}); err != nil {
		return err
	}
	if len(tmpl) != k {
		return fmt.Errorf("session 1 persisted %d files, want %d", len(tmpl), k)
	}
	sessions := uint64(max(h/k, 1))
	const batch = 4000
	var unwritten []*store.Record
	for s := uint64(1); s <= sessions; s++ {
		for _, t := range tmpl {
			r := *t
			r.Session = s
			r.Status = "approved"
			if s == sessions {
				r.Status = "pending"
			}
			unwritten = append(unwritten, &r)
		}
	}
	for len(unwritten) > 0 {
		n := min(len(unwritten), batch)
		if err := st.Update(func(tx *store.Tx) error {
			for _, r := range unwritten[:n] {
				if r.Session > 1 {
					id, err := tx.NextRecordID()
					if err != nil {
						return err
					}
					r.ID = id
				}
				if err := tx.PutRecord(r); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		unwritten = unwritten[n:]
	}
	return st.Update(func(tx *store.Tx) error {
		s, err := tx.GetSandbox(sb)
		if err != nil {
			return err
		}
		s.Session, s.Generation = sessions, sessions
		if err := tx.PutSandbox(s); err != nil {
			return err
		}
		// persist's marker of a built index (persist/current.go): without
		// it, OpenEnv builds the index from the records, as for a store
		// written before the index.
		return tx.DeleteMeta("current-ready:" + sb)
	})
}

// disk: layer bytes against the live state's bytes, blob bytes against
// the bytes of the versions kept, before and after NoopSessions sessions
// that changed nothing.
func (b *bench) disk(ctx context.Context) error {
	n := b.cfg.DiskFiles
	root := filepath.Join(b.work, "disk")
	e, mnt, err := b.persistedState(ctx, root, "p", n)
	if err != nil {
		return err
	}
	defer e.Close()
	// A second session changes a tenth of the files: their old versions
	// are kept too.
	for i := 0; i < n; i += 10 {
		p := filepath.Join(mnt, fmt.Sprintf("home/user/Documents/state/d%04d/f%07d.o", i/1000, i))
		if err := os.WriteFile(p, content(rand.New(rand.NewPCG(seed, uint64(i))), 4096), 0o644); err != nil {
			return err
		}
	}
	if _, err := e.CloseSandbox(ctx, "p", persist.CloseOptions{}); err != nil {
		return err
	}
	measure := func() (layers, live, blobs, kept int64, err error) {
		// The layer of the state as the next open lays it: open, measure,
		// close.
		if _, err = e.OpenSandbox(ctx, "p"); err != nil {
			return
		}
		layers = layerBytes(root)
		if _, err = e.CloseSandbox(ctx, "p", persist.CloseOptions{}); err != nil {
			return
		}
		sbs, err := e.Sandboxes(ctx)
		if err != nil {
			return
		}
		live = sbs[0].PersistedBytes
		blobs = dirBytes(filepath.Join(root, "blobs"))
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("/home/user/Documents/state/d%04d/f%07d.o", i/1000, i)
			hist, herr := e.History(ctx, "p", p)
			if herr != nil {
				return 0, 0, 0, 0, herr
			}
			for _, r := range hist {
				if r.Digest != "" && !r.Pruned && !seen[r.Digest] {
					seen[r.Digest] = true
					kept += r.Size
				}
			}
		}
		return
	}
	l0, live0, b0, k0, err := measure()
	if err != nil {
		return err
	}
	for range b.cfg.NoopSessions {
		if _, err := e.OpenSandbox(ctx, "p"); err != nil {
			return err
		}
		if _, err := e.CloseSandbox(ctx, "p", persist.CloseOptions{}); err != nil {
			return err
		}
	}
	l1, live1, b1, k1, err := measure()
	if err != nil {
		return err
	}
	grp := fmt.Sprintf("disk, %d files of 4 KiB persisted, a tenth changed once", n)
	mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
	b.addValue(grp, "persisted layers (snapshots less the image) / live state", mib(l0)+" / "+mib(live0))
	b.addValue(grp, "blobs / versions kept (distinct digests)", mib(b0)+" / "+mib(k0))
	b.addValue(grp, fmt.Sprintf("after %d sessions that changed nothing: layers / live", b.cfg.NoopSessions), mib(l1)+" / "+mib(live1))
	b.addValue(grp, fmt.Sprintf("after %d sessions that changed nothing: blobs / kept", b.cfg.NoopSessions), mib(b1)+" / "+mib(k1))
	b.ratioValue("layer bytes / live-state bytes (issue 12)", float64(l0)/float64(max(live0, 1)), 1.1)
	b.ratioValue("blob bytes / bytes of versions kept (issue 12)", float64(b0)/float64(max(k0, 1)), 1)
	b.ratioValue(fmt.Sprintf("layer bytes after / before %d no-op sessions", b.cfg.NoopSessions), float64(l1)/float64(max(l0, 1)), 1)
	b.ratioValue(fmt.Sprintf("blob bytes after / before %d no-op sessions", b.cfg.NoopSessions), float64(b1)/float64(max(b0, 1)), 1)
	return nil
}

// layerBytes is what the snapshotter's directory holds beyond the image's
// own snapshot (measured by persistedState right after the import): the
// persisted layers and the open session's upper directory.
func layerBytes(root string) int64 {
	b, _ := os.ReadFile(filepath.Join(root, "bench-image-bytes"))
	img, _ := strconv.ParseInt(string(b), 10, 64)
	return dirBytes(filepath.Join(root, "snapshots")) - img
}
