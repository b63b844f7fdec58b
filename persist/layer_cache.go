package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/store"
)

// Per-host layer caches on a shared ledger (issue 16, docs/fleet.md): every
// host keeps, in its own snapshotter, the persisted layers it built for a
// sandbox, and its own entry in the ledger saying which layer is the top of
// that chain, for which incarnation of the sandbox, and when it was last
// used. An open on this host builds a delta on its own top from the shared
// change log, however many generations other hosts closed since, as long as
// the log still covers them; gc trims the log to a window of generations
// (changeLogWindow) and evicts the caches of the sandboxes this host used
// least recently beyond layerCacheLimit.
//
//	layer-cache/HOST:SANDBOX   "TOP INCARNATION USED" (cacheEntry)
//
// A stale cache is one comparison away: the top's generation against the
// sandbox's (an older one is the base of a delta), the incarnation (the
// sandbox's creation time) against the sandbox's (a sandbox removed and
// created again under the same name on another host has nothing in
// common with the layers of the old one).

// cacheEntry is this host's record of a sandbox's layer chain.
type cacheEntry struct {
	Top         string    // key of the last built layer
	Incarnation int64     // the sandbox's creation time, Unix ns
	Used        time.Time // last open that used the chain
}

// changeLogWindow is how many generations of change log gc keeps on a
// shared ledger: a host whose cached layer is older builds a flat one.
// (A variable for tests.)
var changeLogWindow uint64 = 256

// layerCacheLimit is how many sandboxes' layer chains one host keeps on a
// shared ledger (64, or SPILLWAY_LAYER_CACHE ≥ 1).
func layerCacheLimit() int {
	if n, err := strconv.Atoi(os.Getenv("SPILLWAY_LAYER_CACHE")); err == nil && n >= 1 {
		return n
	}
	return 64
}

// sharedLedger says whether the ledger may be shared with other hosts
// (any driver but the root's own badger store).
func (e *Env) sharedLedger() bool { return e.store.Driver() != "badger" }

// incarnation tells apart sandboxes of the same name created one after
// the other.
func incarnation(sb *store.Sandbox) int64 { return sb.Created.UnixNano() }

func (e *Env) cacheMeta(sandbox string) string { return "layer-cache/" + e.hostID + ":" + sandbox }

// cacheEntry returns this host's entry for sandbox (zero if none).
func (e *Env) cacheEntry(tx *store.Tx, sandbox string) (cacheEntry, error) {
	v, ok, err := tx.GetMeta(e.cacheMeta(sandbox))
	if err != nil || !ok {
		return cacheEntry{}, err
	}
	f := strings.Fields(v)
	if len(f) != 3 {
		return cacheEntry{}, fmt.Errorf("layer cache entry of %s: malformed %q", sandbox, v)
	}
	inc, err1 := strconv.ParseInt(f[1], 10, 64)
	used, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return cacheEntry{}, fmt.Errorf("layer cache entry of %s: malformed %q", sandbox, v)
	}
	return cacheEntry{Top: f[0], Incarnation: inc, Used: time.Unix(0, used).UTC()}, nil
}

func (e *Env) putCacheEntry(tx *store.Tx, sandbox string, c cacheEntry) error {
	return tx.PutMeta(e.cacheMeta(sandbox), fmt.Sprintf("%s %d %d", c.Top, c.Incarnation, c.Used.UnixNano()))
}

// touchLayerCache records that an open used sb's cached top just now.
func (e *Env) touchLayerCache(sb *store.Sandbox, top string) error {
	if !e.sharedLedger() {
		return nil
	}
	return e.store.Update(func(tx *store.Tx) error { return e.putLayerTop(tx, sb, top) })
}

// startChangeLog says, on a shared ledger, that the change log covers the
// generations after gen when nothing said what it covers (a flat layer was
// built at gen: every later change is logged). Other hosts' chains may
// rely on an older start, which stays.
func startChangeLog(tx *store.Tx, sandbox string, gen uint64) error {
	if _, ok, err := tx.GetMeta(layerLogMeta(sandbox)); err != nil || ok {
		return err
	}
	return tx.PutMeta(layerLogMeta(sandbox), strconv.FormatUint(gen+1, 10))
}

// trimChangeLog drops, on a shared ledger, the change log of sb's
// generations older than the window, saying first that the log no longer
// covers them: a host whose cached layer is older then builds a flat one.
func (e *Env) trimChangeLog(ctx context.Context, sb *store.Sandbox) error {
	if sb.Generation <= changeLogWindow {
		return nil
	}
	upTo := sb.Generation - changeLogWindow
	if err := e.store.Update(func(tx *store.Tx) error {
		v, ok, err := tx.GetMeta(layerLogMeta(sb.Name))
		if err != nil || !ok {
			return err
		}
		if from, err := strconv.ParseUint(v, 10, 64); err == nil && from > upTo {
			return nil
		}
		return tx.PutMeta(layerLogMeta(sb.Name), strconv.FormatUint(upTo+1, 10))
	}); err != nil {
		return err
	}
	_, err := e.store.DropChanges(ctx, sb.Name, upTo)
	return err
}

// evictLayerCaches removes, on a shared ledger, the layer chains of the
// sandboxes this host used least recently beyond layerCacheLimit, and of
// sandboxes that are gone or were created again. A chain under a root
// open on this host stays. It returns the snapshots it removed.
func (e *Env) evictLayerCaches(ctx context.Context) ([]string, error) {
	if !e.sharedLedger() || !e.deltaLayers() {
		return nil, nil
	}
	keys, err := e.snap.Keys(ctx)
	if err != nil {
		return nil, err
	}
	local := map[string][]string{} // sandbox → its snapshots on this host
	for _, k := range keys {
		if name, _, ok := strings.Cut(strings.TrimPrefix(k, "sbx/"), "/"); ok && strings.HasPrefix(k, "sbx/") {
			local[name] = append(local[name], k)
		}
	}
	type cached struct {
		name  string
		used  time.Time
		inUse bool // a root of this host's sits on it
	}
	var cs []cached
	for name, ks := range local {
		var (
			sb  *store.Sandbox
			ent cacheEntry
		)
		err := e.store.View(func(tx *store.Tx) error {
			var err error
			if sb, err = tx.GetSandbox(name); err != nil {
				return err
			}
			ent, err = e.cacheEntry(tx, name)
			return err
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		c := cached{name: name, used: ent.Used}
		for _, k := range ks {
			if strings.HasPrefix(k, sandboxKeyPrefix(name)+"session/") {
				c.inUse = true
			}
		}
		if sb == nil || ent.Incarnation != incarnation(sb) {
			c.used = time.Time{} // gone or created again: first to go
		}
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].used.After(cs[j].used) })
	var gone []string
	for i, c := range cs {
		if c.inUse || (i < layerCacheLimit() && !c.used.IsZero()) {
			continue
		}
		if err := e.store.Update(func(tx *store.Tx) error { return tx.DeleteMeta(e.cacheMeta(c.name)) }); err != nil {
			return gone, err
		}
		if err := e.removeLeafFirst(ctx, local[c.name]); err != nil {
			return gone, err
		}
		gone = append(gone, local[c.name]...)
	}
	return gone, nil
}

// Directory hints: the native snapshotter's directory of an image or a
// layer is a path in one host's root. In a ledger of the root's own the
// image's is in its record and a layer's in meta:layerdir:KEY; in a shared
// ledger each host keeps its own, meta:imagedir/HOST:IMAGE and
// meta:layerdir/HOST:KEY.

// layerDirMeta names the meta key of layer key's directory on this host.
func (e *Env) layerDirMeta(key string) string {
	if e.sharedLedger() {
		return "layerdir/" + e.hostID + ":" + key
	}
	return "layerdir:" + key
}

func (e *Env) imageDirMeta(image string) string { return "imagedir/" + e.hostID + ":" + image }

// hostImage returns image name with Dir its directory on this host (""
// on overlay).
func (e *Env) hostImage(tx *store.Tx, name string) (*store.Image, error) {
	img, err := tx.GetImage(name)
	if err != nil {
		return img, err
	}
	// Any host of a shared ledger can write the row: an image's snapshot
	// is its own key, never a sandbox's layer or another image.
	// (The store checked its name.)
	if img.Snapshot != imageKey(name) {
		return nil, errclass.Errorf(errdefs.ErrDataLoss, "image row %q names snapshot %q, not %q: a row spillway never writes (written by another host of a shared ledger, or by hand): remove or repair it", name, img.Snapshot, imageKey(name))
	}
	if !e.sharedLedger() {
		return img, nil
	}
	img.Dir, _, err = tx.GetMeta(e.imageDirMeta(name))
	return img, err
}

// putImageDir records img's directory on this host, dir from its import.
func (e *Env) putImageDir(tx *store.Tx, image, dir string) error {
	if !e.sharedLedger() || dir == "" {
		return nil
	}
	return tx.PutMeta(e.imageDirMeta(image), dir)
}
