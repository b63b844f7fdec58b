package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// ensureLayer returns the committed layer holding sb's state over the
// image, building it if it does not exist yet: on overlay a delta on the
// sandbox's last built layer when the change log covers the generations
// in between and the chain stays within maxLayerChain, else (and always on
// native) a flat layer on the image. It returns the layer's key, its
// directory for the native snapshotter ("" for overlay) and the stored
// paths it skipped.
func (e *Env) ensureLayer(ctx context.Context, sb *store.Sandbox, img *store.Image) (string, string, []string, error) {
	key := layerKey(sb.Name, sb.Generation)
	overlay := e.deltaLayers()
	var top string
	var covered bool
	if err := e.store.View(func(tx *store.Tx) error {
		top = e.layerTop(tx, sb)
		if g, ok := layerGen(top); ok {
			covered = logCovers(tx, sb.Name, g)
		}
		return nil
	}); err != nil {
		return "", "", nil, err
	}
	if g, _ := layerGen(top); overlay && g == sb.Generation && e.exists(ctx, top) {
		return top, "", nil, e.touchLayerCache(sb, top)
	}
	if e.exists(ctx, key) {
		var dir string
		err := e.store.Update(func(tx *store.Tx) error {
			if overlay {
				if err := e.putLayerTop(tx, sb, key); err != nil {
					return err
				}
			}
			v, _, err := tx.GetMeta(e.layerDirMeta(key))
			dir = v
			return err
		})
		return key, dir, nil, err
	}
	if overlay && covered && e.exists(ctx, top) {
		ch, err := e.chain(ctx, sb.Name, top)
		if err != nil {
			return "", "", nil, err
		}
		if len(ch) < maxLayerChain {
			skipped, err := e.buildDelta(ctx, sb, img, top, key)
			if err == nil {
				return key, "", skipped, e.layerBuilt(ctx, sb, key, false)
			}
			if !errors.Is(err, errFlat) {
				return "", "", nil, err
			}
		}
	}
	var state State
	if err := e.store.View(func(tx *store.Tx) (err error) { state, err = LoadState(ctx, tx, sb); return err }); err != nil {
		return "", "", nil, err
	}
	dir, skipped, err := e.buildLayer(ctx, key, img.Snapshot, "open.layer", func(target string) ([]string, error) {
		return e.applyState(ctx, target, state)
	})
	if err != nil {
		return "", "", nil, err
	}
	if err := e.layerBuilt(ctx, sb, key, true); err != nil {
		return "", "", nil, err
	}
	if overlay && e.exists(ctx, top) {
		// The chain the flat layer replaces: nothing uses it any more.
		old, err := e.chain(ctx, sb.Name, top)
		if err != nil {
			return "", "", nil, err
		}
		if err := e.removeLeafFirst(ctx, old); err != nil {
			return "", "", nil, err
		}
	}
	return key, dir, skipped, nil
}

// stateNonEmpty says whether sb's state holds anything, without loading
// it when the index is built: the index's first path has no ancestor in
// it, so its record is in effect.
func stateNonEmpty(ctx context.Context, tx *store.Tx, sb *store.Sandbox) (bool, error) {
	if !currentIsReady(tx, sb.Name) {
		st, err := LoadState(ctx, tx, sb)
		return len(st) > 0, err
	}
	found := false
	err := tx.ForEachCurrentAt(ctx, sb.Name, sb.Generation, func(string, uint64) error {
		found = true
		return store.ErrStop
	})
	return found, err
}

// layerBuilt records key as sb's last built layer (a flat one: the change
// log starts after its generation) and drops the change log up to it. On
// a shared ledger other hosts' chains may need the log: it stays, and gc
// trims it (trimChangeLog).
func (e *Env) layerBuilt(ctx context.Context, sb *store.Sandbox, key string, flat bool) error {
	if e.deltaLayers() {
		if err := e.store.Update(func(tx *store.Tx) error {
			switch {
			case flat && e.sharedLedger():
				if err := startChangeLog(tx, sb.Name, sb.Generation); err != nil {
					return err
				}
			case flat:
				if err := tx.PutMeta(layerLogMeta(sb.Name), strconv.FormatUint(sb.Generation+1, 10)); err != nil {
					return err
				}
			}
			return e.putLayerTop(tx, sb, key)
		}); err != nil {
			return err
		}
	}
	if e.sharedLedger() {
		return nil
	}
	upTo := sb.Generation
	if flat {
		upTo = store.AllGenerations // what a removed sandbox of this name left too
	}
	_, err := e.store.DropChanges(ctx, sb.Name, upTo)
	return err
}

// buildLayer prepares key on parent, mounts it on a temporary directory,
// lets fill write into it, syncs, unmounts and commits it. Failpoints are
// named prefix+"-prepared", "-written" and "-committed". It returns the
// layer's directory on native ("" on overlay) and what fill skipped.
func (e *Env) buildLayer(ctx context.Context, key, parent, fp string, fill func(target string) ([]string, error)) (string, []string, error) {
	buildKey := key + "/build"
	dirKey := e.layerDirMeta(key)
	if err := e.snap.Remove(ctx, buildKey); err != nil {
		return "", nil, err
	}
	mounts, err := e.snap.Prepare(ctx, buildKey, parent)
	if err != nil {
		return "", nil, fmt.Errorf("persisted layer: %w", err) // err says "prepare snapshot …"
	}
	failpoint.Hit(fp + "-prepared")
	dir, _ := snapshot.BindSource(mounts)
	if e.snap.Kind() != snapshot.KindNative {
		dir = ""
	}
	target, err := os.MkdirTemp(e.tmpDir(), "layer-")
	if err != nil {
		return "", nil, err
	}
	defer os.Remove(target)
	if err := snapshot.MountAll(mounts, target); err != nil {
		e.snap.Remove(ctx, buildKey)
		return "", nil, fmt.Errorf("persisted layer: %w", err) // err says "mount …"
	}
	// The copy runs parked (locks.go): the next use of the ledger reopens it.
	var skipped []string
	applyErr := e.park()
	if applyErr == nil {
		skipped, applyErr = fill(target)
	}
	if applyErr == nil {
		applyErr = syncFS(target) // the layer is durable before it is committed
	}
	if err := snapshot.Unmount(target); err != nil && applyErr == nil {
		applyErr = err
	}
	if applyErr != nil {
		e.snap.Remove(context.WithoutCancel(ctx), buildKey)
		if errors.Is(applyErr, errFlat) {
			return "", nil, applyErr
		}
		return "", nil, fmt.Errorf("build persisted layer: %w", applyErr)
	}
	failpoint.Hit(fp + "-written")
	if dir != "" {
		if err := e.store.Update(func(tx *store.Tx) error { return tx.PutMeta(dirKey, dir) }); err != nil {
			return "", nil, err
		}
	}
	if err := e.snap.Commit(ctx, key, buildKey); err != nil {
		return "", nil, fmt.Errorf("persisted layer: %w", err) // err says "commit snapshot …"
	}
	failpoint.Hit(fp + "-committed")
	return dir, skipped, nil
}

// applyState writes the persisted state into a freshly prepared root that no
// sandbox process has touched, by directory descriptors (hostile.Writer): no
// path component is ever resolved through a symlink, whatever links the
// image or the state holds, so nothing is written where a link points. A
// path that cannot be applied so (not clean, under a link or a file) is
// skipped and reported. A blob that is missing or does not match its
// digest fails the whole build, naming the record: open never lays a
// state other than the recorded one.
func (e *Env) applyState(ctx context.Context, target string, state State) ([]string, error) {
	w, err := hostile.NewWriter(target)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var skipped []string
	sorted := state.Sorted()
	for i, r := range sorted {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if i%1000 == 999 {
			e.progress.Update(progress.Status{What: "applying persisted state", Items: int64(i + 1), Total: int64(len(sorted)), Unit: "files"})
		}
		if sk, err := e.applyChecked(w, r); err != nil {
			return nil, err
		} else if sk != "" {
			skipped = append(skipped, sk)
		}
	}
	return skipped, nil
}

// applyChecked applies r, returning why it was skipped ("" if it was
// not): a record the image's tree has no room for (a path under an image
// file or link). A blob that fails its check is an error, and so is the
// host failing the write (a full disk, a quota, an I/O error): the layer
// would lack the record, and be reused as the generation's layer.
func (e *Env) applyChecked(w *hostile.Writer, r *store.Record) (string, error) {
	if !cleanAbs(r.Path) {
		return fmt.Sprintf("%q: not a clean absolute path", r.Path), nil
	}
	if err := e.applyRecord(w, r); errdefs.IsDataLoss(err) {
		return "", err
	} else if hostFailure(err) {
		return "", fmt.Errorf("lay persisted %s into the sandbox's layer: %w (free some space and open again; nothing was opened)", escape.Name(r.Path), err)
	} else if err != nil {
		return fmt.Sprintf("%q: %v", r.Path, err), nil
	}
	return "", nil
}

func (e *Env) applyRecord(w *hostile.Writer, r *store.Record) error {
	// Parents missing from the image and the state are made 0755, for a
	// delete too: the session that deleted a path saw its parent, which may
	// exist only for a child whose directory's record was rejected, and
	// must not vanish with that child.
	if dir := path.Dir(r.Path); dir != "/" {
		err := w.MkdirAll(dir, 0o755)
		if r.Kind == change.KindDelete && errors.Is(err, hostile.ErrNotDir) {
			return nil // a file of the image is in the way: nothing to delete
		}
		if err != nil {
			return err
		}
	}
	if r.Kind == change.KindDelete {
		return w.RemoveAll(r.Path)
	}
	switch r.Type {
	case change.TypeDir:
		return w.Mkdir(r.Path, r.Mode&DirModeBits, r.UID, r.GID)
	case change.TypeSymlink:
		return w.Symlink(r.Path, r.Link, r.UID, r.GID)
	case change.TypeFile:
		src, err := e.OpenRecord(r)
		if err != nil {
			return err
		}
		defer src.Close()
		return w.WriteFile(r.Path, src, r.Mode&0o777, r.UID, r.GID, r.Mtime)
	}
	return fmt.Errorf("cannot apply a %s", r.Type)
}

// hostFailure says whether err is the host's failing a write, not
// something about the record: no space, a quota, an I/O error, a
// read-only file system, no memory.
func hostFailure(err error) bool {
	return isNoSpace(err) || errors.Is(err, unix.EIO) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.ENOMEM)
}
