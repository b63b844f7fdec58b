package persist

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/internal/pgtest"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// fleetHosts returns one fixture per snapshotter kind, hosts h1, h2, …,
// with roots of their own sharing one PostgreSQL ledger (its URL
// returned) and one blob directory; each imported the image "base", and
// h1 made sandbox "docs".
func fleetHosts(t *testing.T, kinds ...string) ([]*fixture, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("persist tests mount filesystems and need root (CI runs them as root)")
	}
	url := pgtest.URL(t)
	blobs := "dir://" + filepath.Join(t.TempDir(), "blobs")
	var fs []*fixture
	for i, kind := range kinds {
		f := &fixture{t: t, ctx: context.Background(), dir: t.TempDir()}
		e, err := OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state"), Snapshotter: kind,
			LockTimeout: 5 * time.Second, HostID: fmt.Sprintf("h%d", i+1), Store: url, Blobs: blobs})
		if err != nil {
			t.Fatal(err)
		}
		f.e = e
		t.Cleanup(func() {
			for _, m := range mustMounts(t, f.e.root) {
				snapshot.Unmount(m)
			}
			f.e.Close()
		})
		if _, err := f.e.ImportImage(f.ctx, "base", snapshot.Source{Dir: busyboxRootfs(t)}); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	if err := fs[0].e.CreateSandbox("docs", "base"); err != nil {
		t.Fatal(err)
	}
	return fs, url
}

// fleetFixtures returns two hosts' fixtures, h1 and h2, with roots of
// their own sharing one PostgreSQL ledger and one blob directory; h1 made
// sandbox "docs" with an exception on Documents, both imported the image.
func fleetFixtures(t *testing.T) (*fixture, *fixture) {
	t.Helper()
	fs, _ := fleetHosts(t, snapshot.KindOverlay, snapshot.KindOverlay)
	fs[0].except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	return fs[0], fs[1]
}

// A sandbox that roams keeps a layer chain on each host: an open builds a
// delta on this host's own last layer from the changes other hosts closed
// since, and its root equals a flat build of the state.
func TestLayerCachePerHost(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	hosts := []*fixture{h1, h2}
	deltas := 0
	for i := range 8 {
		f := hosts[i%2]
		what := fmt.Sprintf("session %d on %s", i, f.e.HostID())
		root, depth := openAndCompare(t, f, what)
		if i >= 3 && depth < 2 { // h1 opens on the image at 0 and builds flat at 2
			t.Errorf("%s: built no delta on this host's chain (depth %d)", what, depth)
		}
		if depth >= 2 {
			deltas++
		}
		write(t, root, fmt.Sprintf("/home/user/Documents/doc%d.txt", i), fmt.Sprintf("session %d\n", i), 0o644)
		if i > 0 {
			if err := os.Remove(filepath.Join(root, fmt.Sprintf("home/user/Documents/doc%d.txt", i-1))); err != nil {
				t.Fatal(err)
			}
		}
		f.close()
	}
	if deltas < 5 {
		t.Errorf("%d of 8 opens used a delta, want 5", deltas)
	}
	// Each host's entry names its own top, of a generation it opened.
	for _, f := range hosts {
		var ent cacheEntry
		f.e.store.View(func(tx *store.Tx) (err error) { ent, err = f.e.cacheEntry(tx, "docs"); return })
		if !f.e.exists(f.ctx, ent.Top) {
			t.Errorf("%s: cached top %q does not exist", f.e.HostID(), ent.Top)
		}
	}
	for _, f := range hosts {
		if problems, err := f.e.Check(f.ctx); err != nil || len(problems) > 0 {
			t.Errorf("check on %s: %v %q", f.e.HostID(), err, problems)
		}
	}
}

// A sandbox removed and created again under the same name on another host
// starts again at the same generations: the first host's cached layers
// are of the old one and must not be used.
func TestLayerCacheNewIncarnation(t *testing.T) {
	h1, h2 := fleetFixtures(t)
	root := h1.open()
	write(t, root, "/home/user/Documents/old.txt", "old sandbox\n", 0o644)
	h1.close()
	openAndCompare(t, h1, "h1 caches generation 1")
	h1.close()
	if err := h2.e.RemoveSandbox(h2.ctx, "docs", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := h2.e.CreateSandbox("docs", "base"); err != nil {
		t.Fatal(err)
	}
	h2.except(func(x *exceptions.Exception) { x.Forced = true }, "/home/user/Documents/**")
	root = h2.open()
	write(t, root, "/home/user/Documents/new.txt", "new sandbox\n", 0o644)
	h2.close()
	root, _ = openAndCompare(t, h1, "h1 after the sandbox was created again")
	if _, err := os.Lstat(filepath.Join(root, "home/user/Documents/old.txt")); !os.IsNotExist(err) {
		t.Errorf("the old sandbox's file is in the new one's root: %v", err)
	}
	// h1's recovery area held the old sandbox's sessions 1 and 2, whose
	// numbers the new one reuses: the open removed them (ledger_lost.go).
	if rss, err := h1.e.recoverySessions("docs"); err != nil || len(rss) != 0 {
		t.Errorf("h1's recovery area after the open of the new sandbox: %d sessions (%v), want none of the old one", len(rss), err)
	}
	h1.close()
}

// gc evicts the layer chains of the sandboxes a host used least recently
// beyond SPILLWAY_LAYER_CACHE; the next open builds a flat layer.
func TestLayerCacheEviction(t *testing.T) {
	t.Setenv("SPILLWAY_LAYER_CACHE", "1")
	h1, _ := fleetFixtures(t)
	if err := h1.e.CreateSandbox("mail", "base"); err != nil {
		t.Fatal(err)
	}
	h1.except(func(x *exceptions.Exception) { x.Sandbox, x.Forced = "mail", true }, "/home/user/Documents/**")
	for _, name := range []string{"docs", "mail"} {
		for range 2 {
			o, err := h1.e.OpenSandbox(h1.ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			write(t, o.Path, "/home/user/Documents/"+name, name, 0o644)
			if _, err := h1.e.CloseSandbox(h1.ctx, name, CloseOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	layers := func(name string) int {
		keys, err := h1.e.snap.Keys(h1.ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, k := range keys {
			if len(k) > len(sandboxKeyPrefix(name)) && k[:len(sandboxKeyPrefix(name))] == sandboxKeyPrefix(name) {
				n++
			}
		}
		return n
	}
	if layers("docs") == 0 || layers("mail") == 0 {
		t.Fatalf("before gc: docs %d, mail %d layers", layers("docs"), layers("mail"))
	}
	freed, err := h1.e.GC(h1.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if layers("docs") != 0 || layers("mail") == 0 {
		t.Fatalf("after gc with room for one sandbox: docs %d layers (used first: evicted), mail %d; freed %v", layers("docs"), layers("mail"), freed.Snapshots)
	}
	_, depth := openAndCompare(t, h1, "docs after eviction")
	if depth != 1 {
		t.Errorf("docs after eviction: chain depth %d, want a flat layer", depth)
	}
	h1.close()
}

// gc on a shared ledger trims the change log to a window of generations;
// a host whose chain is older than the window builds a flat layer, never a
// delta that misses the dropped changes.
func TestLayerCacheChangeLogTrim(t *testing.T) {
	old := changeLogWindow
	changeLogWindow = 2
	defer func() { changeLogWindow = old }()
	h1, h2 := fleetFixtures(t)
	root := h1.open()
	write(t, root, "/home/user/Documents/a.txt", "one\n", 0o644)
	h1.close()
	openAndCompare(t, h1, "h1 caches generation 1")
	h1.close()
	for i := range 4 {
		root := h2.open()
		write(t, root, fmt.Sprintf("/home/user/Documents/h2-%d.txt", i), "from h2\n", 0o644)
		h2.close()
	}
	if _, err := h2.e.GC(h2.ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	h1.e.store.View(func(tx *store.Tx) error {
		return tx.ForEachChange(h1.ctx, "docs", 0, ^uint64(0), func(uint64, string, uint64) error { n++; return nil })
	})
	if n != 2 {
		t.Errorf("after gc with a window of 2 generations the log holds %d changes, want 2", n)
	}
	_, depth := openAndCompare(t, h1, "h1 after the log was trimmed past its chain")
	if depth != 1 {
		t.Errorf("h1 built on a chain the log no longer covers: depth %d", depth)
	}
	h1.close()
}
