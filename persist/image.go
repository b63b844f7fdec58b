package persist

import (
	"context"
	"errors"
	"fmt"

	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// ImportImage builds image name from src. Nothing is half-imported: on any
// error the snapshot is removed and the store is unchanged. It holds the
// image's lock, not the whole root: imports of other images and commands
// on sandboxes run beside it, and the copy runs with the ledger parked.
func (e *Env) ImportImage(ctx context.Context, name string, src snapshot.Source) (*store.Image, error) {
	defer e.progress.Done()
	if err := ValidateName("image", name); err != nil {
		return nil, err
	}
	if err := e.lockImage(name); err != nil {
		return nil, err
	}
	var known *store.Image // in a shared ledger, imported by another host
	err := e.store.View(func(tx *store.Tx) error {
		img, err := e.hostImage(tx, name) // its snapshot key checked
		if err == nil {
			if ok, err := e.snap.Exists(ctx, img.Snapshot); err != nil || ok {
				return errors.Join(err, &ExistsError{Kind: "image", Name: name})
			}
			known = img
			return nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	key := imageKey(name)
	// A snapshot without a store entry is the leftover of a crashed import.
	if err := e.snap.Remove(ctx, key); err != nil {
		return nil, err
	}
	// The copy runs parked: other commands use the ledger meanwhile.
	src.Park = func() error {
		if err := e.park(); err != nil {
			return err
		}
		failpoint.Hit("import.parked")
		return nil
	}
	st, err := e.snap.Import(ctx, key, src, progress.Named(e.progress, "importing "+name))
	if err != nil {
		return nil, err // it says "image import: …" already
	}
	failpoint.Hit("import.snapshot-committed")
	if known != nil {
		return e.importHere(ctx, known, st)
	}
	img := &store.Image{Name: name, Snapshot: key, Files: st.Files, Bytes: st.Bytes, Created: e.Now(), Dir: st.Dir, Digest: st.Digest}
	err = e.store.Update(func(tx *store.Tx) error {
		if err := tx.PutImage(img); err != nil {
			return err
		}
		if err := e.putImageDir(tx, name, st.Dir); err != nil {
			return err
		}
		_, err := tx.Append(e.Now(), "image.import", "", map[string]string{
			"image": name, "files": fmt.Sprint(st.Files), "bytes": fmt.Sprint(st.Bytes), "digest": st.Digest,
		})
		return err
	})
	if err != nil {
		e.snap.Remove(ctx, key)
		return nil, err
	}
	failpoint.Hit("import.committed")
	return img, nil
}

// RemoveImage deletes an image that no sandbox uses.
func (e *Env) RemoveImage(ctx context.Context, name string) error {
	if err := e.Exclusive(); err != nil {
		return err
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if _, err := tx.GetImage(name); err != nil {
			if left, lerr := e.snap.Exists(ctx, imageKey(name)); errors.Is(err, store.ErrNotFound) && lerr == nil && left {
				return errLeftover // a removal crashed after its commit: finish it
			}
			return noImage(name, err)
		}
		sbs, err := tx.ListSandboxes()
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if sb.Image == name {
				return &InUseError{Image: name, Sandbox: sb.Name}
			}
		}
		if err := tx.DeleteImage(name); err != nil {
			return err
		}
		if e.sharedLedger() {
			if err := tx.DeleteMeta(e.imageDirMeta(name)); err != nil {
				return err
			}
		}
		_, err = tx.Append(e.Now(), "image.rm", "", map[string]string{"image": name})
		return err
	})
	if err != nil && !errors.Is(err, errLeftover) {
		return err
	}
	failpoint.Hit("image-rm.committed")
	return e.snap.Remove(ctx, imageKey(name))
}

// Images lists the imported images.
func (e *Env) Images() ([]*store.Image, error) {
	var out []*store.Image
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		out, err = tx.ListImages()
		return err
	})
	return out, err
}

var errLeftover = errors.New("leftover of an interrupted removal")

// importHere finishes the import on this host of an image the shared
// ledger has from another host: the snapshot just built must hold what the
// ledger says the image holds (its tree's digest; for an image imported
// before digests were kept, its file count and bytes), else it is removed.
// The ledger keeps its entry; the import is audited with this host.
func (e *Env) importHere(ctx context.Context, known *store.Image, st snapshot.ImportStats) (*store.Image, error) {
	differs := st.Files != known.Files || st.Bytes != known.Bytes
	if known.Digest != "" && st.Digest != known.Digest {
		differs = true
	}
	if differs {
		e.snap.Remove(ctx, imageKey(known.Name))
		return nil, invalidf("this source differs from image %s in the shared ledger (%s, %s, %s here; %s, %s, %s in the ledger): import the same source on every host, or import this one under another name",
			known.Name, plural(st.Files, "file"), plural(st.Bytes, "byte"), orNone(st.Digest), plural(known.Files, "file"), plural(known.Bytes, "byte"), orNone(known.Digest))
	}
	err := e.store.Update(func(tx *store.Tx) error {
		if err := e.putImageDir(tx, known.Name, st.Dir); err != nil {
			return err
		}
		_, err := tx.Append(e.Now(), "image.import", "", map[string]string{
			"image": known.Name, "files": fmt.Sprint(st.Files), "bytes": fmt.Sprint(st.Bytes), "digest": st.Digest, "host": e.hostID,
		})
		return err
	})
	if err != nil {
		e.snap.Remove(ctx, imageKey(known.Name))
		return nil, err
	}
	return known, nil
}

// orNone is s, or "no digest" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "no digest"
	}
	return s
}
