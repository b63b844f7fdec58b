package vm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spillway/spillway/internal/testenv"
)

func TestSetupBuildsInitramfsAndProbes(t *testing.T) {
	c, root := testConfig(t)
	for _, m := range []string{"virtio_ring", "virtio", "virtio_pci", "virtio_blk", "virtio_console", "overlay", "erofs", "fuse", "virtiofs"} {
		if !slices.Contains(c.Modules, m) {
			t.Errorf("module %s missing from %v", m, c.Modules)
		}
	}
	// Dependencies come first.
	if slices.Index(c.Modules, "virtio") > slices.Index(c.Modules, "virtio_blk") || slices.Index(c.Modules, "fuse") > slices.Index(c.Modules, "virtiofs") {
		t.Errorf("load order %v puts a module before its dependency", c.Modules)
	}
	if c.Vmlinux == "" {
		t.Errorf("no PVH vmlinux unpacked from %s", c.Kernel.Image)
	}
	if c.Accel != AccelTCG && c.Accel != AccelKVM {
		t.Fatalf("accel %q", c.Accel)
	}
	loaded, err := LoadConfig(root)
	if err != nil || loaded.Initramfs != c.Initramfs {
		t.Fatalf("LoadConfig: %v %+v", err, loaded)
	}
	d, err := c.Probe(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe boot: %s", d)
	// A setup recorded by an older spillway is made again.
	old := *c
	old.Proto = 1
	b, _ := json.Marshal(old)
	if err := os.WriteFile(configPath(root), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(root); !errors.Is(err, ErrNoSetup) {
		t.Fatalf("an older setup: %v, want ErrNoSetup", err)
	}
}

// Cached disks go when their layer does.
func TestPruneDisks(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		testenv.Missing(t, "mkfs.erofs is not installed")
	}
	root, layers := t.TempDir(), t.TempDir()
	keep, gone := filepath.Join(layers, "keep"), filepath.Join(layers, "gone")
	for _, d := range []string{keep, gone} {
		os.MkdirAll(filepath.Join(d, "etc"), 0o755)
	}
	pk, built, err := LowerDisk(root, keep)
	if err != nil || !built {
		t.Fatalf("built %v, %v", built, err)
	}
	pg, _, err := LowerDisk(root, gone)
	if err != nil {
		t.Fatal(err)
	}
	if _, built, _ := LowerDisk(root, keep); built {
		t.Error("a cached disk was built again")
	}
	os.RemoveAll(gone)
	if err := PruneDisks(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pg); err == nil {
		t.Error("the disk of a removed layer was kept")
	}
	if _, err := os.Stat(pk); err != nil {
		t.Errorf("the disk of a live layer went: %v", err)
	}
}
