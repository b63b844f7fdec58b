package vm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Kernel is a guest kernel and its modules directory.
type Kernel struct {
	Image   string `json:"image"`   // vmlinuz (bzImage)
	Modules string `json:"modules"` // the lib/modules/VERSION directory
	Version string `json:"version"`
	Source  string `json:"source"` // "given", "state" (unpacked package) or "host"
}

// kernelPackage is the Debian package whose dependency is the guest kernel.
const kernelPackage = "linux-image-cloud-amd64"

// FindKernel picks the guest kernel: the one given, else a package unpacked
// into stateDir/kernel, else one installed on the host (/boot and
// /lib/modules) that has the virtio modules. It reads only; see FetchKernel.
func FindKernel(stateDir, image, modules string) (*Kernel, error) {
	if image != "" || modules != "" {
		if image == "" || modules == "" {
			return nil, errors.New("--kernel and --modules go together")
		}
		if _, err := os.Stat(image); err != nil {
			return nil, fmt.Errorf("kernel: %w", err)
		}
		if _, err := os.Stat(filepath.Join(modules, "kernel")); err != nil {
			return nil, fmt.Errorf("modules: %s has no kernel/ directory", modules)
		}
		return &Kernel{Image: image, Modules: modules, Version: filepath.Base(modules), Source: "given"}, nil
	}
	if k := findIn(filepath.Join(stateDir, "kernel"), "state"); k != nil {
		return k, nil
	}
	if k := findIn("/", "host"); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("no guest kernel found: install %s (apt-get install %s), pass --kernel VMLINUZ --modules DIR, or run `spillway vm setup --fetch`", kernelPackage, kernelPackage)
}

// findIn looks for boot/vmlinuz-V with lib/modules/V holding virtio_blk
// under root, newest version first.
func findIn(root, source string) *Kernel {
	imgs, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(imgs)))
	for _, img := range imgs {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		for _, md := range []string{filepath.Join(root, "lib", "modules", v), filepath.Join(root, "usr", "lib", "modules", v)} {
			if _, err := os.Stat(filepath.Join(md, "kernel", "drivers", "block", "virtio_blk.ko")); err == nil {
				return &Kernel{Image: img, Modules: md, Version: v, Source: source}
			}
		}
	}
	return nil
}

// FetchKernel downloads the Debian kernel package with apt-get and unpacks
// it into stateDir/kernel with dpkg-deb. Nothing is installed: the host's
// boot configuration is not touched.
func FetchKernel(stateDir string) (*Kernel, error) {
	out, err := exec.Command("apt-cache", "depends", "--important", kernelPackage).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends %s: %v", kernelPackage, err)
	}
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends: "); ok && strings.HasPrefix(v, "linux-image-") {
			pkg = v
			break
		}
	}
	if pkg == "" {
		return nil, fmt.Errorf("apt-cache: %s names no kernel package", kernelPackage)
	}
	tmp, err := os.MkdirTemp(stateDir, ".fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", pkg)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %v: %s", pkg, err, strings.TrimSpace(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: no package file", pkg)
	}
	dest := filepath.Join(stateDir, "kernel")
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return nil, err
	}
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], dest).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if k := findIn(dest, "state"); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: no vmlinuz with virtio modules inside", pkg)
}

// builtinModules lists the modules built into the kernel (modules.builtin).
func builtinModules(dir string) map[string]bool {
	out := map[string]bool{}
	data, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			out[modName(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
		}
	}
	return out
}
