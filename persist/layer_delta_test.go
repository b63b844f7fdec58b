package persist

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// The invariant of delta layers (layer_delta.go): for any sequence of
// state changes, the root an open lays from a chain of deltas equals the
// root a full (flat) build of the same state over the image gives, entry
// by entry: type, permission bits, owner, content, link target, and a
// file's mtime.

// fnode is one entry as the delta tests compare it.
type fnode struct {
	typ, data string
	mode      fs.FileMode
	uid, gid  uint32
	mtime     int64 // files only
}

func (n fnode) String() string {
	return fmt.Sprintf("%s %v %d:%d %s mtime=%d", n.typ, n.mode, n.uid, n.gid, n.data, n.mtime)
}

// fullTree lists root, never following a link.
func fullTree(t *testing.T, root string) map[string]fnode {
	t.Helper()
	out := map[string]fnode{}
	err := filepath.WalkDir(root, func(q string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(q)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := fnode{mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.IsDir():
			n.typ = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			n.typ, n.mode = "symlink", 0
			if n.data, err = os.Readlink(q); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(q)
			if err != nil {
				return err
			}
			n.typ, n.data, n.mtime = "file", fmt.Sprintf("%x", sha256.Sum256(b)), fi.ModTime().UnixNano()
		default:
			n.typ = fi.Mode().Type().String()
		}
		rel, _ := filepath.Rel(root, q)
		out["/"+rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flatTree builds the sandbox's current state as one flat layer over the
// image, as an open without a chain does, and lists it.
func flatTree(t *testing.T, f *fixture) map[string]fnode {
	t.Helper()
	ctx := context.Background()
	var (
		img   *store.Image
		state State
	)
	if err := f.e.store.View(func(tx *store.Tx) error {
		sb, err := tx.GetSandbox("docs")
		if err != nil {
			return err
		}
		if img, err = tx.GetImage(sb.Image); err != nil {
			return err
		}
		sb.State = store.StateClosed // the state as the open loaded it
		state, err = LoadState(ctx, tx, sb)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	key := "test/flat"
	if _, _, err := f.e.buildLayer(ctx, key, img.Snapshot, "open.layer", func(target string) ([]string, error) {
		return f.e.applyState(ctx, target, state)
	}); err != nil {
		t.Fatal(err)
	}
	defer f.e.snap.Remove(ctx, key)
	mounts, err := f.e.snap.View(ctx, key+"/view", key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.e.snap.Remove(ctx, key+"/view")
	dir := t.TempDir()
	if err := snapshot.MountAll(mounts, dir); err != nil {
		t.Fatal(err)
	}
	defer snapshot.Unmount(dir)
	return fullTree(t, dir)
}

// chainDepth is the number of layers under the open sandbox's root.
func chainDepth(t *testing.T, f *fixture) int {
	t.Helper()
	sb, err := f.e.getSandbox("docs")
	if err != nil {
		t.Fatal(err)
	}
	if sb.Layer == "" {
		return 0
	}
	ch, err := f.e.chain(context.Background(), "docs", sb.Layer)
	if err != nil {
		t.Fatal(err)
	}
	return len(ch)
}

// openAndCompare opens the sandbox and checks its root against a flat
// build of the same state; it returns the root and the chain's depth.
func openAndCompare(t *testing.T, f *fixture, what string) (string, int) {
	t.Helper()
	root := f.open()
	got := fullTree(t, root)
	want := flatTree(t, f)
	if d := treeDiff(want, got); d != "" {
		t.Fatalf("%s: the root from the layer chain differs from a flat build (- flat, + chain):\n%s", what, d)
	}
	return root, chainDepth(t, f)
}

// TestDeltaLayerModel runs the random sessions and decisions of
// TestApplyStateModel and checks every open against a flat build.
func TestDeltaLayerModel(t *testing.T) {
	seed := propEnvInt(t, "SPILLWAY_PROP_SEED", 2)
	steps := int(propEnvInt(t, "SPILLWAY_PROP_STEPS", 60))
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := newProp(t, seed)
	deltas := 0
	for i := 0; i < steps && !t.Failed(); i++ {
		for n := p.rnd.Intn(3); n > 0; n-- {
			p.decide()
		}
		root, depth := openAndCompare(t, p.f, fmt.Sprintf("step %d", i))
		if depth > 1 {
			deltas++
		}
		p.session(root, readArea(t, root))
		p.f.close()
	}
	if t.Failed() {
		t.Logf("actions:\n%s", strings.Join(p.log, "\n"))
	}
	if deltas < steps/3 {
		t.Errorf("only %d of %d opens used a delta layer", deltas, steps)
	}
}

func deltaFixture(t *testing.T, review change.ReviewMode, patterns ...string) (*fixture, string) {
	t.Helper()
	f := newFixture(t, snapshot.KindOverlay)
	x := f.except(func(x *exceptions.Exception) { x.Forced, x.AllowSymlinks, x.Review = true, true, review }, patterns...)
	return f, x
}

// mustDepth fails unless the open root sits on a delta (a chain of depth
// at least 2).
func mustDelta(t *testing.T, depth int, what string) {
	t.Helper()
	if depth < 2 {
		t.Fatalf("%s: the open built no delta (chain depth %d)", what, depth)
	}
}

func TestDeltaRevokeModifiedFile(t *testing.T) {
	f, docs := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	f.except(func(x *exceptions.Exception) { x.Forced = true }, "/etc/hosts")
	root := f.open()
	write(t, root, "/home/user/Documents/readme.txt", "changed\n", 0o600)
	write(t, root, "/etc/hosts", "10.0.0.1 h\n", 0o644)
	f.close()
	root, _ = openAndCompare(t, f, "after the change")
	write(t, root, "/home/user/Documents/new.txt", "new\n", 0o644)
	f.close()
	_, depth := openAndCompare(t, f, "after a second change")
	mustDelta(t, depth, "second change")
	f.close()
	if _, err := f.e.RevokeException(f.ctx, docs, "undo", true); err != nil {
		t.Fatal(err)
	}
	root, depth = openAndCompare(t, f, "after revoke --purge")
	mustDelta(t, depth, "revoke")
	if b, _ := os.ReadFile(filepath.Join(root, "home/user/Documents/readme.txt")); string(b) != "A document that came with the image.\n" {
		t.Fatalf("readme.txt after the revoke: %q", b)
	}
	f.close()
}

func TestDeltaRevokeDeletedDirectory(t *testing.T) {
	f, docs := deltaFixture(t, change.ReviewAfter, "/home/user/Documents", "/home/user/Documents/**")
	f.except(func(x *exceptions.Exception) { x.Forced = true }, "/etc/hosts")
	root := f.open()
	write(t, root, "/etc/hosts", "10.0.0.1 h\n", 0o644)
	f.close()
	root, _ = openAndCompare(t, f, "first")
	if err := os.RemoveAll(filepath.Join(root, "home/user/Documents")); err != nil {
		t.Fatal(err)
	}
	f.close()
	root, depth := openAndCompare(t, f, "after the delete")
	mustDelta(t, depth, "delete")
	if _, err := os.Lstat(filepath.Join(root, "home/user/Documents")); !os.IsNotExist(err) {
		t.Fatalf("Documents after its delete: %v", err)
	}
	f.close()
	if _, err := f.e.RevokeException(f.ctx, docs, "undo", true); err != nil {
		t.Fatal(err)
	}
	root, depth = openAndCompare(t, f, "after revoke --purge")
	mustDelta(t, depth, "revoke")
	if b, _ := os.ReadFile(filepath.Join(root, "home/user/Documents/readme.txt")); string(b) != "A document that came with the image.\n" {
		t.Fatalf("readme.txt after the revoke: %q", b)
	}
	f.close()
}

func TestDeltaDirReplacedByFileAndBack(t *testing.T) {
	f, _ := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "/home/user/Documents/d/f1", "one\n", 0o644)
	write(t, root, "/home/user/Documents/d/sub/f2", "two\n", 0o640)
	f.close()
	root, _ = openAndCompare(t, f, "first")
	d := filepath.Join(root, "home/user/Documents/d")
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/home/user/Documents/d", "a file now\n", 0o644)
	f.close()
	root, depth := openAndCompare(t, f, "dir replaced by a file")
	mustDelta(t, depth, "dir to file")
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/home/user/Documents/d/f3", "three\n", 0o644)
	f.close()
	_, depth = openAndCompare(t, f, "file replaced by a dir")
	mustDelta(t, depth, "file to dir")
	if _, err := os.Lstat(filepath.Join(d, "f1")); !os.IsNotExist(err) {
		t.Fatalf("d/f1 of the old directory is back: %v", err)
	}
	f.close()
}

func TestDeltaRejectBringsBackOlderVersion(t *testing.T) {
	f, _ := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "/home/user/Documents/a.txt", "version 1\n", 0o644)
	f.close()
	if _, err := f.e.ApproveAll(f.ctx, "docs", "ok"); err != nil {
		t.Fatal(err)
	}
	root, _ = openAndCompare(t, f, "v1")
	write(t, root, "/home/user/Documents/a.txt", "version 2\n", 0o600)
	f.close()
	_, depth := openAndCompare(t, f, "v2")
	mustDelta(t, depth, "v2")
	f.close()
	pending, err := f.e.ReviewList(f.ctx, "docs")
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending: %v %v", pending, err)
	}
	if _, err := f.e.Reject(f.ctx, []uint64{pending[0].ID}, "no"); err != nil {
		t.Fatal(err)
	}
	root, depth = openAndCompare(t, f, "after the reject")
	mustDelta(t, depth, "reject")
	if b, _ := os.ReadFile(filepath.Join(root, "home/user/Documents/a.txt")); string(b) != "version 1\n" {
		t.Fatalf("a.txt after the reject: %q", b)
	}
	f.close()
}

func TestDeltaPathUnderDirThatBecameSymlink(t *testing.T) {
	f, _ := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "/home/user/Documents/d/f", "in d\n", 0o644)
	f.close()
	if _, err := f.e.ApproveAll(f.ctx, "docs", "ok"); err != nil {
		t.Fatal(err)
	}
	root, _ = openAndCompare(t, f, "first")
	d := filepath.Join(root, "home/user/Documents/d")
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", d); err != nil {
		t.Fatal(err)
	}
	f.close()
	_, depth := openAndCompare(t, f, "d became a link")
	mustDelta(t, depth, "link")
	f.close()
	pending, err := f.e.ReviewList(f.ctx, "docs")
	if err != nil || len(pending) == 0 {
		t.Fatalf("pending: %v %v", pending, err)
	}
	var ids []uint64
	for _, r := range pending {
		ids = append(ids, r.ID)
	}
	if _, err := f.e.Reject(f.ctx, ids, "no"); err != nil {
		t.Fatal(err)
	}
	root, depth = openAndCompare(t, f, "link rejected")
	mustDelta(t, depth, "reject")
	if b, _ := os.ReadFile(filepath.Join(root, "home/user/Documents/d/f")); string(b) != "in d\n" {
		t.Fatalf("d/f after the reject: %q", b)
	}
	f.close()
}

// A directory removed and made again in one session is a new (opaque)
// directory: the records below it from before no longer apply, though the
// index still holds them.
func TestDeltaDirRecreatedDropsOlderChildren(t *testing.T) {
	f, _ := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "/home/user/Documents/d/f1", "one\n", 0o644)
	f.close()
	if _, err := f.e.ApproveAll(f.ctx, "docs", "ok"); err != nil {
		t.Fatal(err)
	}
	root, _ = openAndCompare(t, f, "first")
	d := filepath.Join(root, "home/user/Documents/d")
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/home/user/Documents/d/f3", "three\n", 0o644)
	f.close()
	_, depth := openAndCompare(t, f, "d made again")
	mustDelta(t, depth, "d made again")
	if _, err := os.Lstat(filepath.Join(d, "f1")); !os.IsNotExist(err) {
		t.Fatalf("d/f1 of the old directory is back: %v", err)
	}
	f.close()
	// Rejecting the new directory alone: the root still equals a flat
	// build of the state that decision leaves.
	pending, err := f.e.ReviewList(f.ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range pending {
		if r.Path == "/home/user/Documents/d" {
			if _, err := f.e.Reject(f.ctx, []uint64{r.ID}, "no"); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, depth = openAndCompare(t, f, "new d rejected")
	mustDelta(t, depth, "new d rejected")
	f.close()
}

// TestDeltaFlipsRecordsBelowADirectory writes records and the index
// directly: a newer directory record drops an older record below it (the
// delta must remove what only the index still names), and taking the newer
// record back brings the older one back.
func TestDeltaFlipsRecordsBelowADirectory(t *testing.T) {
	f := newFixture(t, snapshot.KindOverlay)
	const d = "/home/user/Documents/d"
	var next uint64
	step := func(set map[string]*store.Record) {
		t.Helper()
		if err := f.e.store.Update(func(tx *store.Tx) error {
			sb, err := tx.GetSandbox("docs")
			if err != nil {
				return err
			}
			sb.Generation++
			// In path order, so a directory's record is older than those
			// below it, made in the same step.
			paths := make([]string, 0, len(set))
			for p := range set {
				paths = append(paths, p)
			}
			slices.Sort(paths)
			for _, p := range paths {
				r := set[p]
				var id uint64
				if r != nil {
					if r.ID == 0 {
						if r.ID, err = tx.NextRecordID(); err != nil {
							return err
						}
					}
					r.Sandbox, r.Session, r.Path, r.Status, r.Kind = "docs", 1, p, change.StatusApproved, change.KindAdd
					if err := tx.PutRecord(r); err != nil {
						return err
					}
					id = r.ID
				}
				if err := tx.PutCurrent("docs", p, sb.Generation, id); err != nil {
					return err
				}
			}
			next = sb.Generation
			return tx.PutSandbox(sb)
		}); err != nil {
			t.Fatal(err)
		}
	}
	f.open() // session 1, the records' session, closed before they exist
	f.close()
	old := &store.Record{Type: change.TypeDir, Mode: 0o750}
	step(map[string]*store.Record{d: old, d + "/sub": {Type: change.TypeDir, Mode: 0o700}, d + "/sub/x": {Type: change.TypeDir, Mode: 0o755}})
	openAndCompare(t, f, "first")
	f.close()
	step(map[string]*store.Record{d: {Type: change.TypeDir, Mode: 0o711}})
	root, depth := openAndCompare(t, f, "a newer directory record")
	mustDelta(t, depth, "newer directory")
	if _, err := os.Lstat(filepath.Join(root, d, "sub")); !os.IsNotExist(err) {
		t.Fatalf("generation %d: d/sub, older than d's record, is still there: %v", next, err)
	}
	f.close()
	step(map[string]*store.Record{d: old})
	root, depth = openAndCompare(t, f, "the older directory record again")
	mustDelta(t, depth, "older directory")
	if _, err := os.Lstat(filepath.Join(root, d, "sub/x")); err != nil {
		t.Fatalf("d/sub/x is not back: %v", err)
	}
	f.close()
}

// After the index is rebuilt, the change log no longer says what changed
// since the last built layer: the next open builds a flat layer, and check
// finds nothing stray meanwhile.
func TestRebuiltIndexBuildsFlat(t *testing.T) {
	f, _ := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	for i := range 3 {
		root := f.open()
		write(t, root, fmt.Sprintf("/home/user/Documents/f%d", i), "x\n", 0o644)
		f.close()
	}
	if err := f.e.rebuildCurrent(f.ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	if p, err := f.e.Check(f.ctx); err != nil || len(p) != 0 {
		t.Fatalf("check after the rebuild: %q %v", p, err)
	}
	root, depth := openAndCompare(t, f, "after the rebuild")
	if depth != 1 {
		t.Fatalf("the open after a rebuilt index built a chain of %d, want a flat layer", depth)
	}
	write(t, root, "/home/user/Documents/f9", "x\n", 0o644)
	f.close()
	_, depth = openAndCompare(t, f, "then a change")
	mustDelta(t, depth, "the change after the flat layer")
	f.close()
}

// gc squashes a chain deeper than half the limit into one flat layer of
// the same state and removes the old chain; an open at the limit builds a
// flat layer itself.
func TestSquashAndChainLimit(t *testing.T) {
	defer func(n int) { maxLayerChain = n }(maxLayerChain)
	maxLayerChain = 4
	f, _ := deltaFixture(t, change.ReviewAfter, "/home/user/Documents/**")
	depths := []int{}
	for i := range 7 {
		root := f.open()
		depths = append(depths, chainDepth(t, f))
		write(t, root, fmt.Sprintf("/home/user/Documents/f%d", i), "x\n", 0o644)
		f.close()
	}
	// No layer while the state is empty, then 1 (flat), 2, 3, 4 (the
	// limit), 1 (flat again), 2.
	if want := []int{0, 1, 2, 3, 4, 1, 2}; fmt.Sprint(depths) != fmt.Sprint(want) {
		t.Fatalf("chain depths %v, want %v", depths, want)
	}
	_, depth := openAndCompare(t, f, "depth 3")
	if depth != 3 {
		t.Fatalf("depth %d, want 3", depth)
	}
	f.close()
	keys, _ := f.e.snap.Keys(f.ctx)
	if _, err := f.e.GC(f.ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := f.e.snap.Keys(f.ctx)
	var layers []string
	for _, k := range after {
		if strings.HasPrefix(k, "sbx/docs/") {
			layers = append(layers, k)
		}
	}
	if len(layers) != 1 || !strings.HasSuffix(layers[0], "/flat") {
		t.Fatalf("after gc: sandbox snapshots %v (before %v), want one flat layer", layers, keys)
	}
	if p, err := f.e.Check(f.ctx); err != nil || len(p) != 0 {
		t.Fatalf("check after the squash: %q %v", p, err)
	}
	_, depth = openAndCompare(t, f, "after the squash")
	if depth != 1 {
		t.Fatalf("depth after the squash %d, want 1", depth)
	}
	f.close()
}
