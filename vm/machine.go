package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/vm/proto"
)

// Machine is one boot of a guest.
type Machine struct {
	Config   *Config
	Dir      string // the run's directory: initrd, console log
	Req      proto.Request
	Disks    []Disk
	Virtiofs string // vhost-user socket of virtiofsd (set by Run)
	// With --share virtiofs: virtiofsd's binary and the directory it shares.
	Virtiofsd, VirtiofsSource string
	MemoryMiB                 int
	CPUs                      int

	Stdin          io.Reader // nil: empty
	Stdout, Stderr io.Writer
	Changes        io.Writer // receives the changes tar

	BootTimeout      time.Duration // until init reports READY (or its first line)
	HeartbeatTimeout time.Duration // longest silence of init's control port
	Started          func(pid int) // called once QEMU runs
	Readied          func()        // called when init reports READY
	Signals          <-chan int    // signal numbers to send to CMD
	Winch            <-chan [2]uint16

	ctlMu   sync.Mutex
	ctlConn net.Conn
	ready   chan struct{} // closed at READY: the guest has its ports open

	diffMu  sync.Mutex // guards the diff requests (query.go)
	diffs   map[string]*pendingDiff
	diffSeq int
	running bool // between READY and EXIT: a DIFF can be answered
}

// Result is what a boot reported.
type Result struct {
	Ready           bool
	Exited          bool // EXIT came: Status is CMD's
	Status          int
	Error           string   // ERROR from init
	Notes           []string // MSG lines: why CMD did not start
	Streamed        bool
	Killed          bool    // QEMU was killed from outside (close --force)
	GuestInit       float64 // the guest's uptime (s) when init started
	GuestReady      float64 // and when it reported READY
	StreamBytes     int64
	StreamCRC       string        // CRC-32C, 8 hex digits
	QEMUMaxRSS      int64         // KiB
	QEMUCPU         time.Duration // QEMU's user + system CPU time: under load, steadier than wall time
	VirtiofsdMaxRSS int64         // KiB
	Times           Times
}

// Times are host-side instants of one boot.
type Times struct {
	Start, QEMU, Ready, Exit, Streamed, Off time.Time
}

// ErrWatchdog says the guest was stopped for not answering in time.
var ErrWatchdog = errors.New("vm: watchdog")

// Run boots the guest and returns when QEMU has exited and every channel
// has been read to its end.
func (m *Machine) Run(ctx context.Context) (*Result, error) {
	res := &Result{}
	res.Times.Start = time.Now()
	m.ready = make(chan struct{})
	if m.MemoryMiB == 0 {
		m.MemoryMiB = 512
	}
	if m.CPUs == 0 {
		m.CPUs = 1
	}
	if m.BootTimeout == 0 {
		m.BootTimeout = 90 * time.Second
	}
	if m.HeartbeatTimeout == 0 {
		m.HeartbeatTimeout = 30 * time.Second
	}
	req, _ := json.Marshal(m.Req)
	initrd := filepath.Join(m.Dir, "initrd")
	if err := writeInitrd(initrd, m.Config.Initramfs, req); err != nil {
		return nil, err
	}
	sockDir, err := os.MkdirTemp("", "spw-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(sockDir)
	conns := map[string]chan net.Conn{}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, p := range m.ports() {
		l, err := net.Listen("unix", filepath.Join(sockDir, sockName(p)))
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ch := make(chan net.Conn, 1)
		conns[p] = ch
		go func() {
			c, err := l.Accept()
			if err == nil {
				ch <- c
			}
			close(ch)
		}()
	}
	log, err := os.Create(filepath.Join(m.Dir, "qemu.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	if m.Req.Mode == proto.ModeRun && m.Req.Share == proto.ShareNone {
		l, err := m.serveQueries(sockDir)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		defer os.Remove(filepath.Join(m.Dir, QueryFile))
	}
	var vfsDied <-chan struct{} // nil without virtiofs: never ready
	if m.VirtiofsSource != "" {
		stop, died, err := m.startVirtiofsd(sockDir, log)
		if err != nil {
			return nil, err
		}
		vfsDied = died
		defer func() { res.VirtiofsdMaxRSS = stop() }()
	}
	cmd := exec.Command(m.Config.QEMU, m.qemuArgs(sockDir, initrd)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	res.Times.QEMU = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm: start qemu: %w", err)
	}
	if m.Started != nil {
		m.Started(cmd.Process.Pid)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	var copies sync.WaitGroup
	lines := make(chan string, 64)
	for p, ch := range conns {
		if p == proto.PortStdin { // may block on the user's stdin forever
			go m.serve(p, ch, lines)
			continue
		}
		copies.Add(1)
		go func() { defer copies.Done(); m.serve(p, ch, lines) }()
	}

	kill := func() { cmd.Process.Kill() }
	var werr error
	watch := time.NewTimer(m.BootTimeout)
	defer watch.Stop()
	lineCh := lines
loop:
	for {
		select {
		case <-exited:
			break loop
		case <-vfsDied:
			// virtiofsd ends when QEMU does; alone, the guest can no
			// longer reach the sandbox root, and init's heartbeat (over
			// the serial port) would keep the watchdog quiet forever.
			vfsDied = nil
			select {
			case <-exited:
				break loop
			case <-time.After(10 * time.Second): // a loaded host reaps QEMU late
			}
			werr = errors.New("vm: virtiofsd, which serves the sandbox root to the guest, died while the guest ran (killed from outside?); the VM was stopped")
			kill()
		case <-watch.C:
			if !res.Ready && m.Req.Mode == proto.ModeRun {
				werr = fmt.Errorf("%w: the guest did not start within %s (console log: %s)", ErrWatchdog, m.BootTimeout, filepath.Join(m.Dir, "console.log"))
			} else {
				werr = fmt.Errorf("%w: the guest's init was silent for %s", ErrWatchdog, m.HeartbeatTimeout)
			}
			kill()
		case l, ok := <-lineCh:
			if !ok {
				lineCh = nil
				continue
			}
			if res.Ready || m.Req.Mode != proto.ModeRun {
				watch.Reset(m.HeartbeatTimeout)
			}
			m.handle(l, res)
			if res.Ready && res.Times.Ready.IsZero() {
				close(m.ready)
				if m.Readied != nil {
					m.Readied()
				}
				res.Times.Ready = time.Now()
				watch.Reset(m.HeartbeatTimeout)
			}
		case s := <-m.Signals:
			m.sendCtl(fmt.Sprintf("SIG %d", s))
		case w := <-m.Winch:
			m.sendCtl(fmt.Sprintf("%s %d %d", proto.MsgWinch, w[0], w[1]))
		case <-ctx.Done():
			werr = ctx.Err()
			kill()
		}
	}
	res.Times.Off = time.Now()
	m.setRunning(false)
	for _, l := range listeners {
		l.Close()
	}
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case l := <-lines:
			m.handle(l, res)
		case <-done:
			for l := range drain(lines) {
				m.handle(l, res)
			}
			waiting = false
		}
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && werr == nil {
		if _, err := os.Stat(filepath.Join(m.Dir, container.VMStoppedFile)); err == nil {
			res.Killed = true // close --force rescues the changes itself
			werr = errors.New("vm: QEMU was killed by close --force")
		} else {
			// From outside (the OOM killer, a crash): not Killed, so
			// that the run rescues what the guest wrote (Run).
			werr = fmt.Errorf("vm: QEMU died of %v, not stopped by spillway (the OOM killer? see dmesg)", ws.Signal())
		}
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.QEMUMaxRSS = ru.Maxrss
		res.QEMUCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if werr == nil && !res.Ready && m.Req.Mode == proto.ModeRun && res.Error == "" {
		werr = fmt.Errorf("vm: the guest stopped before starting CMD (%s; console log: %s)", qemuTail(m.Dir), filepath.Join(m.Dir, "console.log"))
	}
	return res, werr
}

// drain returns what is left in ch after its writers are done.
func drain(ch chan string) chan string {
	out := make(chan string, len(ch))
	for {
		select {
		case l := <-ch:
			out <- l
		default:
			close(out)
			return out
		}
	}
}

func (m *Machine) handle(line string, res *Result) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	switch f[0] {
	case proto.MsgChange, proto.MsgDiffEnd:
		if len(f) >= 2 {
			m.handleDiff(line, f)
		}
	case proto.MsgReady:
		if !res.Ready {
			m.setRunning(true)
		}
		res.Ready = true
		if len(f) == 3 {
			res.GuestInit, _ = strconv.ParseFloat(f[1], 64)
			res.GuestReady, _ = strconv.ParseFloat(f[2], 64)
		}
	case proto.MsgExit:
		if len(f) == 2 {
			if n, err := strconv.Atoi(f[1]); err == nil && n >= 0 && n < 256 {
				m.setRunning(false)
				res.Exited, res.Status, res.Times.Exit = true, n, time.Now()
			}
		}
	case proto.MsgNote:
		res.Notes = append(res.Notes, strings.TrimSpace(strings.TrimPrefix(line, proto.MsgNote)))
	case proto.MsgError:
		res.Error = strings.TrimSpace(strings.TrimPrefix(line, proto.MsgError))
	case proto.MsgStreamed:
		if len(f) == 3 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				res.Streamed, res.StreamBytes, res.StreamCRC, res.Times.Streamed = true, n, f[2], time.Now()
			}
		}
	}
}

func (m *Machine) sendCtl(line string) {
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	if m.ctlConn != nil {
		m.ctlConn.Write([]byte(line + "\n"))
	}
}

// serve runs the host's end of one port once QEMU has connected.
func (m *Machine) serve(port string, ch chan net.Conn, lines chan<- string) {
	c, ok := <-ch
	if !ok {
		return
	}
	defer c.Close()
	switch port {
	case proto.PortCtl:
		m.ctlMu.Lock()
		m.ctlConn = c
		m.ctlMu.Unlock()
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 4096), proto.MaxCtlLine)
		for sc.Scan() {
			lines <- sc.Text()
		}
	case proto.PortStdin:
		// Bytes sent, and an EOF, before the guest opened its port are
		// lost: start once init is READY.
		<-m.ready
		if m.Stdin != nil {
			io.Copy(c, m.Stdin)
		}
	case proto.PortStdout:
		io.Copy(writerOr(m.Stdout), c)
	case proto.PortStderr:
		io.Copy(writerOr(m.Stderr), c)
	case proto.PortChanges:
		io.Copy(writerOr(m.Changes), c)
	}
}

func writerOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// writeInitrd writes the base initramfs followed by the run's request.
func writeInitrd(dst, base string, req []byte) error {
	data, err := os.ReadFile(base)
	if err != nil {
		return err
	}
	// The kernel looks for an uncompressed archive after a compressed one
	// only at a 4-byte boundary; zeros in between are skipped.
	data = append(data, make([]byte, pad4(len(data)))...)
	return os.WriteFile(dst, append(data, requestCpio(req)...), 0o600)
}

// qemuTail is the last line QEMU printed, for errors.
func qemuTail(dir string) string {
	data, _ := os.ReadFile(filepath.Join(dir, "qemu.log"))
	s := strings.TrimSpace(string(data))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no message from qemu"
	}
	return "qemu: " + s
}
