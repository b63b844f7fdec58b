package lock

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLockSharedHoldersCoexist: shared holders do not wait for each other;
// an exclusive taker waits for them, names them through Describe, and gets
// the lock once they are gone; a shared taker then waits for it.
func TestLockSharedHoldersCoexist(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	ctx := context.Background()
	a, err := Take(ctx, Request{Path: p, What: "open a", Shared: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Take(ctx, Request{Path: p, What: "open b", Shared: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("second shared holder: %v", err)
	}
	_, err = Take(ctx, Request{Path: p, What: "gc", Timeout: 100 * time.Millisecond, Describe: func() string { return "pid 1: close a" }})
	if err == nil || !strings.Contains(err.Error(), "pid 1: close a") {
		t.Fatalf("exclusive beside shared holders: err = %v, want a timeout naming them", err)
	}
	a.Release()
	b.Release()
	gc, err := Take(ctx, Request{Path: p, What: "gc", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Release()
	_, err = Take(ctx, Request{Path: p, What: "ls", Shared: true, Timeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "gc") {
		t.Fatalf("shared beside an exclusive holder: err = %v, want a timeout naming gc", err)
	}
	if h := Holder(p); !strings.Contains(h, "gc") {
		t.Fatalf("Holder = %q, want gc", h)
	}
}

// TestLockTryAcquire: a busy lock gives nil at once, a free one the lock.
func TestLockTryAcquire(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	l, err := TryAcquire(p, "close a")
	if err != nil || l == nil {
		t.Fatalf("free lock: %v, %v", l, err)
	}
	start := time.Now()
	other, err := TryAcquire(p, "recover")
	if err != nil || other != nil {
		t.Fatalf("busy lock: %v, %v; want nil, nil", other, err)
	}
	if time.Since(start) > 40*time.Millisecond {
		t.Fatalf("TryAcquire waited %s", time.Since(start))
	}
	l.Release()
	if other, err = TryAcquire(p, "recover"); err != nil || other == nil {
		t.Fatalf("after release: %v, %v", other, err)
	}
	other.Release()
}
