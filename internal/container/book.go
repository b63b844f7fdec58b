package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/atomicfile"
)

// DefaultRuntime is the OCI runtime binary used when none is named.
const DefaultRuntime = "runc"

// Book is the record of the runs of one state directory.
type Book struct {
	Dir     string // spillway's <root>/run
	Runtime string // the OCI runtime binary for new runs (DefaultRuntime when empty)
}

// Entry is one run: its container and the spillway process that owns it.
type Entry struct {
	ID        string    `json:"id"`
	Sandbox   string    `json:"sandbox"`
	PID       int       `json:"pid"`
	PIDStart  uint64    `json:"pid_start"` // the owner's start time, against pid reuse
	Runtime   string    `json:"runtime"`
	Started   time.Time `json:"started"`
	VM        *VMProc   `json:"vm,omitempty"` // a `run --vm`: its QEMU (book_vm.go)
	stateRoot string
}

func (b *Book) runtime() string {
	if b.Runtime == "" {
		return DefaultRuntime
	}
	return b.Runtime
}

// StateRoot is the runtime's own state directory (its --root).
func (b *Book) StateRoot() string { return filepath.Join(b.Dir, "runc") }

func (b *Book) sandboxDir(sandbox string) string { return filepath.Join(b.Dir, "sbx", sandbox) }

// bundle is the OCI bundle directory of an entry.
func (b *Book) bundle(e *Entry) string { return filepath.Join(b.sandboxDir(e.Sandbox), e.ID) }

func (b *Book) entryPath(e *Entry) string { return b.bundle(e) + ".json" }

// Register records a new run of sandbox owned by this process, with a
// container id of its own (spillway-<sandbox>-<n>), after cleaning the
// sandbox's stale entries.
func (b *Book) Register(ctx context.Context, sandbox string) (*Entry, error) {
	if _, err := b.Live(ctx, sandbox); err != nil {
		return nil, err
	}
	dir := b.sandboxDir(sandbox)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	start, err := procStart(os.Getpid())
	if err != nil {
		return nil, err
	}
	e := &Entry{Sandbox: sandbox, PID: os.Getpid(), PIDStart: start, Runtime: b.runtime(),
		Started: time.Now().UTC(), stateRoot: b.StateRoot()}
	tmp, err := atomicfile.Create(dir, ".new-")
	if err != nil {
		return nil, err
	}
	defer tmp.Cleanup()
	for n := 1; ; n++ {
		e.ID = fmt.Sprintf("spillway-%s-%d", sandbox, n)
		if _, err := os.Lstat(b.bundle(e)); err == nil {
			continue // a bundle left behind: its entry is being removed
		}
		data, _ := json.Marshal(e)
		if err := rewrite(tmp.File, data); err != nil {
			return nil, err
		}
		// A hard link never replaces an existing entry: the id is ours alone.
		err := tmp.Commit(b.entryPath(e), atomicfile.Link)
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
}

// rewrite replaces f's content with data.
func rewrite(f *os.File, data []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt(data, 0)
	return err
}

// Live returns the runs of sandbox whose owner is alive, oldest first, and
// cleans the others away (see Clean), except a VM run whose guest's
// changes were never applied: Orphans lists those.
func (b *Book) Live(ctx context.Context, sandbox string) ([]*Entry, error) {
	all, err := b.entries(sandbox)
	if err != nil {
		return nil, err
	}
	var live []*Entry
	for _, e := range all {
		if e.ownerAlive() {
			live = append(live, e)
			continue
		}
		if e.orphan() {
			continue
		}
		if err := b.Clean(ctx, e); err != nil {
			return nil, fmt.Errorf("clean stale run %s: %w", e.ID, err)
		}
	}
	return live, nil
}

// entries reads the run entries of sandbox, oldest first.
func (b *Book) entries(sandbox string) ([]*Entry, error) {
	dir := b.sandboxDir(sandbox)
	names, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var all []*Entry
	for _, de := range names {
		n := de.Name()
		if !strings.HasSuffix(n, ".json") || strings.HasPrefix(n, ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		e := &Entry{stateRoot: b.StateRoot()}
		if err := json.Unmarshal(data, e); err != nil || e.ID+".json" != n || e.Sandbox != sandbox {
			return nil, fmt.Errorf("run entry %s: unreadable", filepath.Join(dir, n))
		}
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Started.Before(all[j].Started) })
	return all, nil
}

// ownerAlive says whether the spillway process of e still runs.
func (e *Entry) ownerAlive() bool {
	start, err := procStart(e.PID)
	return err == nil && start == e.PIDStart
}

// Stop kills the container of a live run and deletes it, so that every
// process of the run is gone when it returns. Its owner then sees CMD
// killed and removes the entry itself.
func (b *Book) Stop(ctx context.Context, e *Entry) error {
	if e.VM != nil {
		return b.stopVM(ctx, e.VM)
	}
	e.runc(ctx, "kill", e.ID, "KILL") // fails when already stopped
	return e.delete(ctx)
}

// Clean deletes what is left of a run (its container, bundle, entry), in
// that order so that an interrupted clean is found again.
func (b *Book) Clean(ctx context.Context, e *Entry) error {
	if err := e.delete(ctx); err != nil {
		return err
	}
	if err := os.RemoveAll(b.bundle(e)); err != nil {
		return err
	}
	err := os.Remove(b.entryPath(e))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// delete removes the container from the runtime, killing what runs in it.
func (e *Entry) delete(ctx context.Context) error {
	if _, err := os.Lstat(filepath.Join(e.stateRoot, e.ID)); errors.Is(err, fs.ErrNotExist) {
		return nil // the runtime never created it, or deleted it already
	}
	if out, err := e.runc(ctx, "delete", "--force", e.ID); err != nil {
		if _, serr := os.Lstat(filepath.Join(e.stateRoot, e.ID)); errors.Is(serr, fs.ErrNotExist) {
			return nil // deleted meanwhile by its owner
		}
		return fmt.Errorf("%s delete --force %s: %v: %s", e.Runtime, e.ID, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *Entry) runc(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rt := e.Runtime
	if rt == "" {
		rt = DefaultRuntime
	}
	return exec.CommandContext(ctx, rt, append([]string{"--root", e.stateRoot}, args...)...).CombinedOutput()
}

// procStart returns the start time of process pid (field 22 of
// /proc/PID/stat), which tells a process from a later one with its pid.
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state), so field 22 is f[19]. A zombie still has its
	// stat, but no longer owns anything.
	if f[0] == "Z" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
