package main

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
)

// floodSession prepares a state directory at root with a 1,000-file image,
// one sandbox under exception x, opened, and n small files written under
// /var/cache/build of its root (a build cache, say). It returns how long
// the writing took; the sandbox is left open for a close to measure.
func (b *bench) floodSession(ctx context.Context, root string, imageSeed uint64, x *exceptions.Exception, n int) (time.Duration, error) {
	e, err := openEnv(ctx, root, snapshot.KindOverlay)
	if err != nil {
		return 0, err
	}
	if _, err := b.importImage(ctx, e, "img", imageSpec{Files: 1000, Docs: 10, Seed: imageSeed}); err != nil {
		e.Close()
		return 0, err
	}
	if err := e.CreateSandbox(x.Sandbox, "img"); err != nil {
		e.Close()
		return 0, err
	}
	if _, err := e.AddException(ctx, x); err != nil {
		e.Close()
		return 0, err
	}
	op, err := e.OpenSandbox(ctx, x.Sandbox)
	if err != nil {
		e.Close()
		return 0, err
	}
	if err := e.Close(); err != nil {
		return 0, err
	}
	return timed(func() error {
		return manyFiles(op.Path, "var/cache/build", n, func(r *rand.Rand) int { return r.IntN(64) })
	})
}
