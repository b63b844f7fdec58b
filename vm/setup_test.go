package vm

import (
	"context"
	"slices"
	"testing"
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
}
