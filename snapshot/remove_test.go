package snapshot

import (
	"context"
	"os"
	"path/filepath"
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
