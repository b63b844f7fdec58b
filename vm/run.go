package vm

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spillway/spillway/internal/container"
	"github.com/spillway/spillway/vm/proto"
)

// ScratchSize is the scratch disk's size: sparse, so only what the guest
// writes takes space.
const ScratchSize = 8 << 30

// Run is one `run --vm` of an open sandbox.
type Run struct {
	Config    *Config
	StateRoot string
	Dir       string // the run's directory; the scratch disk lives here
	Share     string // proto.ShareNone or proto.ShareVirtiofs
	Lowers    []string
	Upper     string // the sandbox's upper layer (share none)
	Root      string // the sandbox's open root (share virtiofs)
	Req       proto.Request
	MemoryMiB int
	CPUs      int

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Started        func(pid int)
	Readied        func()
	Signals        <-chan int
	Winch          <-chan [2]uint16
	BootTimeout    time.Duration
	Heartbeat      time.Duration
}

// Outcome is how a run ended.
type Outcome struct {
	Result   *Result // the main boot
	Spool    string  // the changes tar (share none)
	Verified bool    // the spool is the whole stream init announced
	Rescued  bool    // a rescue boot produced the spool
	// SpoolCut says why the last spool was cut short (spoolWriter): the
	// stream went over what a scratch disk holds, or the host's disk
	// was nearly full. Empty when it was not.
	SpoolCut string
	DiskTime time.Duration
	Rescue   *Result
}

// Boot builds the disks, boots the guest and, in the default mode, spools
// its changes; when the guest died before streaming them, a rescue guest
// streams them from the scratch disk.
func (r *Run) Boot(ctx context.Context) (*Outcome, error) {
	out := &Outcome{}
	m := &Machine{Config: r.Config, Dir: r.Dir, MemoryMiB: r.MemoryMiB, CPUs: r.CPUs,
		Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Started: r.Started, Readied: r.Readied,
		Signals: r.Signals, Winch: r.Winch, BootTimeout: r.BootTimeout, HeartbeatTimeout: r.Heartbeat}
	m.Req = r.Req
	m.Req.Mode, m.Req.Share, m.Req.TimeNanos = proto.ModeRun, r.Share, time.Now().UnixNano()
	if r.Share == proto.ShareVirtiofs {
		m.VirtiofsSource = r.Root
		m.Virtiofsd = r.Config.Virtiofsd
		res, err := m.Run(ctx)
		out.Result = res
		return out, err
	}
	t0 := time.Now()
	disks, err := r.disks()
	if err != nil {
		return nil, err
	}
	out.DiskTime = time.Since(t0)
	m.Disks = disks
	m.Req.Lowers = len(disks) - 1
	out.Spool = filepath.Join(r.Dir, "changes.tar")
	spool, err := os.Create(out.Spool)
	if err != nil {
		return nil, err
	}
	// The stream carries a sparse file's holes as zeros: the spool keeps
	// them as holes, as the upper layer does (Materialise).
	sw := newSpoolWriter(spool)
	m.Changes = sw
	res, err := m.Run(ctx)
	if ferr := sw.Finish(); err == nil && ferr != nil {
		err = ferr
	}
	spool.Close()
	out.SpoolCut = sw.over
	out.Result = res
	if res != nil && res.Streamed {
		out.Verified = verifySpool(out.Spool, res)
	}
	if out.Verified || res == nil || !res.Ready || res.Killed {
		return out, err
	}
	// The guest died (or was stopped) after CMD started and before its
	// changes were all out: boot a rescue guest on the scratch disk.
	rerr := r.rescue(ctx, disks[len(disks)-1], out)
	if err == nil {
		err = rerr
	}
	return out, err
}

// Rescue streams the changes left on the scratch disk of an earlier run in
// r.Dir (its guest was killed) into the spool. ErrNoScratch when there is
// no scratch disk.
func (r *Run) Rescue(ctx context.Context) (*Outcome, error) {
	scratch := filepath.Join(r.Dir, container.VMScratchFile)
	if _, err := os.Stat(scratch); err != nil {
		return nil, ErrNoScratch
	}
	out := &Outcome{Spool: filepath.Join(r.Dir, "changes.tar")}
	return out, r.rescue(ctx, Disk{Serial: proto.SerialScratch, Path: scratch}, out)
}

// ErrNoScratch says a run has no scratch disk left to rescue.
var ErrNoScratch = errors.New("vm: no scratch disk")

func (r *Run) rescue(ctx context.Context, scratch Disk, out *Outcome) error {
	spool, err := os.Create(out.Spool)
	if err != nil {
		return err
	}
	defer spool.Close()
	sw := newSpoolWriter(spool) // holes come as zeros: holes again
	m := &Machine{Config: r.Config, Dir: r.Dir, MemoryMiB: r.MemoryMiB, CPUs: 1, Disks: []Disk{scratch}, Changes: sw,
		Req:         proto.Request{Mode: proto.ModeRescue, Share: proto.ShareNone, TimeNanos: time.Now().UnixNano(), Heartbeat: r.Req.Heartbeat},
		BootTimeout: r.BootTimeout, HeartbeatTimeout: r.Heartbeat, Started: r.Started}
	res, err := m.Run(context.WithoutCancel(ctx))
	if ferr := sw.Finish(); err == nil && ferr != nil {
		err = ferr
	}
	out.Rescue = res
	out.SpoolCut = sw.over
	if err != nil {
		return fmt.Errorf("vm: rescue boot: %w", err)
	}
	out.Rescued = true
	out.Verified = res.Streamed && verifySpool(out.Spool, res)
	return nil
}

// disks are the lower disks (the upper layer's first when it has content,
// then the sandbox's lowers, top first) and the scratch disk last.
func (r *Run) disks() ([]Disk, error) {
	var disks []Disk
	add := func(p string) {
		disks = append(disks, Disk{Serial: fmt.Sprintf("%s%d", proto.SerialLower, len(disks)), Path: p, ReadOnly: true})
	}
	if empty, err := isEmptyDir(r.Upper); err != nil {
		return nil, err
	} else if !empty {
		p := filepath.Join(r.Dir, "upper.erofs")
		if err := TreeDisk(p, r.Upper); err != nil {
			return nil, err
		}
		add(p)
	}
	for _, l := range r.Lowers {
		p, built, err := LowerDisk(r.StateRoot, l)
		if err != nil {
			return nil, err
		}
		if built {
			PruneDisks(r.StateRoot) // a new layer: older ones may be gone
		}
		add(p)
	}
	scratch := filepath.Join(r.Dir, container.VMScratchFile)
	os.Remove(scratch)
	if err := ScratchDisk(scratch, ScratchSize); err != nil {
		return nil, err
	}
	return append(disks, Disk{Serial: proto.SerialScratch, Path: scratch}), nil
}

// verifySpool checks the spool against init's STREAMED line.
func verifySpool(path string, res *Result) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := io.Copy(h, f)
	return err == nil && n == res.StreamBytes && fmt.Sprintf("%08x", h.Sum32()) == res.StreamCRC
}
