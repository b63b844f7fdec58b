package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockRemoveWhileWaited: rm holds a sandbox's lock and removes its
// file while open waits for it (the old file open). open must end up
// holding the file now at the path, so that a third command finds it busy;
// a lock on the removed file would exclude nobody.
func TestLockRemoveWhileWaited(t *testing.T) {
	p := filepath.Join(t.TempDir(), "docs")
	ctx := context.Background()
	rm, err := Acquire(ctx, p, "rm docs", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	type taken struct {
		l   *Lock
		err error
	}
	got := make(chan taken, 1)
	go func() {
		l, err := Take(ctx, Request{Path: p, What: "open docs", Timeout: 5 * time.Second, Wait: func(string) { close(waiting) }})
		got <- taken{l, err}
	}()
	<-waiting // open has the old file and found it busy
	if err := rm.Remove(p); err != nil {
		t.Fatalf("remove: %v", err)
	}
	open := <-got
	if open.err != nil {
		t.Fatalf("open after rm: %v", open.err)
	}
	defer open.l.Release()
	if same, err := sameFile(open.l.f, p); err != nil || !same {
		t.Fatalf("open holds a file that is not at %s (same=%v, %v)", p, same, err)
	}
	third, err := TryAcquire(p, "close docs")
	if err != nil {
		t.Fatal(err)
	}
	if third != nil {
		third.Release()
		t.Fatal("a third command took the lock while open held it: open held the removed file")
	}
	if h := Holder(p); h == "" {
		t.Fatal("the file at the path names no holder")
	}
}

// TestLockRemoveStress: goroutines take one lock over and over, each
// releasing or removing it; never do two hold it at once.
func TestLockRemoveStress(t *testing.T) {
	p := filepath.Join(t.TempDir(), "docs")
	ctx := context.Background()
	var holders, overlaps, removed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				var l *Lock
				var err error
				if (g+i)%3 == 0 {
					if l, err = TryAcquire(p, "try"); err == nil && l == nil {
						continue
					}
				} else {
					l, err = Take(ctx, Request{Path: p, What: "take", Timeout: 20 * time.Second})
				}
				if err != nil {
					errs <- err
					return
				}
				if holders.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(50 * time.Microsecond)
				holders.Add(-1)
				if (g*7+i)%4 == 0 {
					removed.Add(1)
					err = l.Remove(p)
				} else {
					err = l.Release()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := overlaps.Load(); n > 0 {
		t.Fatalf("%d times two goroutines held the lock at once", n)
	}
	if removed.Load() == 0 {
		t.Fatal("no goroutine removed the lock file")
	}
}

// TestLockRemoveOnlyItsFile: a holder whose file was replaced at the path
// (by another holder's removal and a new taker) does not remove the new
// file.
func TestLockRemoveOnlyItsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "docs")
	old, err := TryAcquire(p, "rm docs")
	if err != nil || old == nil {
		t.Fatal(old, err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	cur, err := TryAcquire(p, "open docs")
	if err != nil || cur == nil {
		t.Fatal(cur, err)
	}
	defer cur.Release()
	if err := old.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		t.Fatal("Remove took away another holder's file")
	}
}
