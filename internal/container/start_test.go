package container

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// lookCmd resolves CMD inside the root only: a symlink to a host file that
// the sandbox lacks is not found, however it is spelt.
func TestLookCmd(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("bin/ok", 0o755)
	write("etc/data", 0o644)
	write("usr/bin/data", 0o644)
	write("usr/bin/data2", 0o755)
	for n, target := range map[string]string{"abs": "/usr/bin/env", "climb": "../../../../../../usr/bin/env", "inside": "/bin/ok"} {
		if err := os.Symlink(target, filepath.Join(root, "bin", n)); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for cmd, want := range map[string]int{
		"ok": 0, "/bin/ok": 0, "./bin/ok": 0, "inside": 0, "data2": 0,
		"abs": ExitNotFound, "/bin/climb": ExitNotFound, "nosuch": ExitNotFound, "": ExitNotFound,
		"/etc/data": ExitCannotExec, "/etc": ExitCannotExec, "data": ExitCannotExec,
	} {
		got := 0
		var se *StartError
		if err := lookCmd(root, cmd, env); errors.As(err, &se) {
			got = se.Code
		} else if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		if got != want {
			t.Errorf("%q: %d, want %d", cmd, got, want)
		}
	}
}

// elfHeader returns the first 20 bytes of a little-endian ELF64 file of
// type typ for machine m.
func elfHeader(typ elf.Type, m elf.Machine) []byte {
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(h[16:], uint16(typ))
	binary.LittleEndian.PutUint16(h[18:], uint16(m))
	return h
}

// checkFormat refuses what execve would refuse for its format, before the
// runtime starts: an ELF file for another machine or one that is not a
// program, a file with neither ELF header nor "#!".
func TestCheckFormat(t *testing.T) {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	own := elf.Machine(binary.NativeEndian.Uint16(self[18:20]))
	foreign := elf.EM_RISCV
	if own == elf.EM_RISCV {
		foreign = elf.EM_X86_64
	}
	root := t.TempDir()
	cases := []struct {
		name, wantMsg string
		data          []byte
	}{
		{"self", "", self[:4096]},
		{"script", "", []byte("#!/bin/sh\necho hi\n")},
		{"exec", "", elfHeader(elf.ET_EXEC, own)},
		{"pie", "", elfHeader(elf.ET_DYN, own)},
		{"foreign", "exec format error (a program for " + machineName(foreign) + ", this machine runs " + runtime.GOARCH + ")", elfHeader(elf.ET_EXEC, foreign)},
		{"object", "exec format error (an ELF file that is not a program)", elfHeader(elf.ET_REL, own)},
		{"short", "exec format error", []byte("\x7fELF\x02\x01")},
		{"text", "exec format error", []byte("echo hi\n")},
		{"empty", "exec format error", nil},
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, c := range cases {
		if err := os.WriteFile(filepath.Join(root, c.name), c.data, 0o755); err != nil {
			t.Fatal(err)
		}
		err := checkFormat(fd, "/"+c.name)
		switch {
		case c.wantMsg == "" && err != nil:
			t.Errorf("%s: %v, want accepted", c.name, err)
		case c.wantMsg != "" && (!errors.Is(err, unix.ENOEXEC) || err.Error() != c.wantMsg):
			t.Errorf("%s: %v, want ENOEXEC %q", c.name, err, c.wantMsg)
		}
	}
}

// An amd64 kernel runs i386 programs too.
func TestCheckELFi386OnAmd64(t *testing.T) {
	err := checkELF(elfHeader(elf.ET_EXEC, elf.EM_386))
	if want := runtime.GOARCH == "amd64" || runtime.GOARCH == "386"; want != (err == nil) {
		t.Fatalf("i386 on %s: %v", runtime.GOARCH, err)
	}
}
