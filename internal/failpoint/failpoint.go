// Package failpoint kills the process at named step boundaries, so crash
// tests can stop spillway exactly between two durable steps.
//
// SPILLWAY_FAILPOINT=NAME:N makes the Nth hit of NAME in this process send
// SIGKILL to itself: no deferred code runs, as in a power cut after the
// previous step. SPILLWAY_FAILPOINT_LOG=FILE appends the name of every hit
// to FILE, so tests can count hits and check that each point fires.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	once   sync.Once
	target string
	nth    int
	logf   *os.File
	mu     sync.Mutex
	hits   = map[string]int{}
)

func setup() {
	if v := os.Getenv("SPILLWAY_FAILPOINT"); v != "" {
		name, n, ok := strings.Cut(v, ":")
		if !ok {
			n = "1"
		}
		target = name
		nth, _ = strconv.Atoi(n)
		if _, known := Names[name]; !known {
			fmt.Fprintf(os.Stderr, "spillway: SPILLWAY_FAILPOINT names unknown failpoint %q\n", name)
		}
	}
	if p := os.Getenv("SPILLWAY_FAILPOINT_LOG"); p != "" {
		logf, _ = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	}
}

// Hit marks that the process reached the failpoint name. It panics on a
// name that is not registered in Names, so every point is listed there.
func Hit(name string) {
	if _, ok := Names[name]; !ok {
		panic("failpoint: unregistered name " + name)
	}
	once.Do(setup)
	pause(name)
	if target == "" && logf == nil {
		return
	}
	mu.Lock()
	hits[name]++
	n := hits[name]
	if logf != nil {
		fmt.Fprintln(logf, name)
	}
	mu.Unlock()
	if name == target && n == nth {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it
	}
}
