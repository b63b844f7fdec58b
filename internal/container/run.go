package container

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// ErrNoTerminal is returned when a terminal is asked for and stdin is not one.
var ErrNoTerminal = errors.New("-t needs a terminal on stdin")

// Exec runs p in the container of e and returns CMD's exit status (128+N
// when a signal N ended it). It returns when CMD has exited; the container
// is left for Done to delete.
//
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to spillway
// reach CMD through the runtime. CMD runs as the pid namespace's init, so it
// sees only the signals it handles; a second SIGINT or SIGTERM therefore
// kills the container outright.
func (b *Book) Exec(ctx context.Context, e *Entry, p Process) (int, error) {
	if p.TTY && !isTerminal(p.Stdin) {
		return 0, ErrNoTerminal
	}
	// Container ids repeat across state directories: the cgroup is told
	// apart by the directory, or a delete in one would kill the other.
	sum := sha256.Sum256([]byte(b.Dir))
	p.Cgroup = fmt.Sprintf("/%s/%x-%s", namespace, sum[:4], e.ID)
	spec, err := Spec(ctx, e.ID, p)
	if err != nil {
		return 0, err
	}
	if u := spec.Process.User; u.UID > math.MaxInt32 || u.GID > math.MaxInt32 {
		return 0, &StartError{ExitNotStarted, fmt.Errorf("user %d:%d: ids must be in 0-%d", u.UID, u.GID, math.MaxInt32)}
	}
	if err := lookCmd(p.RootFS, p.Args[0], spec.Process.Env); err != nil {
		return 0, err
	}
	bundle := b.bundle(e)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return 0, err
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(b.StateRoot(), 0o700); err != nil {
		return 0, err
	}
	if err := e.delete(ctx); err != nil { // a container of a former run under this id
		return 0, err
	}
	// The runtime's own messages go to a JSON log that spillway reads, so
	// a failure before CMD started is told apart from CMD's own status.
	logPath := filepath.Join(bundle, "runtime.log")
	cmd := exec.Command(e.Runtime, "--root", e.stateRoot, "--log", logPath, "--log-format", "json", "run", "--bundle", bundle, e.ID)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.Stdin, p.Stdout, p.Stderr
	// If spillway dies, so does the runtime's foreground process; what is
	// left of the container is then stale and cleaned by the next Live.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", e.Runtime, err)
	}
	done := make(chan struct{})
	defer close(done)
	go b.forward(ctx, e, cmd.Process, p.Stdin, sigs, done)

	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, err
	}
	st := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if st.Signaled() {
		return 128 + int(st.Signal()), nil
	}
	if st.ExitStatus() != 0 {
		if err := runtimeFailure(logPath); err != nil {
			return 0, err
		}
	}
	return st.ExitStatus(), nil
}

// forward passes signals on to the runtime, which passes them to CMD. A
// signal the terminal sent to its whole foreground process group has reached
// the runtime already and is not sent twice.
func (b *Book) forward(ctx context.Context, e *Entry, rt *os.Process, stdin any, sigs <-chan os.Signal, done <-chan struct{}) {
	stops := 0
	for {
		select {
		case <-done:
			return
		case s := <-sigs:
			if s == unix.SIGINT || s == unix.SIGTERM {
				if stops++; stops > 1 {
					e.runc(ctx, "kill", e.ID, "KILL")
					continue
				}
			}
			if (s == unix.SIGINT || s == unix.SIGQUIT) && foregroundTerminal(stdin) {
				continue
			}
			rt.Signal(s)
		}
	}
}

// Done deletes the container of a finished run, its bundle and its entry.
func (b *Book) Done(ctx context.Context, e *Entry) error { return b.Clean(ctx, e) }

// isTerminal says whether r is a terminal.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// foregroundTerminal says whether stdin is a terminal whose foreground
// process group is spillway's (and so the runtime's).
func foregroundTerminal(stdin any) bool {
	f, ok := stdin.(*os.File)
	if !ok {
		return false
	}
	pg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pg == unix.Getpgrp()
}
