package vm

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spillway/spillway/vm/proto"
)

// Disk is a block device given to the guest, found there by its serial.
type Disk struct {
	Serial   string
	Path     string
	ReadOnly bool
}

// qemuArgs is QEMU's command line: q35 (TCG) with no network, no default
// devices, the console into a log file, one virtio-serial port per channel
// (QEMU connects to the host's sockets in sockDir), the disks, and with
// virtiofs a shared memfd for vhost-user.
func (m *Machine) qemuArgs(sockDir, initrd string) []string {
	c := m.Config
	mem := fmt.Sprintf("%dM", m.MemoryMiB)
	// No PS/2 controller: nothing reads a keyboard, and probing it cost
	// boot time (docs/vm.md, "Measured").
	machine, cpu := "q35,accel=tcg,i8042=off", "max"
	if c.Accel == AccelKVM {
		machine, cpu = "q35,accel=kvm,i8042=off", "host,-arch-capabilities"
	}
	a := []string{
		"-M", machine, "-cpu", cpu, "-m", mem, "-smp", fmt.Sprint(m.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", c.bootImage(), "-initrd", initrd,
		"-append", kernelCmdline,
		"-chardev", "file,id=con,path=" + filepath.Join(m.Dir, "console.log"), "-serial", "chardev:con",
		"-device", "virtio-serial-pci,max_ports=8",
	}
	if c.Firmware != "" {
		a = append(a, "-bios", c.Firmware)
	}
	for i, p := range m.ports() {
		id := fmt.Sprintf("p%d", i)
		a = append(a, "-chardev", "socket,id="+id+",path="+filepath.Join(sockDir, sockName(p)),
			"-device", "virtserialport,chardev="+id+",name="+p)
	}
	for i, d := range m.Disks {
		id := fmt.Sprintf("d%d", i)
		drive := "if=none,id=" + id + ",format=raw,file=" + d.Path
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			drive += ",cache=writeback,discard=unmap"
		}
		a = append(a, "-drive", drive, "-device", "virtio-blk-pci,drive="+id+",serial="+d.Serial)
	}
	if m.Virtiofs != "" {
		a = append(a, "-object", "memory-backend-memfd,id=mem,size="+mem+",share=on", "-numa", "node,memdev=mem",
			"-chardev", "socket,id=vfs,path="+m.Virtiofs, "-device", "vhost-user-fs-pci,chardev=vfs,tag="+proto.VirtiofsTag)
	}
	return a
}

// kernelCmdline is the guest kernel's command line: the console to the log
// file, quiet, and what makes a TCG boot shorter without changing what the
// guest can do: no crypto self-tests at boot, no kprobe trace events, no
// SP800-108 KDF (its self-test), one 8250 UART probed, no IO-APIC timer
// check (docs/vm.md, "Measured").
const kernelCmdline = "console=ttyS0 quiet loglevel=0 panic=-1 rdinit=/init cryptomgr.notests" +
	" initcall_blacklist=init_kprobe_trace,crypto_kdf108_init 8250.nr_uarts=1 no_timer_check"

// ports are the virtio-serial channels of this boot.
func (m *Machine) ports() []string {
	ps := []string{proto.PortCtl}
	if m.Req.Mode == proto.ModeRun {
		ps = append(ps, proto.PortStdin, proto.PortStdout, proto.PortStderr)
	}
	if m.Req.Mode == proto.ModeRescue || (m.Req.Mode == proto.ModeRun && m.Req.Share == proto.ShareNone) {
		ps = append(ps, proto.PortChanges)
	}
	return ps
}

func sockName(port string) string { return strings.TrimPrefix(port, "spw.") + ".sock" }
