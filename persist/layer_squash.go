package persist

import (
	"context"
	"errors"

	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/store"
)

// squashChains replaces, for each closed sandbox whose last built layer is
// of its current generation and heads a chain deeper than half of
// maxLayerChain, that chain with one flat layer of the same state, and
// drops the change log up to each sandbox's last built layer. A kill
// leaves either the chain (and a stray flat layer or build, which the next
// open or gc removes) or the flat layer recorded as the last built one
// (and the old chain, which the same cleanup removes): the next open's
// tree is the state's either way.
func (e *Env) squashChains(ctx context.Context) error {
	if !e.deltaLayers() {
		return nil
	}
	var sbs []*store.Sandbox
	if err := e.store.View(func(tx *store.Tx) (err error) { sbs, err = tx.ListSandboxes(); return err }); err != nil {
		return err
	}
	for _, sb := range sbs {
		var top string
		e.store.View(func(tx *store.Tx) error { top = e.layerTop(tx, sb); return nil })
		if e.sharedLedger() {
			if err := e.trimChangeLog(ctx, sb); err != nil {
				return err
			}
		}
		g, ok := layerGen(top)
		if !ok {
			continue
		}
		if !e.sharedLedger() { // on a shared ledger other hosts' chains may need it
			if _, err := e.store.DropChanges(ctx, sb.Name, g); err != nil {
				return err
			}
		}
		if sb.State != store.StateClosed || g != sb.Generation || !e.exists(ctx, top) {
			continue
		}
		if old := layerKey(sb.Name, g); top == squashKey(sb.Name, g) && e.exists(ctx, old) {
			// A squash killed after it switched: remove what it replaced.
			ch, err := e.chain(ctx, sb.Name, old)
			if err != nil {
				return err
			}
			if err := e.removeLeafFirst(ctx, ch); err != nil {
				return err
			}
			continue
		}
		ch, err := e.chain(ctx, sb.Name, top)
		if err != nil {
			return err
		}
		if len(ch) <= maxLayerChain/2 {
			continue
		}
		if err := e.squash(ctx, sb, ch); err != nil {
			return err
		}
	}
	return nil
}

// errStateMoved says the sandbox changed under a squash: nothing to do.
var errStateMoved = errors.New("the sandbox's state changed")

// squash builds the flat layer of sb's state, records it as the last built
// layer and removes the chain ch it replaces, leaf first.
func (e *Env) squash(ctx context.Context, sb *store.Sandbox, ch []string) error {
	var (
		img   *store.Image
		state State
	)
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		if img, err = e.hostImage(tx, sb.Image); err != nil {
			return err
		}
		// On a shared ledger another host may have changed the state
		// since gc listed the sandbox: the layer is of generation
		// sb.Generation or none.
		now, err := tx.GetSandbox(sb.Name)
		if err != nil {
			return err
		}
		if now.Generation != sb.Generation || now.State != store.StateClosed {
			return errStateMoved
		}
		state, err = LoadState(ctx, tx, sb)
		return err
	}); errors.Is(err, errStateMoved) {
		return nil
	} else if err != nil {
		return err
	}
	key := squashKey(sb.Name, sb.Generation)
	if !e.exists(ctx, key) {
		if _, _, err := e.buildLayer(ctx, key, img.Snapshot, "gc.squash", func(target string) ([]string, error) {
			return e.applyState(ctx, target, state)
		}); err != nil {
			return err
		}
	}
	if err := e.store.Update(func(tx *store.Tx) error { return e.putLayerTop(tx, sb, key) }); err != nil {
		return err
	}
	failpoint.Hit("gc.squash-switched")
	return e.removeLeafFirst(ctx, ch)
}
