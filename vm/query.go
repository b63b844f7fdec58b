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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/vm/proto"
)

// QueryFile is the file of a run's directory that names the socket on
// which the running spillway answers `diff` for its VM.
const QueryFile = "query"

// DiffAnswer is the guest's list of changes.
type DiffAnswer struct {
	Changes   []proto.Change `json:"changes"`
	Truncated bool           `json:"truncated,omitempty"` // the guest stopped at proto.MaxDiffChanges
	Error     string         `json:"error,omitempty"`
}

// ErrNotRunning says the VM is not (or no longer) running CMD: its
// changes are on their way to the upper layer, or were never made.
var ErrNotRunning = errors.New("the VM is not running its command (starting, or ending: its changes come back when it ends)")

// diffWait is how long the host waits for the guest's answer.
var diffWait = 60 * time.Second

// pendingDiff is a DIFF request waiting for its DIFFEND.
type pendingDiff struct {
	ans  DiffAnswer
	done chan struct{}
}

// Diff asks the guest's init for the changes of its upper layer.
func (m *Machine) Diff(ctx context.Context) (*DiffAnswer, error) {
	m.diffMu.Lock()
	if !m.running {
		m.diffMu.Unlock()
		return nil, ErrNotRunning
	}
	m.diffSeq++
	id := strconv.Itoa(m.diffSeq)
	p := &pendingDiff{done: make(chan struct{})}
	if m.diffs == nil {
		m.diffs = map[string]*pendingDiff{}
	}
	m.diffs[id] = p
	m.diffMu.Unlock()
	defer func() {
		m.diffMu.Lock()
		delete(m.diffs, id)
		m.diffMu.Unlock()
	}()
	m.sendCtl(proto.MsgDiff + " " + id)
	t := time.NewTimer(diffWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return nil, fmt.Errorf("vm: the guest did not answer within %s", diffWait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	m.diffMu.Lock()
	defer m.diffMu.Unlock()
	if p.ans.Error == ErrNotRunning.Error() {
		return nil, ErrNotRunning
	}
	if p.ans.Error != "" {
		return nil, fmt.Errorf("vm: the guest's answer: %s", p.ans.Error)
	}
	return &p.ans, nil
}

// handleDiff takes a CHG or DIFFEND line. The guest is hostile: a line it
// gets wrong spoils its answer; more than proto.MaxDiffChanges are not kept.
func (m *Machine) handleDiff(line string, f []string) {
	m.diffMu.Lock()
	defer m.diffMu.Unlock()
	if f[0] == proto.MsgDiffEnd {
		if p := m.diffs[f[1]]; p != nil && len(f) >= 3 {
			select {
			case <-p.done:
			default:
				p.ans.Truncated = p.ans.Truncated || (len(f) == 4 && f[3] == "truncated")
				if n, err := strconv.Atoi(f[2]); (err != nil || n != len(p.ans.Changes)) && p.ans.Error == "" && !p.ans.Truncated {
					p.ans.Error = "the count does not match the changes sent"
				}
				close(p.done)
			}
		}
		return
	}
	id, fields, quoted, ok := proto.SplitChangeLine(line)
	p := m.diffs[id]
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	if !ok {
		p.ans.Error = "malformed change line"
		return
	}
	c, err := proto.ParseChange(fields, quoted)
	if err != nil {
		if p.ans.Error == "" {
			p.ans.Error = err.Error()
		}
		return
	}
	if len(p.ans.Changes) >= proto.MaxDiffChanges {
		p.ans.Truncated = true
		return
	}
	p.ans.Changes = append(p.ans.Changes, c)
}

// setRunning marks CMD running (READY) or not (EXIT, or the end); the end
// fails what still waits.
func (m *Machine) setRunning(on bool) {
	m.diffMu.Lock()
	defer m.diffMu.Unlock()
	m.running = on
	if on {
		return
	}
	for _, p := range m.diffs {
		select {
		case <-p.done:
		default:
			p.ans.Error = ErrNotRunning.Error()
			close(p.done)
		}
	}
}

// serveQueries answers `spillway diff` on a socket in sockDir (private to
// this process) whose path it writes to the run directory's QueryFile.
func (m *Machine) serveQueries(sockDir string) (net.Listener, error) {
	sock := filepath.Join(sockDir, "query.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(m.Dir, QueryFile), []byte(sock), 0o600); err != nil {
		l.Close()
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go m.answerQuery(c)
		}
	}()
	return l, nil
}

func (m *Machine) answerQuery(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(diffWait + 10*time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != proto.MsgDiff {
		return
	}
	ans, err := m.Diff(context.Background())
	if errors.Is(err, ErrNotRunning) {
		ans = &DiffAnswer{Error: ErrNotRunning.Error()}
	} else if err != nil {
		ans = &DiffAnswer{Error: err.Error()}
	}
	json.NewEncoder(c).Encode(ans)
}

// QueryDiff asks the spillway that runs the VM of run directory dir for
// the guest's changes.
func QueryDiff(ctx context.Context, dir string) (*DiffAnswer, error) {
	b, err := os.ReadFile(filepath.Join(dir, QueryFile))
	if err != nil || len(b) > 4096 {
		return nil, ErrNotRunning
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", string(b))
	if err != nil {
		return nil, ErrNotRunning
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(diffWait + 20*time.Second))
	if _, err := c.Write([]byte(proto.MsgDiff + "\n")); err != nil {
		return nil, err
	}
	var ans DiffAnswer
	if err := json.NewDecoder(io.LimitReader(c, 1<<30)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("vm: read the VM's changes: %w", err)
	}
	if ans.Error != "" {
		if ans.Error == ErrNotRunning.Error() {
			return nil, ErrNotRunning
		}
		return nil, errors.New(ans.Error)
	}
	return &ans, nil
}
