package vm

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// Modules the guest needs: the virtio transports, disks and ports, overlay
// and erofs for the default mode, fuse and virtiofs for --share virtiofs.
// Their dependencies come from each module's own depends= field.
var guestModules = []string{
	"virtio_pci", "virtio_blk", "virtio_console", "overlay", "erofs", "virtiofs",
}

// moduleIndex maps module names (dashes as underscores) to their .ko files
// under a kernel's modules directory.
func moduleIndex(dir string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".ko") {
			idx[modName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	return idx, err
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// modDepends reads the depends= field of a module's .modinfo section.
func modDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", ko)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ko, err)
	}
	var deps []string
	for _, kv := range strings.Split(string(data), "\x00") {
		if v, ok := strings.CutPrefix(kv, "depends="); ok {
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					deps = append(deps, modName(d))
				}
			}
		}
	}
	return deps, nil
}

// resolveModules returns want and their dependencies, each after the
// modules it depends on. A wanted module that is built into the kernel
// (no .ko, listed in modules.builtin) is skipped.
func resolveModules(dir string, want []string) ([]string, map[string]string, error) {
	idx, err := moduleIndex(dir)
	if err != nil {
		return nil, nil, err
	}
	builtin := builtinModules(dir)
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(m string) error {
		switch state[m] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle", m)
		case 2:
			return nil
		}
		ko, ok := idx[m]
		if !ok {
			if builtin[m] {
				state[m] = 2
				return nil
			}
			return fmt.Errorf("module %s not found under %s", m, dir)
		}
		state[m] = 1
		deps, err := modDepends(ko)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[m] = 2
		order = append(order, m)
		return nil
	}
	for _, m := range want {
		if err := visit(m); err != nil {
			return nil, nil, err
		}
	}
	return order, idx, nil
}
