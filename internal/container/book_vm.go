package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// VMReadyFile, in a VM run's directory, says its guest got as far as
// starting CMD: before that the guest changed nothing worth rescuing.
const VMReadyFile = "ready"

// VMScratchFile is the scratch disk in a VM run's directory: the guest's
// changes until they are applied.
const VMScratchFile = "scratch.img"

// VMAppliedFile, in a VM run's directory, says its guest's changes were
// applied to the upper layer: the run is no orphan, whatever is left.
const VMAppliedFile = "applied"

// orphan says e is a VM run whose spillway died (kill -9) after its guest
// started CMD and before the guest's changes were applied to the sandbox's
// upper layer: its scratch disk, still in its run directory, holds them.
func (e *Entry) orphan() bool {
	if e.VM == nil || e.VM.Upper == "" || e.VM.Dir == "" {
		return false
	}
	for _, f := range []string{VMReadyFile, VMScratchFile} {
		if _, err := os.Lstat(filepath.Join(e.VM.Dir, f)); err != nil {
			return false
		}
	}
	_, err := os.Lstat(filepath.Join(e.VM.Dir, VMAppliedFile))
	return err != nil
}

// Orphans returns the VM runs of sandbox whose spillway died before it
// applied its guest's changes (their scratch disks hold them), oldest
// first. Live leaves them in the book for RescueOrphan or DropOrphan.
func (b *Book) Orphans(sandbox string) ([]*Entry, error) {
	all, err := b.entries(sandbox)
	if err != nil {
		return nil, err
	}
	var orphans []*Entry
	for _, e := range all {
		if !e.ownerAlive() && e.orphan() {
			orphans = append(orphans, e)
		}
	}
	return orphans, nil
}

// RescueOrphan gets back the changes of an orphaned VM run (Orphans): it
// kills its QEMU if that still runs, boots a rescue guest on its scratch
// disk (RescueVM) and, when that worked, removes the run's entry. Call it
// with the sandbox's lock held, before anything else writes the upper
// layer.
func (b *Book) RescueOrphan(ctx context.Context, e *Entry) error {
	if RescueVM == nil {
		return errors.New("no VM support in this program to rescue the run's changes")
	}
	if err := b.stopVM(ctx, e.VM); err != nil {
		var ri *RescueIncomplete
		if !errors.As(err, &ri) {
			return err
		}
		if cerr := b.Clean(ctx, e); cerr != nil {
			return cerr
		}
		return err
	}
	return b.Clean(ctx, e)
}

// DropOrphan removes an orphaned VM run's entry without its rescue; its run
// directory (the scratch disk) stays where it is.
func (b *Book) DropOrphan(ctx context.Context, e *Entry) error {
	if err := e.VM.stop(); err != nil {
		return err
	}
	return b.Clean(ctx, e)
}

// RescueIncomplete says a rescue applied only part of a VM's changes (its
// stream was cut short, unconfirmed, or some entries were refused); the run
// directory is kept. It is a warning: what arrived was applied.
type RescueIncomplete struct {
	Dir string // the run directory, kept
	Why string
}

func (e *RescueIncomplete) Error() string {
	return fmt.Sprintf("the rescued VM's changes were incomplete (%s): what arrived was applied; the scratch disk is kept in %s", e.Why, e.Dir)
}

// VMRunsInUse names the VM run directories the book's entries may use.
type VMRunsInUse struct {
	dirs map[string]bool // the directories entries name (live VM runs and orphans)
	ids  map[string]bool // every entry's id: a run still starting has its directory, ID.SUFFIX, and no VM details yet
}

// Has says whether the run directory at p is in use.
func (u VMRunsInUse) Has(p string) bool {
	if u.dirs[p] {
		return true
	}
	name := filepath.Base(p)
	i := strings.LastIndexByte(name, '.')
	return i > 0 && u.ids[name[:i]]
}

// VMDirs returns the run directories the book's entries use, of every
// sandbox: live VM runs, orphans, and runs still starting (the entry is
// registered before its directory is made). Read it after listing the
// directories: a run that starts in between made its entry first.
func (b *Book) VMDirs() (VMRunsInUse, error) {
	out := VMRunsInUse{dirs: map[string]bool{}, ids: map[string]bool{}}
	sbs, err := os.ReadDir(filepath.Join(b.Dir, "sbx"))
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	for _, d := range sbs {
		all, err := b.entries(d.Name())
		if err != nil {
			return out, err
		}
		for _, e := range all {
			out.ids[e.ID] = true
			if e.VM != nil {
				out.dirs[e.VM.Dir] = true
			}
		}
	}
	return out, nil
}

// vmRunDirName is a VM run directory's name: its run's id
// (spillway-SANDBOX-N, Register) and a random suffix.
var vmRunDirName = regexp.MustCompile(`^spillway-(.+)-[0-9]+\.[^.]+$`)

// VMRunSandbox returns the sandbox whose run a VM run directory named name
// belongs to.
func VMRunSandbox(name string) (string, bool) {
	m := vmRunDirName.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}
