package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/pgtest"
)

// lockedBuffer is a strings.Builder a process writes while a test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFleetAgentSaysWhenLedgerReturns: the agent says when it starts,
// says once that heartbeats fail while the database is down (not once a
// heartbeat), says when the ledger answers again, and exits 0 on SIGINT.
func TestFleetAgentSaysWhenLedgerReturns(t *testing.T) {
	requireRoot(t)
	url := pgDB(t)
	// The ledger the agent creates must survive the immediate restart
	// (the cluster commits asynchronously): a root records its ledger's
	// id, and a new, empty ledger in its place is refused.
	if err := pgtest.SyncCommit(url); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "fleet", "agent", "--ttl", "1s")
	cmd.Env = append(os.Environ(), "SPILLWAY_TEST_MAIN=1", "SPILLWAY_ROOT="+filepath.Join(t.TempDir(), "state"),
		"SPILLWAY_STORE="+url, "SPILLWAY_HOST_ID=h1")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), what); {
			if time.Now().After(deadline) {
				t.Fatalf("the agent did not say %q: %q", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("spillway: fleet agent: host h1 live in postgres://")
	// Down for 1.5 s: four or five heartbeats fail.
	if err := pgtest.Restart(1500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor("answers again")
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("the agent after SIGINT: %v (want status 0)\n%s", err, stderr.String())
	}
	out := stderr.String()
	t.Logf("stderr:\n%s", out)
	if n := strings.Count(out, "heartbeat failed"); n < 1 || n > 2 {
		t.Errorf("%d lines of failed heartbeats (want one a kind of failure):\n%s", n, out)
	}
	back := regexp.MustCompile(`(?m)^spillway: fleet agent: the ledger answers again after \d+ failed heartbeats? \(\d+s\); as long as the ttl 1s or longer: other hosts may have taken this host's leases$`)
	if !back.MatchString(out) || strings.Count(out, "\n") > 5 {
		t.Errorf("stderr:\n%s", out)
	}
}
