// Command spillway-vminit is the init (PID 1) of spillway's disposable VMs:
// it loads the modules, mounts the sandbox root, runs CMD in a chroot,
// reports its status over a virtio-serial port, streams the changes and
// powers off. It is built static (CGO_ENABLED=0) and packed into the
// initramfs by `spillway vm setup`.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/vm/proto"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "spillway-vminit: must run as PID 1 of a spillway VM ("+proto.InitMarker+")")
		os.Exit(2)
	}
	g := &guest{}
	err := g.boot()
	if err != nil {
		g.fail(err)
	}
	poweroff()
}

// guest is the state of one boot.
type guest struct {
	req   proto.Request
	ctl   *ctlPort
	ports map[string]*os.File

	initUp string // the guest's uptime when init started

	mu        sync.Mutex
	cmdPid    int      // CMD's process (and group), once started
	ttyMaster *os.File // CMD's terminal, with TTY
	diffs     *diffFDs // what a DIFF request walks (share none)
}

func (g *guest) boot() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"}, {"sys", "/sys", "sysfs"}, {"dev", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %v", m.dst, err)
		}
	}
	g.initUp = uptime()
	data, err := os.ReadFile(proto.RequestPath)
	if err != nil {
		return fmt.Errorf("read request: %v", err)
	}
	if err := json.Unmarshal(data, &g.req); err != nil {
		return fmt.Errorf("parse request: %v", err)
	}
	loadModules(unneeded(g.req))
	g.mark("modules")
	setClock(g.req.TimeNanos)
	if err := g.openPorts(); err != nil {
		return err
	}
	g.mark("ports")
	go g.heartbeat()
	go g.readCtl()
	switch g.req.Mode {
	case proto.ModeRescue:
		if err := mountScratch(); err != nil {
			return err
		}
		return g.stream()
	case proto.ModeRun:
		return g.run()
	case proto.ModeProbe:
		g.ctl.send(proto.MsgReady, g.initUp, uptime())
		return nil
	}
	return fmt.Errorf("unknown mode %q", g.req.Mode)
}

// fail reports an error before CMD ran, then the host gives up (125).
func (g *guest) fail(err error) {
	if g.ctl != nil {
		g.ctl.send(proto.MsgError, err.Error())
		return
	}
	fmt.Fprintln(os.Stderr, "spillway-vminit:", err) // the console: the host's log
}

func (g *guest) heartbeat() {
	iv := time.Duration(g.req.Heartbeat) * time.Millisecond
	if iv <= 0 {
		iv = time.Second
	}
	for {
		time.Sleep(iv)
		g.ctl.send(proto.MsgHB)
	}
}

// setClock sets the guest's clock from the host's, as it was when the
// request was made plus the time this guest has been up.
func setClock(hostNanos int64) {
	if hostNanos == 0 {
		return
	}
	var up unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &up)
	ts := unix.NsecToTimespec(hostNanos + up.Nano())
	unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// mark writes the guest's uptime at a phase to the console (the host's
// console.log), for diagnosis.
func (g *guest) mark(phase string) {
	fmt.Fprintf(os.Stderr, "spillway-vminit: %s at %s s\n", phase, uptime())
}

// uptime is the guest's /proc/uptime in seconds, as text.
func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "0"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "0"
	}
	return f[0]
}

func poweroff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func timeOf(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }
