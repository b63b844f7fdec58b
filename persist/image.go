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
// error the snapshot is removed and the store is unchanged.
func (e *Env) ImportImage(ctx context.Context, name string, src snapshot.Source) (*store.Image, error) {
	defer e.progress.Done()
	if err := ValidateName("image", name); err != nil {
		return nil, err
	}
	err := e.store.View(func(tx *store.Tx) error {
		_, err := tx.GetImage(name)
		if err == nil {
			return &ExistsError{Kind: "image", Name: name}
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
	st, err := e.snap.Import(ctx, key, src, progress.Named(e.progress, "importing "+name))
	if err != nil {
		return nil, err // it says "image import: …" already
	}
	failpoint.Hit("import.snapshot-committed")
	img := &store.Image{Name: name, Snapshot: key, Files: st.Files, Bytes: st.Bytes, Created: e.Now(), Dir: st.Dir}
	err = e.store.Update(func(tx *store.Tx) error {
		if err := tx.PutImage(img); err != nil {
			return err
		}
		_, err := tx.Append(e.Now(), "image.import", "", map[string]string{
			"image": name, "files": fmt.Sprint(st.Files), "bytes": fmt.Sprint(st.Bytes),
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
