package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/vm/proto"
)

// ttyPair is CMD's terminal: a pseudo-terminal in the root's devpts whose
// master init copies to and from the stdin and stdout ports.
type ttyPair struct {
	master, slave *os.File
	done          chan struct{}
}

func (g *guest) openTTY() (*ttyPair, error) {
	m, err := os.OpenFile("/dev/pts/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, err
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, err
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	if g.req.Rows > 0 && g.req.Cols > 0 {
		unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: g.req.Rows, Col: g.req.Cols})
	}
	return &ttyPair{master: m, slave: s, done: make(chan struct{})}, nil
}

// pump copies the terminal both ways until CMD's side is gone.
func (t *ttyPair) pump(g *guest) {
	go io.Copy(t.master, g.ports[proto.PortStdin])
	io.Copy(g.ports[proto.PortStdout], t.master) // EIO when the last slave closes
	close(t.done)
}

// drain waits for the output CMD wrote before it exited.
func (t *ttyPair) drain(g *guest) {
	<-t.done
}

// readCtl carries out the host's lines: WINCH resizes CMD's terminal,
// SIG sends a signal to CMD's process group.
func (g *guest) readCtl() {
	sc := bufio.NewScanner(g.ctl.f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		g.mu.Lock()
		pid, m := g.cmdPid, g.ttyMaster
		g.mu.Unlock()
		switch {
		case len(f) == 3 && f[0] == proto.MsgWinch && m != nil:
			r, err1 := strconv.ParseUint(f[1], 10, 16)
			c, err2 := strconv.ParseUint(f[2], 10, 16)
			if err1 == nil && err2 == nil {
				unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(r), Col: uint16(c)})
			}
		case len(f) == 2 && f[0] == proto.MsgDiff:
			go g.answerDiff(f[1])
		case len(f) == 2 && f[0] == proto.MsgSignal && pid > 0:
			if n, err := strconv.Atoi(f[1]); err == nil && n > 0 && n < 65 {
				unix.Kill(-pid, unix.Signal(n))
			}
		}
	}
}
