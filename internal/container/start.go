package container

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Exit statuses of run when CMD never ran (SPEC.md, "Exit codes").
const (
	ExitCannotExec = 126 // CMD found but cannot be executed
	ExitNotFound   = 127 // CMD not found in the sandbox
	ExitNotStarted = 125 // spillway or the runtime failed before CMD started
)

// StartError is a failure before CMD started; Code is run's exit status.
type StartError struct {
	Code int
	Err  error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// lookCmd finds CMD in the sandbox as the runtime will, without running it:
// a name with a slash is taken as it is (relative to the working
// directory "/"), else each directory of the process's PATH is searched.
// Paths resolve inside rootfs only (RESOLVE_IN_ROOT), so a symlink of the
// sandbox can never reach a host file. A missing CMD is ExitNotFound, a
// directory or a file without execute bits ExitCannotExec.
func lookCmd(rootfs, cmd string, env []string) error {
	fd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &StartError{ExitNotStarted, fmt.Errorf("open root: %w", err)}
	}
	defer unix.Close(fd)
	if cmd == "" {
		return &StartError{ExitNotFound, errors.New("empty command: not found in the sandbox")}
	}
	if strings.Contains(cmd, "/") {
		err := checkExec(fd, path.Join("/", cmd))
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return &StartError{ExitNotFound, fmt.Errorf("%s: command not found in the sandbox", cmd)}
		}
		if err != nil {
			return &StartError{ExitCannotExec, fmt.Errorf("%s: cannot be executed: %w", cmd, err)}
		}
		return nil
	}
	var first error
	for _, dir := range strings.Split(pathOf(env), ":") {
		if dir == "" {
			dir = "."
		}
		err := checkExec(fd, path.Join("/", dir, cmd))
		if err == nil {
			return nil
		}
		if first == nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			first = err
		}
	}
	if first != nil {
		return &StartError{ExitCannotExec, fmt.Errorf("%s: cannot be executed: %w", cmd, first)}
	}
	return &StartError{ExitNotFound, fmt.Errorf("%s: command not found in the sandbox", cmd)}
}

// checkExec says whether p beneath the root descriptor is a file with an
// execute bit.
func checkExec(rootfd int, p string) error {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(rootfd, p, &how)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return unix.EISDIR
	case st.Mode&unix.S_IFMT != unix.S_IFREG, st.Mode&0o111 == 0:
		return unix.EACCES
	}
	return checkFormat(rootfd, p)
}

// checkFormat refuses, with ENOEXEC, a file that execve would refuse for
// its format: neither an ELF executable for this machine nor a script
// starting with "#!" (a shell would run such a file itself; the runtime's
// execve cannot, and its error would come from inside the container after
// CMD "started").
func checkFormat(rootfd int, p string) error {
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(rootfd, p, &how)
	if err != nil {
		return nil // let the runtime say what is wrong
	}
	defer unix.Close(fd)
	head := make([]byte, 20)
	n, _ := unix.Read(fd, head)
	head = head[:max(n, 0)]
	switch {
	case len(head) >= 2 && string(head[:2]) == "#!":
		return nil
	case len(head) >= 4 && string(head[:4]) == elf.ELFMAG:
		return checkELF(head)
	}
	return unix.ENOEXEC
}

// hostMachines are the ELF machines this kernel runs, by GOARCH: an amd64
// kernel also runs i386 binaries (IA32 emulation, on in Debian's kernels).
var hostMachines = map[string][]elf.Machine{
	"amd64":   {elf.EM_X86_64, elf.EM_386},
	"386":     {elf.EM_386},
	"arm64":   {elf.EM_AARCH64, elf.EM_ARM},
	"arm":     {elf.EM_ARM},
	"riscv64": {elf.EM_RISCV},
	"ppc64le": {elf.EM_PPC64},
	"s390x":   {elf.EM_S390},
}

// checkELF refuses, with ENOEXEC, an ELF header execve would refuse: not
// an executable or shared object, or built for another machine. A header
// too short to tell is left to the runtime.
func checkELF(head []byte) error {
	if len(head) < 20 {
		return unix.ENOEXEC
	}
	var order binary.ByteOrder
	switch elf.Data(head[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		order = binary.BigEndian
	default:
		return unix.ENOEXEC
	}
	switch elf.Type(order.Uint16(head[16:18])) {
	case elf.ET_EXEC, elf.ET_DYN:
	default:
		return fmt.Errorf("%w (an ELF file that is not a program)", unix.ENOEXEC)
	}
	m := elf.Machine(order.Uint16(head[18:20]))
	known, ok := hostMachines[runtime.GOARCH]
	if !ok || slices.Contains(known, m) {
		return nil
	}
	return fmt.Errorf("%w (a program for %s, this machine runs %s)", unix.ENOEXEC, machineName(m), runtime.GOARCH)
}

// machineName names an ELF machine the way users know it.
func machineName(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "x86-64"
	case elf.EM_386:
		return "i386"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		return "riscv"
	}
	return strings.TrimPrefix(m.String(), "EM_")
}

// pathOf returns the PATH of env, or the default one.
func pathOf(env []string) string {
	for _, v := range env {
		if p, ok := strings.CutPrefix(v, "PATH="); ok {
			return p
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// runtimeFailure reads the runtime's JSON log (--log-format json) after it
// exited non-zero: an error entry there means the runtime failed before CMD
// started (CMD cannot write to the bundle), classified by its message. No
// error entry means the status is CMD's own.
func runtimeFailure(logPath string) error {
	f, err := os.Open(logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var msg string
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		var l struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Level == "error" || l.Level == "fatal") && msg == "" {
			msg = l.Msg
		}
	}
	if msg == "" {
		return nil
	}
	msg = strings.TrimPrefix(msg, "runc run failed: ")
	code := ExitNotStarted
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		code = ExitNotFound
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"):
		code = ExitCannotExec
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return &StartError{code, fmt.Errorf("the runtime failed before CMD started: %s", msg)}
}
