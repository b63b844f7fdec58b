package vm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// startVirtiofsd starts virtiofsd on the shared directory with its own
// sandboxing (namespaces, seccomp: the default -o sandbox=namespace) and
// waits for its socket. It serves one VM and exits when QEMU disconnects;
// stop waits a little for that, then kills it.
// died is closed when virtiofsd has exited.
func (m *Machine) startVirtiofsd(sockDir string, log *os.File) (stop func() (maxRSS int64), died <-chan struct{}, err error) {
	if m.Virtiofsd == "" {
		return nil, nil, errors.New("virtiofsd not found: install qemu-system-common (/usr/lib/qemu/virtiofsd)")
	}
	sock := filepath.Join(sockDir, "vfs.sock")
	cmd := exec.Command(m.Virtiofsd, "--socket-path="+sock, "-o", "source="+m.VirtiofsSource, "-o", "cache=none",
		"-o", "sandbox=namespace", "-o", "no_xattr")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("vm: start virtiofsd: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() int64 {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			return ru.Maxrss
		}
		return 0
	}
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(sock); err == nil {
			m.Virtiofs = sock
			return stop, done, nil
		}
		select {
		case <-done:
			return nil, nil, fmt.Errorf("vm: virtiofsd exited: %s", qemuTail(m.Dir))
		case <-time.After(10 * time.Millisecond):
		}
	}
	cmd.Process.Kill()
	<-done
	return nil, nil, errors.New("vm: virtiofsd did not create its socket")
}
