package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRemoveDeferred: the root's snapshot is gone at once, its directory
// leaves the snapshotter's root, and a background rm empties the trash.
func TestRemoveDeferred(t *testing.T) {
	m, state := openManager(t, KindOverlay)
	ctx := context.Background()
	must(t, func() error { _, err := m.Import(ctx, "img/base", Source{Dir: busyboxRootfs(t)}, nil); return err }())
	mounts, err := m.Prepare(ctx, "root", "img/base")
	must(t, err)
	upper, _, ok := OverlayDirs(mounts)
	if !ok {
		t.Fatalf("not an overlay: %v", mounts)
	}
	for i := range 200 {
		must(t, os.WriteFile(filepath.Join(upper, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), []byte("x"), 0o644))
	}
	trash := filepath.Join(state, "trash")
	must(t, m.RemoveDeferred(ctx, "root", trash))
	if ok, _ := m.Exists(ctx, "root"); ok {
		t.Fatal("snapshot still exists")
	}
	if _, err := os.Stat(filepath.Dir(upper)); !os.IsNotExist(err) {
		t.Fatalf("snapshot directory still in place: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(trash)
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trash not emptied: %v", entries)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, _ := m.Exists(ctx, "img/base"); !ok {
		t.Fatal("the parent went too")
	}
	must(t, m.RemoveDeferred(ctx, "root", trash)) // a missing key is fine
}

// TestPrepareOverOrphanDirectory: a process killed between the overlay
// snapshotter's rename of a new snapshot's directory and its metadata
// commit leaves a directory under the id the next snapshot gets; Prepare
// and View remove it (it belongs to no snapshot) and succeed.
func TestPrepareOverOrphanDirectory(t *testing.T) {
	m, _ := openManager(t, KindOverlay)
	ctx := context.Background()
	must(t, func() error { _, err := m.Import(ctx, "img/base", Source{Dir: busyboxRootfs(t)}, nil); return err }())
	for _, view := range []bool{false, true} {
		mounts, err := m.Prepare(ctx, "probe", "img/base")
		must(t, err)
		upper, _, ok := OverlayDirs(mounts)
		if !ok {
			t.Fatalf("not an overlay: %v", mounts)
		}
		dir := filepath.Dir(upper) // snapshots/ID
		must(t, m.Remove(ctx, "probe"))
		id, err := strconv.Atoi(filepath.Base(dir))
		must(t, err)
		orphan := filepath.Join(filepath.Dir(dir), strconv.Itoa(id+1)) // the id the next snapshot gets
		must(t, os.MkdirAll(filepath.Join(orphan, "fs"), 0o755))
		must(t, os.WriteFile(filepath.Join(orphan, "fs", "left"), []byte("by a killed process"), 0o644))
		if view {
			_, err = m.View(ctx, "next", "img/base")
		} else {
			_, err = m.Prepare(ctx, "next", "img/base")
		}
		if err != nil {
			t.Fatalf("view=%v over an orphan directory: %v", view, err)
		}
		if _, err := os.Stat(filepath.Join(orphan, "fs", "left")); !os.IsNotExist(err) {
			t.Fatalf("the orphan's file is still there: %v", err)
		}
		must(t, m.Remove(ctx, "next"))
	}
}
