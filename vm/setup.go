// Package vm runs spillway's disposable VMs: it finds the guest kernel,
// builds the initramfs with spillway's own init, builds the read-only disks
// of a sandbox, boots QEMU with no network and no shared file system (or a
// virtiofs share when asked), and reads the guest's changes back as a
// hostile tar stream.
package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spillway/spillway/vm/proto"
)

// Accelerations.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Config is what `vm setup` found and built, recorded in <root>/vm/setup.json.
type Config struct {
	Kernel      Kernel    `json:"kernel"`
	Vmlinux     string    `json:"vmlinux,omitempty"` // the kernel unpacked for a PVH boot
	Initramfs   string    `json:"initramfs"`
	Init        string    `json:"init"` // the guest init it was built from
	Modules     []string  `json:"modules"`
	QEMU        string    `json:"qemu"`
	Firmware    string    `json:"firmware,omitempty"` // qboot, when present
	Virtiofsd   string    `json:"virtiofsd,omitempty"`
	Accel       string    `json:"accel"` // kvm or tcg
	AccelReason string    `json:"accel_reason"`
	Built       time.Time `json:"built"`
	// Proto is proto.Version of the init in the initramfs: a setup made
	// by an older spillway (an init without DIFF, signed modules) is
	// made again by the next run --vm.
	Proto int `json:"proto"`
}

// SetupOptions are the choices of `vm setup`.
type SetupOptions struct {
	Kernel, Modules string // both or neither
	Init            string // the guest init binary ("" finds it)
	Accel           string // auto, kvm or tcg
	Fetch           bool   // download the kernel package when none is found
}

// Dir is the VM directory of a state directory.
func Dir(stateRoot string) string { return filepath.Join(stateRoot, "vm") }

func configPath(stateRoot string) string { return filepath.Join(Dir(stateRoot), "setup.json") }

// ErrNoSetup says `vm setup` has not run.
var ErrNoSetup = errors.New("vm: not set up")

// LoadConfig reads the recorded setup; ErrNoSetup when there is none or its
// files are gone.
func LoadConfig(stateRoot string) (*Config, error) {
	data, err := os.ReadFile(configPath(stateRoot))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoSetup
	}
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("vm: %s: %w", configPath(stateRoot), err)
	}
	if c.Proto != proto.Version {
		return nil, ErrNoSetup
	}
	for _, p := range []string{c.Kernel.Image, c.Initramfs, c.QEMU, c.bootImage()} {
		if _, err := os.Stat(p); err != nil {
			return nil, ErrNoSetup
		}
	}
	return &c, nil
}

// Setup finds the kernel, builds the initramfs, probes acceleration and
// records the result. warn gets one-line warnings.
func Setup(ctx context.Context, stateRoot string, o SetupOptions, warn func(string)) (*Config, error) {
	dir := Dir(stateRoot)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, errors.New("qemu-system-x86_64 not found: install qemu-system-x86 (apt-get install qemu-system-x86)")
	}
	k, err := FindKernel(dir, o.Kernel, o.Modules)
	if err != nil && o.Fetch {
		k, err = FetchKernel(dir)
	}
	if err != nil {
		return nil, err
	}
	initBin, err := FindInit(o.Init)
	if err != nil {
		return nil, err
	}
	if err := checkInitProto(initBin); err != nil {
		return nil, err
	}
	c := &Config{Kernel: *k, Init: initBin, QEMU: qemu, Built: time.Now().UTC(), Proto: proto.Version}
	c.Initramfs = filepath.Join(dir, "initramfs-"+k.Version+".cpio.gz")
	if c.Modules, err = buildInitramfs(c.Initramfs, initBin, k, guestModules); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	vmlinux := filepath.Join(dir, "vmlinux-"+k.Version)
	if err := extractVmlinux(k.Image, vmlinux); err == nil {
		c.Vmlinux = vmlinux
	} else {
		os.Remove(vmlinux)
	}
	if _, err := os.Stat("/usr/share/qemu/qboot.rom"); err == nil {
		c.Firmware = "/usr/share/qemu/qboot.rom"
	}
	for _, p := range []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"} {
		if _, err := os.Stat(p); err == nil {
			c.Virtiofsd = p
			break
		}
	}
	if err := c.probeAccel(ctx, stateRoot, o.Accel, warn); err != nil {
		return nil, err
	}
	data, _ := json.MarshalIndent(c, "", "  ")
	if err := writeAtomic(configPath(stateRoot), append(data, '\n')); err != nil {
		return nil, err
	}
	return c, nil
}

// probeAccel chooses KVM only when kvm_intel or kvm_amd drives /dev/kvm and
// a probe boot works; otherwise TCG (a PVM /dev/kvm cannot run a stock
// kernel).
func (c *Config) probeAccel(ctx context.Context, stateRoot, want string, warn func(string)) error {
	switch want {
	case "", AccelAuto:
	case AccelTCG:
		c.Accel, c.AccelReason = AccelTCG, "forced by --accel tcg"
		return nil
	case AccelKVM:
	default:
		return fmt.Errorf("unknown --accel %q: use auto, kvm or tcg", want)
	}
	reason := kvmUsable()
	if reason == "" {
		c.Accel = AccelKVM
		if err := c.probeBoot(ctx, stateRoot); err != nil {
			reason = "a probe boot under KVM failed: " + err.Error()
		}
	}
	if reason == "" {
		c.AccelReason = "kvm_intel/kvm_amd loaded and a probe boot worked"
		return nil
	}
	if want == AccelKVM {
		return fmt.Errorf("--accel kvm: %s", reason)
	}
	c.Accel, c.AccelReason = AccelTCG, reason
	warn("no usable KVM (" + reason + "): VMs use software emulation (TCG), a few seconds per boot")
	return nil
}

// bootImage is what QEMU boots: the PVH vmlinux when there is one.
func (c *Config) bootImage() string {
	if c.Vmlinux != "" {
		return c.Vmlinux
	}
	return c.Kernel.Image
}

// kvmUsable says why KVM cannot be used, or "".
func kvmUsable() string {
	intel, amd := exists("/sys/module/kvm_intel"), exists("/sys/module/kvm_amd")
	if !intel && !amd {
		if exists("/sys/module/kvm_pvm") {
			return "/dev/kvm is PVM (kvm_pvm), which cannot run a stock kernel"
		}
		return "neither kvm_intel nor kvm_amd is loaded"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "/dev/kvm: " + err.Error()
	}
	f.Close()
	return ""
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
