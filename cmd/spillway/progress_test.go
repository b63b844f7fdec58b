package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/progress"
	"github.com/spillway/spillway/internal/testrootfs"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestProgressOnlyOnATerminal: progress goes to a terminal error stream,
// never to a file or pipe, and not with SPILLWAY_NO_PROGRESS set.
func TestProgressOnlyOnATerminal(t *testing.T) {
	t.Setenv("SPILLWAY_NO_PROGRESS", "")
	if p := (&term{err: &bytes.Buffer{}}).progress(); p != progress.None {
		t.Errorf("progress on a buffer = %T, want none", p)
	}
	master, slave := openPTY(t)
	if _, ok := (&term{err: slave}).progress().(termProgress); !ok {
		t.Error("no progress on a terminal")
	}
	t.Setenv("SPILLWAY_NO_PROGRESS", "1")
	if p := (&term{err: slave}).progress(); p != progress.None {
		t.Errorf("progress with SPILLWAY_NO_PROGRESS = %T, want none", p)
	}
	t.Setenv("SPILLWAY_NO_PROGRESS", "")

	// An import on a terminal shows its count, then clears the line.
	requireRoot(t)
	dir := t.TempDir()
	if err := testrootfs.Build(filepath.Join(dir, "busybox")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SPILLWAY_ROOT", filepath.Join(dir, "state"))
	got := make(chan string)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			b.Write(buf[:n])
			if err != nil { // EIO once the slave end is closed
				break
			}
		}
		got <- b.String()
	}()
	var out bytes.Buffer
	if code := Main([]string{"spillway", "image", "import", "base", filepath.Join(dir, "busybox")}, strings.NewReader(""), &out, slave); code != 0 {
		t.Fatalf("import exited %d", code)
	}
	slave.Close()
	s := <-got
	if !strings.Contains(s, "\r\033[Kimporting base: ") || !strings.Contains(s, " files, ") || !strings.HasSuffix(s, "\r\033[K") {
		t.Errorf("terminal got %q, want an import count and a cleared line", s)
	}
	if strings.Contains(out.String(), "\033") {
		t.Errorf("progress reached stdout: %q", out.String())
	}
}
