package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

// The commands of the run_*.txtar scripts.
func init() {
	// waitfile PATH: wait (up to 10s) until PATH exists, e.g. a file that a
	// background run writes once CMD has started.
	scriptCmds["waitfile"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: waitfile PATH")
		}
		p := ts.MkAbs(args[0])
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Lstat(p); err == nil {
				return
			}
		}
		ts.Fatalf("%s did not appear within 10s", p)
	}
	// noproc TEXT: no live process on the host has TEXT in its command line
	// (zombies do not count: they run nothing and hold nothing).
	scriptCmds["noproc"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || neg {
			ts.Fatalf("usage: noproc TEXT")
		}
		// A process on its way out (the detached rm of the trash that
		// close starts, a reaped child's last moments on a loaded host)
		// is given 10 s; one left running is not.
		pids := hostProcs(args[0])
		for deadline := time.Now().Add(10 * time.Second); len(pids) > 0 && time.Now().Before(deadline); pids = hostProcs(args[0]) {
			time.Sleep(100 * time.Millisecond)
		}
		if len(pids) > 0 {
			var lines []string
			for _, pid := range pids {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				lines = append(lines, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
			}
			ts.Fatalf("processes still run %q:\n%s", args[0], strings.Join(lines, "\n"))
		}
	}
	// sigrun SIGNAL SANDBOX: send SIGNAL (TERM, INT, ...) to the spillway
	// process of the sandbox's only run, as its entry names it.
	scriptCmds["sigrun"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 || neg {
			ts.Fatalf("usage: sigrun SIGNAL SANDBOX")
		}
		sig := unix.SignalNum("SIG" + args[0])
		if sig == 0 {
			ts.Fatalf("unknown signal %s", args[0])
		}
		entries, _ := filepath.Glob(filepath.Join(ts.Getenv("SPILLWAY_ROOT"), "run", "sbx", args[1], "*.json"))
		if len(entries) != 1 {
			ts.Fatalf("want one run of %s, have %d", args[1], len(entries))
		}
		var e struct{ PID int }
		ts.Check(json.Unmarshal([]byte(ts.ReadFile(entries[0])), &e))
		ts.Check(unix.Kill(e.PID, sig))
	}
	// exits N SECONDS PROG ARG...: PROG exits with status N within SECONDS.
	scriptCmds["exits"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 3 || neg {
			ts.Fatalf("usage: exits N SECONDS PROG ARG...")
		}
		want, err1 := strconv.Atoi(args[0])
		secs, err2 := strconv.ParseFloat(args[1], 64)
		ts.Check(errors.Join(err1, err2))
		start := time.Now()
		err := ts.Exec(args[2], args[3:]...)
		took := time.Since(start)
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		} else {
			ts.Check(err)
		}
		if got != want {
			ts.Fatalf("%s exited %d, want %d", args[2], got, want)
		}
		if took > time.Duration(secs*float64(time.Second)) {
			ts.Fatalf("%s took %v, more than %vs", args[2], took.Round(time.Millisecond), secs)
		}
	}
}

// hostProcs returns the pids of the live processes whose command line
// contains text.
func hostProcs(text string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !strings.Contains(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})), text) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && bytes.HasPrefix(stat[i+1:], []byte(" Z")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		pids = append(pids, pid)
	}
	return pids
}
