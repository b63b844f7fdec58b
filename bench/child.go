package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spillway/spillway/persist"
)

// The benchmark closes large sandboxes in a child process (itself, re-run
// with these variables) so that the peak resident memory it reports is the
// close's own, read from wait4's rusage.
const (
	childEnv     = "SPILLWAY_BENCH_CHILD"   // "close" or "migrate"
	childRoot    = "SPILLWAY_BENCH_ROOT"    // state directory
	childSandbox = "SPILLWAY_BENCH_SANDBOX" // sandbox to close
	childProfile = "SPILLWAY_BENCH_PPROF"   // optional: write a CPU profile here
)

// childResult is what the child prints on stdout.
type childResult struct {
	Close     time.Duration // CloseSandbox alone (not process start, not OpenEnv)
	Total     time.Duration // the whole command: OpenEnv, close, Env.Close
	Persisted int
	Discarded int64
	Refused   int64
	HeapPeak  int64  // peak bytes of live heap objects, sampled every 10 ms
	HeapSys   uint64 // runtime.MemStats.HeapSys at the end
	HWM       int64  // bytes: VmHWM of /proc/self/status, the child's own peak RSS
	MaxRSS    int64  // bytes, filled in by the parent from wait4's rusage
}

// peakRSS reads this process's peak resident set (VmHWM). wait4's ru_maxrss
// is not enough: exec folds the peak of the old address space in, and Go
// starts children with vfork, so a child's ru_maxrss is at least the
// parent's resident set.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// childMain is the child's main: close one sandbox and report.
func childMain() int {
	if err := childClose(); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

func childClose() error {
	switch os.Getenv(childEnv) {
	case "close":
	case "migrate":
		return childMigrate()
	default:
		return fmt.Errorf("unknown child job %q", os.Getenv(childEnv))
	}
	stop, err := cpuProfile(os.Getenv(childProfile))
	if err != nil {
		return err
	}
	defer stop()
	ctx := context.Background()
	t0 := time.Now()
	e, err := openEnv(ctx, os.Getenv(childRoot), "")
	if err != nil {
		return err
	}
	var sum *persist.CloseSummary
	hs := sampleHeap()
	d, err := timed(func() (err error) {
		sum, err = e.CloseSandbox(ctx, os.Getenv(childSandbox), persist.CloseOptions{})
		return err
	})
	if err != nil {
		e.Close()
		return err
	}
	peak := hs.peak()
	if err := e.Close(); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return json.NewEncoder(os.Stdout).Encode(childResult{
		Close: d, Total: time.Since(t0), Persisted: len(sum.Persisted), Discarded: sum.Discarded.Count, Refused: sum.RefusedCount, HeapSys: ms.HeapSys, HeapPeak: peak,
		HWM: peakRSS(),
	})
}

// migrateInChild opens (and so migrates) the store in dir in a child
// process; the report's Close is the Open's duration.
func migrateInChild(dir string) (*childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=migrate", childRoot+"="+dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("migrate in child: %w: %s", err, errb.Bytes())
	}
	res := &childResult{}
	if err := json.Unmarshal(out.Bytes(), res); err != nil {
		return nil, fmt.Errorf("migrate in child: %w: %q", err, out.Bytes())
	}
	return res, nil
}

// closeInChild closes sandbox of the state directory root in a child
// process (root must not be held by this process) and returns its report.
func closeInChild(root, sandbox, profile string) (*childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=close", childRoot+"="+root, childSandbox+"="+sandbox)
	if profile != "" {
		cmd.Env = append(cmd.Env, childProfile+"="+profile)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("close in child: %w: %s", err, errb.Bytes())
	}
	res := &childResult{}
	if err := json.Unmarshal(out.Bytes(), res); err != nil {
		return nil, fmt.Errorf("close in child: %w: %q", err, out.Bytes())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	return res, nil
}

// fileBytes is the space allocated to a file (sparse badger files count
// what they hold, not their size).
func fileBytes(p string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// heapSampler records the peak of the live heap until stopped.
type heapSampler struct {
	stop chan struct{}
	done chan int64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan int64)}
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, int64(s[0].Value.Uint64()))
			select {
			case <-h.stop:
				h.done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) peak() int64 {
	close(h.stop)
	return <-h.done
}

// cpuProfile writes a CPU profile to path ("": none) until stop is called.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if m, err := os.Create(path + ".allocs"); err == nil {
			// what the process allocated since it started, as of the
			// last garbage collection
			pprof.Lookup("allocs").WriteTo(m, 0)
			m.Close()
		}
	}, nil
}
