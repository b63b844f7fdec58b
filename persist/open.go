package persist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/failpoint"
	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/persist/hostile"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// Opened describes an open sandbox's root.
type Opened struct {
	Name       string        `json:"name"`
	Path       string        `json:"path"`
	Session    uint64        `json:"session"`
	Generation uint64        `json:"generation"`
	Mounts     []mount.Mount `json:"-"` // as mounted at Path: nodev,nosuid (snapshot.HostMounts)
	Skipped    []string      `json:"-"` // stored paths that were not applied, with why
	Already    bool          `json:"-"` // the sandbox was open already
}

// OpenSandbox prepares a fresh root from the image and the persisted state and
// mounts it. On an open sandbox it returns the same root and starts nothing.
func (e *Env) OpenSandbox(ctx context.Context, name string) (_ *Opened, retErr error) {
	defer e.progress.Done()
	if _, err := e.getSandbox(name); err != nil {
		return nil, err
	}
	token, err := e.takeLease(name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			e.releaseLeaseIfClosed(name, token)
		}
	}()
	// A root of this host's that another host took over: fence it first
	// (its changes go to the recovery area), so nothing below removes it.
	if err := e.fenceLocal(ctx, name); err != nil {
		return nil, err
	}
	sb, err := e.getSandbox(name)
	if err != nil {
		return nil, err
	}
	if sb.State == store.StateClosing {
		// Finish the interrupted close first.
		if _, err := e.CloseSandbox(ctx, name, CloseOptions{}); err != nil {
			return nil, fmt.Errorf("finish interrupted close of %s: %w", name, err)
		}
		if sb, err = e.getSandbox(name); err != nil {
			return nil, err
		}
	}
	if sb.State == store.StateOpen {
		return e.reopen(ctx, sb)
	}
	if err := e.cleanupSandbox(ctx, sb); err != nil {
		return nil, err
	}
	var (
		img   *store.Image
		state State
	)
	if err := e.store.View(func(tx *store.Tx) error {
		var err error
		if img, err = tx.GetImage(sb.Image); err != nil {
			return err
		}
		state, err = LoadState(ctx, tx, sb)
		return err
	}); err != nil {
		return nil, err
	}
	if ok, err := e.snap.Exists(ctx, img.Snapshot); err != nil {
		return nil, err
	} else if !ok {
		// A ledger shared by several hosts: each imports the image once.
		return nil, errclass.Errorf(errdefs.ErrFailedPrecondition, "image %s is not imported on this host (%s): spillway image import %s SOURCE", img.Name, e.hostID, img.Name)
	}
	parent, baseDir := img.Snapshot, img.Dir
	var skipped []string
	if len(state) > 0 {
		key := layerKey(sb.Name, sb.Generation)
		dir, sk, err := e.ensureLayer(ctx, key, img.Snapshot, state)
		if err != nil {
			return nil, err
		}
		parent, baseDir, skipped = key, dir, sk
	}
	n := sb.Session + 1
	skey := sessionKey(sb.Name, n)
	mounts, err := e.snap.Prepare(ctx, skey, parent)
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w", name, err) // err says "prepare snapshot …"
	}
	failpoint.Hit("open.root-prepared")
	target := e.MountPath(name)
	if err := e.makeMountPoint(target); err != nil {
		e.snap.Remove(ctx, skey)
		return nil, err
	}
	if err := snapshot.MountAll(mounts, target); err != nil {
		e.snap.Remove(ctx, skey)
		return nil, fmt.Errorf("root of %s: %w", name, err) // err says "mount …"
	}
	failpoint.Hit("open.mounted")
	now := e.Now()
	sb.State, sb.Session, sb.OpenGeneration = store.StateOpen, n, sb.Generation
	sb.Path, sb.Snapshot, sb.Layer, sb.BaseDir = target, skey, parent, baseDir
	if parent == img.Snapshot {
		sb.Layer = ""
	}
	err = e.store.Update(func(tx *store.Tx) error {
		if err := e.checkLease(tx, name, token); err != nil {
			return err
		}
		ses := &store.Session{Sandbox: name, N: n, State: store.StateOpen, Opened: now, Generation: sb.Generation, Host: e.hostID, Token: token}
		if err := tx.PutSession(ses); err != nil {
			return err
		}
		if err := tx.PutSandbox(sb); err != nil {
			return err
		}
		_, err := tx.Append(e.Now(), "sandbox.open", name, map[string]string{
			"session": fmt.Sprint(n), "generation": fmt.Sprint(sb.Generation), "path": target,
		})
		return err
	})
	if err != nil {
		snapshot.Unmount(target)
		e.snap.Remove(ctx, skey)
		return nil, err
	}
	failpoint.Hit("open.committed")
	return &Opened{Name: name, Path: target, Session: n, Generation: sb.Generation, Mounts: snapshot.HostMounts(mounts), Skipped: skipped}, nil
}

// reopen returns the root of an open sandbox, mounting it again if it was
// unmounted behind spillway's back (e.g. after a reboot).
func (e *Env) reopen(ctx context.Context, sb *store.Sandbox) (*Opened, error) {
	mounts, err := e.snap.Mounts(ctx, sb.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w", sb.Name, err)
	}
	mounted, err := snapshot.IsMounted(sb.Path)
	if err != nil {
		return nil, err
	}
	if !mounted {
		if err := e.makeMountPoint(sb.Path); err != nil {
			return nil, err
		}
		if err := snapshot.MountAll(mounts, sb.Path); err != nil {
			return nil, fmt.Errorf("mount root of %s again: %w", sb.Name, err)
		}
	}
	return &Opened{Name: sb.Name, Path: sb.Path, Session: sb.Session, Generation: sb.OpenGeneration, Mounts: snapshot.HostMounts(mounts), Already: true}, nil
}

// ensureLayer returns the committed layer holding state over the image,
// building it if it does not exist yet. It returns the layer's directory for
// the native snapshotter ("" for overlay) and the stored paths it skipped.
func (e *Env) ensureLayer(ctx context.Context, key, image string, state State) (string, []string, error) {
	buildKey := key + "/build"
	dirKey := "layerdir:" + key
	if ok, err := e.snap.Exists(ctx, key); err != nil {
		return "", nil, err
	} else if ok {
		var dir string
		err := e.store.View(func(tx *store.Tx) error {
			v, _, err := tx.GetMeta(dirKey)
			dir = v
			return err
		})
		return dir, nil, err
	}
	if err := e.snap.Remove(ctx, buildKey); err != nil {
		return "", nil, err
	}
	mounts, err := e.snap.Prepare(ctx, buildKey, image)
	if err != nil {
		return "", nil, fmt.Errorf("persisted layer: %w", err) // err says "prepare snapshot …"
	}
	failpoint.Hit("open.layer-prepared")
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
	skipped, applyErr := e.applyState(ctx, target, state)
	if applyErr == nil {
		applyErr = syncFS(target) // the layer is durable before it is committed
	}
	if err := snapshot.Unmount(target); err != nil && applyErr == nil {
		applyErr = err
	}
	if applyErr != nil {
		e.snap.Remove(context.WithoutCancel(ctx), buildKey)
		return "", nil, fmt.Errorf("build persisted layer: %w", applyErr)
	}
	failpoint.Hit("open.layer-written")
	if dir != "" {
		if err := e.store.Update(func(tx *store.Tx) error { return tx.PutMeta(dirKey, dir) }); err != nil {
			return "", nil, err
		}
	}
	if err := e.snap.Commit(ctx, key, buildKey); err != nil {
		return "", nil, fmt.Errorf("persisted layer: %w", err) // err says "commit snapshot …"
	}
	failpoint.Hit("open.layer-committed")
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
		if !cleanAbs(r.Path) {
			skipped = append(skipped, fmt.Sprintf("%q: not a clean absolute path", r.Path))
			continue
		}
		if err := e.applyRecord(w, r); errdefs.IsDataLoss(err) {
			return nil, err
		} else if err != nil {
			skipped = append(skipped, fmt.Sprintf("%q: %v", r.Path, err))
		}
	}
	return skipped, nil
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
		return w.Mkdir(r.Path, r.Mode&0o777, r.UID, r.GID)
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

// cleanupSandbox removes what a crashed command left of a closed sandbox:
// its mount, session roots, and layers of other generations.
func (e *Env) cleanupSandbox(ctx context.Context, sb *store.Sandbox) error {
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
	if sb.State == store.StateOpen {
		keep[sb.Snapshot] = true
		keep[sb.Layer] = true
	} else {
		keep[layerKey(sb.Name, sb.Generation)] = true
	}
	prefix := sandboxKeyPrefix(sb.Name)
	// Children before parents: sessions and builds first, then layers.
	for _, pass := range []func(string) bool{
		func(k string) bool {
			return !strings.Contains(strings.TrimPrefix(k, prefix), "gen/") || strings.HasSuffix(k, "/build")
		},
		func(k string) bool { return true },
	} {
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) || keep[k] || !pass(k) {
				continue
			}
			if err := e.snap.Remove(ctx, k); err != nil {
				return fmt.Errorf("leftover: %w", err) // err says "remove snapshot K: …"
			}
		}
	}
	return nil
}

func (e *Env) getSandbox(name string) (*store.Sandbox, error) {
	var sb *store.Sandbox
	err := e.store.View(func(tx *store.Tx) error {
		var err error
		sb, err = tx.GetSandbox(name)
		return err
	})
	if err != nil {
		return nil, noSandbox(name, err)
	}
	return sb, nil
}
