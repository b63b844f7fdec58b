package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/vm"
)

// TestVMScripts runs the VM scripts in testdata/vm/*.txtar: real guests
// under QEMU (software emulation where KVM does not work). They need
// qemu-system-x86, erofs-utils and a guest kernel (linux-image-cloud-amd64).
func TestVMScripts(t *testing.T) {
	testscript.Run(t, vmScriptParams(t))
}

// TestVMScriptsOnPostgres runs a VM script unchanged with the ledger on
// PostgreSQL: a guest's run, diff and close are the same on a fleet.
func TestVMScriptsOnPostgres(t *testing.T) {
	p := vmScriptParams(t)
	p.Dir = ""
	p.Files = []string{filepath.Join("testdata", "vm", "vm_run.txtar")}
	testscript.Run(t, postgresParams(t, p, false))
}

// vmScriptParams are the parameters of the VM scripts, after checking
// that their tools are installed and building the guest's init.
func vmScriptParams(t *testing.T) testscript.Params {
	requireRoot(t)
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.erofs", "mke2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s is not installed", tool)
		}
	}
	if _, err := vm.FindKernel(t.TempDir(), "", ""); err != nil {
		testenv.Missing(t, "no guest kernel: %v", err)
	}
	initBin := filepath.Join(t.TempDir(), vm.InitName)
	build := exec.Command("go", "build", "-o", initBin, "github.com/spillway/spillway/cmd/spillway-vminit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the guest init: %v\n%s", err, out)
	}
	return testscript.Params{
		Dir:                 "testdata/vm",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SPILLWAY_ROOT", filepath.Join(env.WorkDir, "state"))
			env.Setenv("SPILLWAY_NO_PROGRESS", "1")
			env.Setenv("NO_COLOR", "1")
			env.Setenv("SPILLWAY_VMINIT", initBin)
			work := env.WorkDir
			env.Defer(func() {
				mounts, _ := snapshot.MountsUnder(work)
				for i := len(mounts) - 1; i >= 0; i-- {
					snapshot.Unmount(mounts[i])
				}
			})
			return testrootfs.Build(filepath.Join(env.WorkDir, "busybox"))
		},
		Cmds: scriptCmds,
	}
}

// sparseContains says whether the data extents of a sparse file hold text.
func sparseContains(path string, text []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fd := int(f.Fd())
	for off := int64(0); ; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			return false
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return false
		}
		buf := make([]byte, hole-data)
		if _, err := f.ReadAt(buf, data); err != nil {
			return false
		}
		if bytes.Contains(buf, text) {
			return true
		}
		off = hole
	}
}

func init() {
	// vmkernel VAR: set VAR to the guest kernel's version from vm setup.
	scriptCmds["vmkernel"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || neg {
			ts.Fatalf("usage: vmkernel VAR")
		}
		c, err := vm.LoadConfig(ts.Getenv("SPILLWAY_ROOT"))
		ts.Check(err)
		ts.Setenv(args[0], c.Kernel.Version)
	}
	// waitvm SANDBOX [ready]: wait (up to 120s) until a run of SANDBOX has
	// its QEMU recorded in the run book; with "ready", until its guest's
	// init has reported READY too.
	scriptCmds["waitvm"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 1 || len(args) > 2 || neg {
			ts.Fatalf("usage: waitvm SANDBOX [ready]")
		}
		ready := len(args) == 2 && args[1] == "ready"
		readyFiles := filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "run", "vm", "spillway-"+args[0]+"-*", "ready")
		dir := filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "run", "sbx", args[0])
		for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			for _, f := range files {
				var e struct {
					VM *struct{ PID int } `json:"vm"`
				}
				data, _ := os.ReadFile(f)
				if json.Unmarshal(data, &e) != nil || e.VM == nil {
					continue
				}
				if r, _ := filepath.Glob(readyFiles); !ready || len(r) > 0 {
					return
				}
			}
		}
		ts.Fatalf("no VM of %s recorded within 120s", args[0])
	}
	// waitscratch SANDBOX TEXT: wait (up to 120s) until TEXT is in the raw
	// bytes of a run's scratch disk (the guest wrote and synced it); the
	// disk is read as bytes, never mounted.
	scriptCmds["waitscratch"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 || neg {
			ts.Fatalf("usage: waitscratch SANDBOX TEXT")
		}
		glob := filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "run", "vm", "spillway-"+args[0]+"-*", "scratch.img")
		for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			files, _ := filepath.Glob(glob)
			for _, f := range files {
				if sparseContains(f, []byte(args[1])) {
					return
				}
			}
		}
		ts.Fatalf("%q not on a scratch disk of %s within 120s", args[1], args[0])
	}
	// noguestmounts: nothing on the host is mounted from a VM's disks or
	// through a loop device (the guest's file systems stay in the guest).
	scriptCmds["noguestmounts"] = func(ts *testscript.TestScript, neg bool, args []string) {
		data, err := os.ReadFile("/proc/self/mountinfo")
		ts.Check(err)
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			i := strings.Index(l, " - ")
			if len(f) < 5 || i < 0 {
				continue
			}
			after := strings.Fields(l[i+3:])
			if len(after) < 2 {
				continue
			}
			// A loop device counts when its backing file is a disk of this
			// test's state directory, or is gone (the machine's other
			// tests mount loop devices of their own).
			loop := false
			if dev, ok := strings.CutPrefix(after[1], "/dev/"); ok && strings.HasPrefix(dev, "loop") {
				b, err := os.ReadFile("/sys/block/" + dev + "/loop/backing_file")
				loop = err != nil || strings.HasPrefix(string(b), ts.Getenv("SPILLWAY_ROOT")) || strings.Contains(string(b), "/run/vm/") || strings.Contains(string(b), "/vm/disks/")
			}
			if after[0] == "erofs" || loop || strings.Contains(after[1], "/run/vm/") {
				ts.Fatalf("guest data mounted on the host: %s", l)
			}
		}
	}
}
