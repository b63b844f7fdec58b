package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/continuity/fs"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/persist"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/snapshot"
)

const seed = 20240607

// docResult holds the samples of one docsession series.
type docResult struct {
	Open, Close, NextOpen []time.Duration
	Floor, DoubleWalk     []time.Duration
	UpperWalk, Delete     []time.Duration
	Files, Dirs           int // what the upperdir holds at close (last session)
	// AreaBytes and AreaEntries are what the recovery area (on, with the
	// default retention) holds after close: the session's renamed upper
	// directory, whose size the manifest's entries sum.
	AreaBytes, AreaEntries int64
}

// docsession runs the main scenario at both image sizes on overlay and
// compares close with its floor and with the double walk.
func (b *bench) docsession(ctx context.Context) error {
	var res [2]*docResult
	for i, n := range b.cfg.DocN {
		r, err := b.runDocsession(ctx, snapshot.KindOverlay, n, b.cfg.Reps)
		if err != nil {
			return fmt.Errorf("docsession N=%d: %w", n, err)
		}
		res[i] = r
		g := fmt.Sprintf("docsession N=%d", n)
		open := b.add(g, "open", r.Open)
		cl := b.add(g, "close", r.Close)
		b.add(g, "next open", r.NextOpen)
		floor := b.add(g, "(a) floor: find upper + cp -a persisted + sync", r.Floor)
		dw := b.add(g, "(b) double walk, continuity fs.Changes", r.DoubleWalk)
		b.add(g, "upperdir walk alone (hostile.OverlayChanges)", r.UpperWalk)
		del := b.add(g, "rm -rf of a copy of the upperdir (the rollback's unlinks)", r.Delete)
		b.addValue(g, "upperdir at close: files / directories", fmt.Sprintf("%d / %d", r.Files, r.Dirs))
		b.addValue(g, "recovery area after close (default retention): changes kept / bytes", fmt.Sprintf("%d / %d", r.AreaEntries, r.AreaBytes))
		_ = open
		b.ratio(fmt.Sprintf("close / floor (a), N=%d", n), cl, floor, 1.5)
		b.ratio(fmt.Sprintf("close / (floor (a) + rm -rf of the upperdir), N=%d", n), cl, floor+del, 0)
		b.ratio(fmt.Sprintf("double walk (b) / close, N=%d", n), dw, cl, 0)
	}
	s, l := res[0], res[1]
	name := func(what string) string {
		return fmt.Sprintf("%s N=%d / N=%d", what, b.cfg.DocN[1], b.cfg.DocN[0])
	}
	b.ratio(name("open"), median(l.Open), median(s.Open), 1.2)
	b.ratio(name("close"), median(l.Close), median(s.Close), 1.2)
	b.ratio(name("next open"), median(l.NextOpen), median(s.NextOpen), 1.2)
	b.ratio(name("floor (a)"), median(l.Floor), median(s.Floor), 0)
	b.ratio(name("double walk (b)"), median(l.DoubleWalk), median(s.DoubleWalk), 0)
	b.overlayDoc10k = s
	return nil
}

// native runs the docsession on the native snapshotter (baseline c).
func (b *bench) native(ctx context.Context) error {
	n := b.cfg.NativeN
	r, err := b.runDocsession(ctx, snapshot.KindNative, n, b.cfg.NativeReps)
	if err != nil {
		return fmt.Errorf("native docsession N=%d: %w", n, err)
	}
	g := fmt.Sprintf("(c) native docsession N=%d", n)
	open := b.add(g, "open", r.Open)
	cl := b.add(g, "close", r.Close)
	next := b.add(g, "next open", r.NextOpen)
	if o := b.overlayDoc10k; o != nil && b.cfg.DocN[0] == n {
		b.ratio(fmt.Sprintf("native (c) / overlay open, N=%d", n), open, median(o.Open), 0)
		b.ratio(fmt.Sprintf("native (c) / overlay close, N=%d", n), cl, median(o.Close), 0)
		b.ratio(fmt.Sprintf("native (c) / overlay next open, N=%d", n), next, median(o.NextOpen), 0)
	}
	return nil
}

// runDocsession imports an image of n files into a fresh state directory and
// runs reps sessions, each in a new sandbox with one exception on the
// documents folder.
func (b *bench) runDocsession(ctx context.Context, kind string, n, reps int) (*docResult, error) {
	root := filepath.Join(b.work, fmt.Sprintf("%s-%d", kind, n))
	e, err := openEnv(ctx, root, kind)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	g, err := b.importImage(ctx, e, "img", imageSpec{Files: n, Docs: b.cfg.Docs, Seed: seed})
	if err != nil {
		return nil, err
	}
	res := &docResult{}
	for rep := range reps {
		name := fmt.Sprintf("doc%d", rep)
		if err := e.CreateSandbox(name, "img"); err != nil {
			return nil, err
		}
		if _, err := e.AddException(ctx, &exceptions.Exception{Sandbox: name, Patterns: []string{"/home/user/Documents/**"}, Reason: "keep documents"}); err != nil {
			return nil, err
		}
		settle()
		var op *persist.Opened
		d, err := timed(func() (err error) {
			op, err = e.OpenSandbox(ctx, name)
			return err
		})
		if err != nil {
			return nil, err
		}
		res.Open = append(res.Open, d)
		r := rand.New(rand.NewPCG(seed, uint64(rep)))
		docs, err := b.session(op.Path, g, r)
		if err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
		settle()
		if err := b.baselines(ctx, e, name, op.Path, docs, res); err != nil {
			return nil, err
		}
		settle()
		var sum *persist.CloseSummary
		d, err = timed(func() (err error) {
			sum, err = e.CloseSandbox(ctx, name, persist.CloseOptions{})
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(sum.Persisted) != len(docs) || len(sum.Refused) != 0 {
			return nil, fmt.Errorf("close persisted %d files and refused %d, want %d and 0", len(sum.Persisted), len(sum.Refused), len(docs))
		}
		res.Close = append(res.Close, d)
		if cfg, err := e.Config(name); err == nil {
			res.AreaBytes = cfg.RecoveryBytes
		}
		res.AreaEntries = sum.RefusedCount + sum.Discarded.Count
		settle()
		d, err = timed(func() error {
			_, err := e.OpenSandbox(ctx, name)
			return err
		})
		if err != nil {
			return nil, err
		}
		res.NextOpen = append(res.NextOpen, d)
		if _, err := e.CloseSandbox(ctx, name, persist.CloseOptions{}); err != nil {
			return nil, err
		}
		if err := e.RemoveSandbox(ctx, name, false, nil); err != nil {
			return nil, err
		}
		b.logf("%s N=%d rep %d: open %s close %s next open %s", kind, n, rep+1,
			fmtDur(res.Open[rep]), fmtDur(res.Close[rep]), fmtDur(res.NextOpen[rep]))
	}
	return res, nil
}

// session does what a user's working session does through the mounted
// root: edits documents, churns temporary files, touches files elsewhere.
// It returns the documents it changed (sandbox paths).
func (b *bench) session(root string, g *genImage, r *rand.Rand) ([]string, error) {
	docs := pick(r, g.Docs, b.cfg.DocsChanged)
	per := b.cfg.DocBytes / len(docs)
	for _, p := range docs {
		if err := os.WriteFile(filepath.Join(root, p), content(r, per), 0o644); err != nil {
			return nil, err
		}
	}
	var tmps []string
	for i := range b.cfg.TmpFiles {
		p := filepath.Join(root, fmt.Sprintf("tmp/.edit-%05d.tmp", i))
		if err := os.WriteFile(p, content(r, 1024+r.IntN(3072)), 0o600); err != nil {
			return nil, err
		}
		tmps = append(tmps, p)
	}
	for _, p := range tmps {
		if err := os.Remove(p); err != nil {
			return nil, err
		}
	}
	for _, p := range pick(r, g.Other, b.cfg.Elsewhere) {
		if err := appendTo(filepath.Join(root, p), content(r, 64)); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

func appendTo(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// baselines measures, on the open sandbox, the floor of close (overlay
// only), the double walk and the upperdir walk alone.
func (b *bench) baselines(ctx context.Context, e *persist.Env, name, mnt string, docs []string, res *docResult) error {
	// On an open sandbox, open returns its root's mounts and starts nothing.
	o, err := e.OpenSandbox(ctx, name)
	if err != nil {
		return err
	}
	mounts := o.Mounts
	upper, lowers, ok := snapshot.OverlayDirs(mounts)
	if !ok {
		return nil // native: its close is the double walk already
	}
	// (a) the floor: find over the upperdir, cp -a of exactly the persisted
	// files, sync.
	dest := filepath.Join(b.work, "floor")
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return err
	}
	var rel []string
	for _, p := range docs {
		rel = append(rel, strings.TrimPrefix(p, "/"))
	}
	d, err := timed(func() error { return floor(upper, rel, dest) })
	if err != nil {
		return err
	}
	res.Floor = append(res.Floor, d)
	if err := os.RemoveAll(dest); err != nil {
		return err
	}
	settle()
	// (b) the double walk over the same sandbox.
	var nb int
	d, err = timed(func() error {
		return fs.Changes(ctx, lowers[len(lowers)-1], mnt, func(fs.ChangeKind, string, os.FileInfo, error) error {
			nb++
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("double walk: %w", err)
	}
	res.DoubleWalk = append(res.DoubleWalk, d)
	var nu int
	d, err = timed(func() error {
		return hostile.OverlayChanges(ctx, upper, lowers, func(hostile.Change) error {
			nu++
			return nil
		})
	})
	if err != nil {
		return err
	}
	res.UpperWalk = append(res.UpperWalk, d)
	if nb == 0 || nu == 0 {
		return fmt.Errorf("no changes seen (double walk %d, upperdir %d)", nb, nu)
	}
	res.Files, res.Dirs = 0, 0
	if err := filepath.WalkDir(upper, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			res.Dirs++
		} else if err == nil {
			res.Files++
		}
		return err
	}); err != nil {
		return err
	}
	// What the rollback must unlink: a copy of the upperdir, removed.
	scratch := filepath.Join(b.work, "scratch")
	if err := sh("", "cp", "-a", upper, scratch); err != nil {
		return err
	}
	settle()
	d, err = timed(func() error { return sh("", "rm", "-rf", scratch) })
	if err != nil {
		return err
	}
	res.Delete = append(res.Delete, d)
	// The double walk instantiated an overlay inode for every file of the
	// image; close's unmount would pay for tearing them down. Mount the
	// root afresh so that close finds it as a session leaves it.
	if err := snapshot.Unmount(mnt); err != nil {
		return err
	}
	return snapshot.MountAll(mounts, mnt)
}

// floor is the physical floor of a close: list the upperdir, copy the files
// that persist (cp -a keeps mode, owner and times), make it durable.
func floor(upper string, rel []string, dest string) error {
	find := exec.Command("find", upper)
	if err := find.Run(); err != nil { // stdout goes to /dev/null
		return fmt.Errorf("find: %w", err)
	}
	for len(rel) > 0 {
		k := min(len(rel), 2000)
		args := append([]string{"-a", "--parents"}, rel[:k]...)
		if err := sh(upper, "cp", append(args, dest)...); err != nil {
			return err
		}
		rel = rel[k:]
	}
	return sh("", "sync")
}
