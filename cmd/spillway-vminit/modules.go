package main

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/vm/proto"
)

// unneeded are the modules a boot can go without, by mode and share: each
// load costs tens of milliseconds under TCG.
func unneeded(req proto.Request) map[string]bool {
	skip := map[string]bool{}
	add := func(names ...string) {
		for _, n := range names {
			skip[n] = true
		}
	}
	switch {
	case req.Mode == proto.ModeProbe:
		add("virtio_blk", "overlay", "erofs", "fuse", "virtiofs")
	case req.Mode == proto.ModeRescue:
		add("overlay", "erofs", "fuse", "virtiofs")
	case req.Share == proto.ShareVirtiofs:
		add("virtio_blk", "overlay", "erofs")
	case req.Share == proto.ShareNone:
		add("fuse", "virtiofs")
	}
	return skip
}

// loadModules loads /lib/modules/<name>.ko in the order /lib/modules/order
// lists them (dependencies first), but those skip names. A module whose
// device is absent fails to bind, which is harmless; the mounts that need
// it fail later, clearly.
func loadModules(skip map[string]bool) {
	data, err := os.ReadFile("/lib/modules/order")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(data)) {
		if skip[name] {
			continue
		}
		f, err := os.Open(filepath.Join("/lib/modules", name+".ko"))
		if err != nil {
			continue
		}
		unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
	}
}
