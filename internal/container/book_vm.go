package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spillway/spillway/internal/atomicfile"
)

// VMProc is the QEMU process of a VM run.
type VMProc struct {
	PID      int    `json:"pid"`
	PIDStart uint64 `json:"pid_start"`
	Dir      string `json:"dir"`             // the run's directory (scratch disk)
	Upper    string `json:"upper,omitempty"` // the sandbox's upper layer (--share none)
}

// RescueVM, when set (by the command line, which knows VMs), gets back
// the changes of a VM that Stop killed: it boots a rescue guest on the
// run's scratch disk and applies what it streams to v.Upper. Stop calls it
// with the state directory's lock held, before close reads the changes.
var RescueVM func(ctx context.Context, stateRoot string, v *VMProc) error

// SetVM records that the run e is a VM whose QEMU is process pid, its run
// directory and the upper layer its changes go to, so that close --force
// can stop it and rescue its changes.
func (b *Book) SetVM(e *Entry, pid int, dir, upper string) error {
	start, err := procStart(pid)
	if err != nil {
		return err
	}
	e.VM = &VMProc{PID: pid, PIDStart: start, Dir: dir, Upper: upper}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := atomicfile.Create(filepath.Dir(b.entryPath(e)), ".new-")
	if err != nil {
		return err
	}
	defer tmp.Cleanup()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	return tmp.Commit(b.entryPath(e), atomicfile.Replace)
}

// stopVM kills the VM's QEMU, then rescues its changes (RescueVM).
func (b *Book) stopVM(ctx context.Context, v *VMProc) error {
	if err := v.stop(); err != nil {
		return err
	}
	if RescueVM == nil || v.Upper == "" {
		return nil
	}
	return RescueVM(ctx, filepath.Dir(b.Dir), v)
}

// VMStoppedFile, in a VM run's directory, says close --force (Stop) killed
// its QEMU and rescues its changes itself: a QEMU that dies of a signal
// without it was killed from outside (the OOM killer, a crash), and the
// run rescues its changes then.
const VMStoppedFile = "stopped-by-close"

// stop kills the VM's QEMU if it is still the process recorded, and waits
// up to 10 s for it to be gone.
func (v *VMProc) stop() error {
	if s, err := procStart(v.PID); err != nil || s != v.PIDStart {
		return nil
	}
	if err := os.WriteFile(filepath.Join(v.Dir, VMStoppedFile), nil, 0o600); err != nil {
		return err
	}
	syscall.Kill(v.PID, syscall.SIGKILL)
	for i := 0; i < 200; i++ {
		if s, err := procStart(v.PID); err != nil || s != v.PIDStart {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
