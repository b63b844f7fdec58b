package vm

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testrootfs"
	"github.com/spillway/spillway/vm/proto"
)

// A guest that does not report READY in time is killed with ErrWatchdog,
// and its QEMU is gone when Run returns.
func TestBootWatchdog(t *testing.T) {
	c, _ := testConfig(t)
	var pid int
	m := &Machine{Config: c, Dir: t.TempDir(), Req: proto.Request{Mode: proto.ModeRun, Share: proto.ShareNone},
		BootTimeout: 300 * time.Millisecond, Started: func(p int) { pid = p }}
	start := time.Now()
	res, err := m.Run(context.Background())
	if !errors.Is(err, ErrWatchdog) || !strings.Contains(err.Error(), "did not start within") {
		t.Fatalf("err = %v, want the boot watchdog", err)
	}
	if res.Ready || time.Since(start) > 30*time.Second {
		t.Fatalf("ready %v after %s", res.Ready, time.Since(start))
	}
	if pid == 0 {
		t.Fatal("QEMU never started")
	}
	if _, err := procAlive(pid); err == nil {
		t.Fatalf("QEMU %d still runs", pid)
	}
}

// A guest whose init falls silent after READY (QEMU stopped here) is
// killed by the heartbeat watchdog, however long CMD may legitimately run.
func TestHeartbeatWatchdog(t *testing.T) {
	c, root := testConfig(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := testrootfs.Build(rootfs); err != nil {
		t.Fatal(err)
	}
	var pid int
	r := &Run{Config: c, StateRoot: root, Dir: t.TempDir(), Share: proto.ShareNone, Lowers: []string{rootfs}, Upper: t.TempDir(),
		Req:     proto.Request{Args: []string{"sleep", "600"}},
		Started: func(p int) { pid = p }, Readied: func() { syscall.Kill(pid, syscall.SIGSTOP) },
		Heartbeat: 3 * time.Second}
	out, err := r.Boot(context.Background())
	if !errors.Is(err, ErrWatchdog) || !strings.Contains(err.Error(), "silent") {
		t.Fatalf("err = %v, want the heartbeat watchdog", err)
	}
	if !out.Result.Ready || out.Result.Exited {
		t.Fatalf("result %+v", out.Result)
	}
	if _, err := procAlive(pid); err == nil {
		t.Fatalf("QEMU %d still runs", pid)
	}
}
