package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/vm/proto"
)

// run mounts the root, runs CMD chrooted in it, reports its status, then
// (default mode) streams the upper layer's changes.
func (g *guest) run() error {
	if err := g.mountRoot(); err != nil {
		return err
	}
	if err := mountInner(); err != nil {
		return err
	}
	g.mark("root mounted")
	if g.req.Hostname != "" {
		unix.Sethostname([]byte(g.req.Hostname))
	}
	oldRoot, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	// Init stays PID 1 and enters the root itself, so that CMD's path,
	// user and links resolve there; it leaves through oldRoot afterwards.
	if err := unix.Chroot(newRoot); err != nil {
		return fmt.Errorf("chroot: %v", err)
	}
	os.Chdir("/")
	g.ctl.send(proto.MsgReady, g.initUp, uptime())
	status := g.runCmd()
	// Whatever CMD left running goes before the changes are read.
	unix.Kill(-1, unix.SIGKILL)
	reap()
	if err := unix.Fchdir(oldRoot); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	os.Chdir("/")
	g.ctl.send(proto.MsgExit, strconv.Itoa(status))
	if g.req.Share == proto.ShareVirtiofs {
		unmountRoot()
		return nil
	}
	if err := unmountRoot(); err != nil {
		return fmt.Errorf("unmount root: %v", err)
	}
	return g.stream()
}

// reap collects every exited child.
func reap() {
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, 0, nil); pid <= 0 || err != nil {
			return
		}
	}
}

// runCmd starts CMD and returns its status: 127 when it is not found, 126
// when it cannot be executed, 128+N when signal N ended it.
func (g *guest) runCmd() int {
	env := g.req.Env
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	os.Setenv("PATH", path)
	uid, gid, home, err := resolveUser(g.req.User)
	if err != nil {
		g.errorf("%v", err)
		return 125
	}
	if !hasKey(env, "PATH") {
		env = append(env, "PATH="+path)
	}
	if !hasKey(env, "HOME") {
		env = append(env, "HOME="+home)
	}
	if g.req.TTY && !hasKey(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	if len(g.req.Args) == 0 {
		g.errorf("no command")
		return 125
	}
	name := g.req.Args[0]
	bin, err := exec.LookPath(name)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			g.errorf("%s: command not found in the sandbox", name)
			return 127
		}
		g.errorf("%s: %v", name, err)
		return 126
	}
	cmd := exec.Command(bin, g.req.Args[1:]...)
	cmd.Args[0] = name
	cmd.Env = env
	cmd.Dir = g.req.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if uid != 0 || gid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	}
	var tty *ttyPair
	if g.req.TTY {
		if tty, err = g.openTTY(); err != nil {
			g.errorf("terminal: %v", err)
			return 125
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty.slave, tty.slave, tty.slave
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = g.ports[proto.PortStdin], g.ports[proto.PortStdout], g.ports[proto.PortStderr]
	}
	err = cmd.Start()
	if err == nil {
		g.mu.Lock()
		g.cmdPid = cmd.Process.Pid
		if tty != nil {
			g.ttyMaster = tty.master
		}
		g.mu.Unlock()
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			g.errorf("%s: %v", name, err)
			return 127
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM):
			g.errorf("%s: %v", name, err)
			return 126
		case strings.Contains(err.Error(), "chdir"):
			g.errorf("workdir %s: %v", cmd.Dir, err)
			return 125
		}
		g.errorf("%s: %v", name, err)
		return 126
	}
	if tty != nil {
		tty.slave.Close()
		go tty.pump(g)
	}
	err = cmd.Wait()
	if tty != nil {
		unix.Kill(-1, unix.SIGKILL) // the terminal ends when its last holder does
		tty.drain(g)
	}
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	g.errorf("%s: %v", name, err)
	return 125
}

// errorf tells the host why CMD did not run; it prints the line.
func (g *guest) errorf(format string, args ...any) {
	g.ctl.send(proto.MsgNote, fmt.Sprintf(format, args...))
}

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// resolveUser reads UID[:GID]; without a GID, the group and home come from
// the root's /etc/passwd.
func resolveUser(s string) (uid, gid uint32, home string, err error) {
	home = "/root"
	if s == "" {
		return 0, 0, home, nil
	}
	u, gs, hasGID := strings.Cut(s, ":")
	n, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0, "", fmt.Errorf("invalid user %q", s)
	}
	uid, home = uint32(n), "/"
	if hasGID {
		m, err := strconv.ParseUint(gs, 10, 32)
		if err != nil {
			return 0, 0, "", fmt.Errorf("invalid user %q", s)
		}
		gid = uint32(m)
	}
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return uid, gid, home, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) < 6 || p[2] != u {
			continue
		}
		if !hasGID {
			if m, err := strconv.ParseUint(p[3], 10, 32); err == nil {
				gid = uint32(m)
			}
		}
		if strings.HasPrefix(p[5], "/") {
			home = p[5]
		}
		break
	}
	return uid, gid, home, nil
}
