package lock

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSecondWaitsThenGetsLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	ctx := context.Background()
	first, err := Acquire(ctx, p, "close docs", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var told string
	done := make(chan error, 1)
	go func() {
		l, err := Acquire(ctx, p, "ls", 5*time.Second, func(h string) { told = h })
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	first.Release()
	if err := <-done; err != nil {
		t.Fatalf("second acquire: %v", err)
	}
	if !strings.Contains(told, "close docs") {
		t.Fatalf("waiter was told %q, want the holder's description", told)
	}
	if err := first.Release(); err != nil {
		t.Fatalf("release twice: %v", err)
	}
}

func TestTimeoutNamesHolder(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	first, err := Acquire(context.Background(), p, "import base", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	_, err = Acquire(context.Background(), p, "ls", 100*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "import base") {
		t.Fatalf("err = %v, want a timeout naming the holder", err)
	}
}
