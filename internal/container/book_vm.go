package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// VMProc is the QEMU process of a VM run.
type VMProc struct {
	PID      int    `json:"pid"`
	PIDStart uint64 `json:"pid_start"`
}

// SetVM records that the run e is a VM whose QEMU is process pid, so that
// close --force can stop it.
func (b *Book) SetVM(e *Entry, pid int) error {
	start, err := procStart(pid)
	if err != nil {
		return err
	}
	e.VM = &VMProc{PID: pid, PIDStart: start}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(b.entryPath(e)), ".new-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeFile(tmp, data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), b.entryPath(e))
}

// stop kills the VM's QEMU if it is still the process recorded, and waits
// up to 10 s for it to be gone.
func (v *VMProc) stop() error {
	if s, err := procStart(v.PID); err != nil || s != v.PIDStart {
		return nil
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
