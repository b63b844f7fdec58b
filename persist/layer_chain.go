package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Persisted layers on overlay form a chain: the layer built at an open is a
// delta on the sandbox's last built layer (its "top", kept in the store's
// meta), holding only the paths that changed since (layer_delta.go). A
// chain never grows beyond maxLayerChain layers: the open that would pass
// it builds a flat layer instead, and gc squashes chains deeper than half
// of it (docs/design.md, "Persisted layers").
//
//	layer-top:SANDBOX   key of the last layer built for SANDBOX
//	layer-log:SANDBOX   first generation the change log covers for SANDBOX
var maxLayerChain = chainLimit()

// chainLimit is 16, or SPILLWAY_LAYER_CHAIN_MAX (≥ 2) for tests.
func chainLimit() int {
	if n, err := strconv.Atoi(os.Getenv("SPILLWAY_LAYER_CHAIN_MAX")); err == nil && n >= 2 {
		return n
	}
	return 16
}

func layerTopMeta(sandbox string) string { return "layer-top:" + sandbox }
func layerLogMeta(sandbox string) string { return "layer-log:" + sandbox }

// squashKey names the flat layer gc builds for generation gen.
func squashKey(sandbox string, gen uint64) string { return layerKey(sandbox, gen) + "/flat" }

// layerGen returns the generation a layer key was built for.
func layerGen(key string) (uint64, bool) {
	i := strings.LastIndex(key, "/gen/")
	if i < 0 {
		return 0, false
	}
	s, _, _ := strings.Cut(key[i+len("/gen/"):], "/")
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// deltaLayers says whether open builds a persisted layer as a delta on
// the last one: on overlay (native copies the whole parent at every
// prepare and has no whiteouts), whichever the ledger.
func (e *Env) deltaLayers() bool {
	return e.snap.Kind() == snapshot.KindOverlay
}

// layerTop returns the key of sandbox's last built layer on this host (""
// if none): on a ledger of the root's own, the one layer-top:SANDBOX
// names; on a shared ledger, the one this host's cache entry names, if it
// was built for this incarnation of the sandbox (layer_cache.go).
func (e *Env) layerTop(tx *store.Tx, sb *store.Sandbox) string {
	var top string
	if e.sharedLedger() {
		c, _ := e.cacheEntry(tx, sb.Name)
		if c.Incarnation != incarnation(sb) {
			return ""
		}
		top = c.Top
	} else {
		top = layerTop(tx, sb.Name)
	}
	// Any host of a shared ledger can write this entry: only one of this
	// sandbox's own layers is a top, never another sandbox's or an image.
	if !strings.HasPrefix(top, sandboxKeyPrefix(sb.Name)+"gen/") {
		return ""
	}
	return top
}

// putLayerTop records key as sb's last built layer on this host.
func (e *Env) putLayerTop(tx *store.Tx, sb *store.Sandbox, key string) error {
	if e.sharedLedger() {
		return e.putCacheEntry(tx, sb.Name, cacheEntry{Top: key, Incarnation: incarnation(sb), Used: e.Now()})
	}
	return tx.PutMeta(layerTopMeta(sb.Name), key)
}

// layerTop returns the key of sandbox's last built layer in a ledger of
// the root's own ("" if none).
func layerTop(tx *store.Tx, sandbox string) string {
	v, _, _ := tx.GetMeta(layerTopMeta(sandbox))
	return v
}

// forgetLayers drops what says which layer a delta builds on and which
// generations the change log covers: the next open builds a flat layer.
func forgetLayers(tx *store.Tx, sandbox string) error {
	return errors.Join(tx.DeleteMeta(layerTopMeta(sandbox)), tx.DeleteMeta(layerLogMeta(sandbox)))
}

// forgetChangeLog says the change log covers nothing (the index was
// rebuilt): the next open builds a flat layer, the chain in use stays.
func forgetChangeLog(tx *store.Tx, sandbox string) error {
	return tx.DeleteMeta(layerLogMeta(sandbox))
}

// logCovers says whether the change log of sandbox holds every change after
// generation base.
func logCovers(tx *store.Tx, sandbox string, base uint64) bool {
	v, ok, err := tx.GetMeta(layerLogMeta(sandbox))
	if err != nil || !ok {
		return false
	}
	from, err := strconv.ParseUint(v, 10, 64)
	return err == nil && base+1 >= from
}

// chain returns key and its ancestors among the sandbox's snapshots, top
// first (the image is not part of it).
func (e *Env) chain(ctx context.Context, sandbox, key string) ([]string, error) {
	var out []string
	prefix := sandboxKeyPrefix(sandbox)
	for k := key; strings.HasPrefix(k, prefix) && len(out) <= 4*maxLayerChain+8; {
		info, err := e.snap.Stat(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
		k = info.Parent
	}
	return out, nil
}

// exists says whether snapshot key exists (false for "").
func (e *Env) exists(ctx context.Context, key string) bool {
	if key == "" {
		return false
	}
	ok, err := e.snap.Exists(ctx, key)
	return err == nil && ok
}

// cleanupSandbox removes what a crashed command left of a closed sandbox:
// its mount, session roots, builds, and every layer not in the chain in
// use (the top and its parents on overlay; the layer of the current
// generation on native). A sandbox being removed (Generation ^0) keeps
// nothing. Snapshots go children first: containerd refuses to remove a
// parent.
func (e *Env) cleanupSandbox(ctx context.Context, sb *store.Sandbox) error {
	// A session this host opened and did not close is kept before
	// anything of it goes, whatever the ledger says (open_journal.go).
	if err := e.keepUnclosed(ctx, sb); err != nil {
		return err
	}
	if err := e.unmountRoot(sb.Name, e.MountPath(sb.Name), ""); err != nil {
		return err
	}
	if err := e.keepForRecovery(ctx, sb); err != nil { // a close that crashed after its commit
		return err
	}
	keys, err := e.snap.Keys(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	var roots []string
	switch {
	case sb.Generation == ^uint64(0):
	case sb.State == store.StateOpen:
		roots = []string{sb.Snapshot, sb.Layer}
	case !e.deltaLayers():
		roots = []string{layerKey(sb.Name, sb.Generation)}
	default:
		var top string
		e.store.View(func(tx *store.Tx) error { top = e.layerTop(tx, sb); return nil })
		if e.exists(ctx, top) {
			roots = append(roots, top)
		}
		// On a shared ledger a layer this host did not record may be of an
		// earlier sandbox of the same name (removed and created again on
		// another host): keep none.
		if g, _ := layerGen(top); !e.sharedLedger() && (top == "" || g < sb.Generation || !e.exists(ctx, top)) {
			roots = append(roots, layerKey(sb.Name, sb.Generation)) // committed before the crash that kept it from being recorded
		}
	}
	for _, r := range roots {
		if !e.exists(ctx, r) {
			continue
		}
		ch, err := e.chain(ctx, sb.Name, r)
		if err != nil {
			return err
		}
		for _, k := range ch {
			keep[k] = true
		}
	}
	var gone []string
	for _, k := range keys {
		if strings.HasPrefix(k, sandboxKeyPrefix(sb.Name)) && !keep[k] {
			gone = append(gone, k)
		}
	}
	return e.removeLeafFirst(ctx, gone)
}

// removeLeafFirst removes the snapshots keys, deepest first.
func (e *Env) removeLeafFirst(ctx context.Context, keys []string) error {
	depth := map[string]int{}
	for _, k := range keys {
		for p := k; p != ""; {
			info, err := e.snap.Stat(ctx, p)
			if err != nil {
				break
			}
			depth[k]++
			p = info.Parent
		}
	}
	sort.SliceStable(keys, func(i, j int) bool { return depth[keys[i]] > depth[keys[j]] })
	for _, k := range keys {
		if err := e.snap.Remove(ctx, k); err != nil {
			return fmt.Errorf("leftover: %w", err) // err says "remove snapshot K: …"
		}
	}
	return nil
}
