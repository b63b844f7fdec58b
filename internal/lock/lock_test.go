package lock

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestRefusesPlantedLock: a lock file that another user prepared is never
// opened through a symlink nor truncated.
func TestRefusesPlantedLock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files to another user and needs root (CI runs it as root)")
	}
	tests := []struct {
		name   string
		plant  func(t *testing.T, lock, victim string)
		reason string
	}{
		{"a symlink", func(t *testing.T, lock, victim string) { check(t, os.Symlink(victim, lock)) }, "is a symlink"},
		{"a dangling symlink", func(t *testing.T, lock, victim string) {
			check(t, os.Symlink(filepath.Join(filepath.Dir(victim), "created"), lock))
		}, "is a symlink"},
		{"a hard link of another user's file", func(t *testing.T, lock, victim string) {
			check(t, os.Chown(victim, 65534, 65534))
			check(t, os.Link(victim, lock))
		}, "is owned by uid 65534"},
		{"a hard link of our own file", func(t *testing.T, lock, victim string) { check(t, os.Link(victim, lock)) }, "has 2 hard links"},
		{"a file of another user", func(t *testing.T, lock, victim string) {
			check(t, os.WriteFile(lock, []byte("keep\n"), 0o600))
			check(t, os.Chown(lock, 65534, 65534))
		}, "is owned by uid 65534, not by you (uid 0)"},
		{"a file writable by others", func(t *testing.T, lock, victim string) {
			check(t, os.WriteFile(lock, []byte("keep\n"), 0o600))
			check(t, os.Chmod(lock, 0o666))
		}, "is writable by group and others (mode 0666)"},
		{"a fifo", func(t *testing.T, lock, victim string) { check(t, unix.Mkfifo(lock, 0o600)) }, "is not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, outside := t.TempDir(), t.TempDir()
			lock, victim := filepath.Join(state, "lock"), filepath.Join(outside, "victim")
			check(t, os.WriteFile(victim, []byte("keep\n"), 0o644))
			tc.plant(t, lock, victim)
			l, err := Acquire(context.Background(), lock, "ls", time.Second, nil)
			if err == nil {
				l.Release()
				t.Fatal("took a planted lock file")
			}
			if want := "state directory " + state + ": " + lock + " " + tc.reason; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("err = %q, want %q", err, want)
			}
			if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
				t.Fatalf("victim now holds %q", b)
			}
			if _, err := os.Lstat(filepath.Join(outside, "created")); err == nil {
				t.Fatal("created a file through a dangling symlink")
			}
			if fi, err := os.Lstat(lock); err != nil || !fi.Mode().IsRegular() {
				return // a symlink or a fifo: nothing to truncate
			}
			if b, err := os.ReadFile(lock); err == nil && string(b) != "keep\n" {
				t.Fatalf("lock file truncated to %q", b)
			}
		})
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
