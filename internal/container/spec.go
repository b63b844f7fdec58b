package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Network modes of a run.
const (
	NetNone = "none" // a network namespace of its own, loopback only
	NetHost = "host" // the host's network namespace
)

// Process is what to run and how.
type Process struct {
	RootFS   string   // the sandbox's mounted root
	Args     []string // CMD and its arguments
	User     string   // "UID" or "UID:GID"; "" is root
	Net      string   // NetNone ("" too) or NetHost
	TTY      bool     // give CMD a terminal (stdin must be one)
	Hostname string   // the container's hostname
	Cgroup   string   // the cgroup path; "" is /spillway/<id>
	Env      []string // K=V for CMD, after (and over) HOME and TERM
	Workdir  string   // CMD's working directory, absolute; "" is /

	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// namespace is the containerd namespace pkg/oci wants in its context; it
// names the cgroup parent (/spillway/<id>).
const namespace = "spillway"

// Dropped are the capabilities of containerd's (and Docker's) default set
// that a run does not get. CAP_MKNOD: a device node made inside a sandbox is
// a way to a host device for whatever opens it later (docs/run.md).
var Dropped = []string{"CAP_MKNOD"}

// Spec generates the OCI runtime spec of p for the container id: containerd's
// defaults (mount, pid, ipc, uts and network namespaces, capabilities less
// Dropped, no_new_privs, masked and read-only paths) plus its default seccomp
// profile.
func Spec(ctx context.Context, id string, p Process) (*specs.Spec, error) {
	if len(p.Args) == 0 {
		return nil, errors.New("no command to run")
	}
	uid, gid, home, err := resolveUser(p.RootFS, p.User)
	if err != nil {
		return nil, err
	}
	env := []string{"HOME=" + home}
	if p.TTY {
		term := os.Getenv("TERM")
		if term == "" {
			term = "xterm"
		}
		env = append(env, "TERM="+term)
	}
	env = append(env, p.Env...)
	cwd := "/"
	if p.Workdir != "" {
		cwd = p.Workdir
	}
	opts := []oci.SpecOpts{
		oci.WithRootFSPath(p.RootFS),
		oci.WithProcessArgs(p.Args...),
		oci.WithProcessCwd(cwd),
		oci.WithDefaultPathEnv,
		oci.WithEnv(env),
		oci.WithUIDGID(uid, gid),
	}
	if p.Hostname != "" {
		opts = append(opts, oci.WithHostname(p.Hostname))
	}
	if p.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if p.Cgroup != "" {
		opts = append(opts, oci.WithCgroup(p.Cgroup))
	}
	switch p.Net {
	case "", NetNone:
	case NetHost:
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	default:
		return nil, fmt.Errorf("unknown network mode %q: use none or host", p.Net)
	}
	// The seccomp profile depends on the capabilities: it comes last.
	opts = append(opts, withoutMissingRun(p.RootFS), oci.WithDroppedCapabilities(Dropped), seccomp.WithDefaultProfile())
	ctx = namespaces.WithNamespace(ctx, namespace)
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, opts...)
}

// ParseUser checks a --user value: "UID" or "UID:GID", numbers only.
func ParseUser(s string) (uid uint32, gid uint32, hasGID bool, err error) {
	u, g, hasGID := strings.Cut(s, ":")
	uid, err = parseID(u)
	if err == nil && hasGID {
		gid, err = parseID(g)
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("invalid user %q: use UID or UID:GID (numbers)", s)
	}
	return uid, gid, hasGID, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// resolveUser returns the ids and home directory of user. Without a GID, the
// group and home come from the sandbox's /etc/passwd (group 0 and home "/"
// when the uid is not listed there, as containerd does).
func resolveUser(rootfs, s string) (uid, gid uint32, home string, err error) {
	hasGID := false
	if s != "" {
		if uid, gid, hasGID, err = ParseUser(s); err != nil {
			return 0, 0, "", err
		}
	}
	g, home, found, err := lookupPasswd(rootfs, uid)
	if err != nil {
		return 0, 0, "", fmt.Errorf("read the sandbox's /etc/passwd: %w", err)
	}
	if found && !hasGID {
		gid = g
	}
	if !strings.HasPrefix(home, "/") {
		home = "/"
	}
	return uid, gid, home, nil
}

// lookupPasswd finds uid in the sandbox's /etc/passwd. The file is the
// sandbox's, so hostile: it is opened inside the root (never through a link
// out of it), without blocking on a FIFO, only if regular, and read up to
// 1 MiB. A passwd that cannot be read that way lists no users.
func lookupPasswd(rootfs string, uid uint32) (gid uint32, home string, found bool, err error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return 0, "", false, err
	}
	defer root.Close()
	f, err := root.OpenFile("etc/passwd", os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, "", false, nil // missing, or a link out of the root: no users
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0, "", false, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return 0, "", false, err
	}
	want := strconv.FormatUint(uint64(uid), 10)
	for line := range strings.SplitSeq(string(data), "\n") {
		// name:password:uid:gid:gecos:home:shell
		fields := strings.Split(line, ":")
		if len(fields) < 6 || fields[2] != want {
			continue
		}
		g, err := parseID(fields[3])
		if err != nil {
			continue
		}
		return g, fields[5], true, nil
	}
	return 0, "", false, nil
}

// withoutMissingRun drops the /run tmpfs when the image has no /run, so
// that the runtime does not create the directory in the sandbox (a change
// every close would then report).
func withoutMissingRun(rootfs string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if fi, err := os.Lstat(rootfs + "/run"); err == nil && fi.IsDir() {
			return nil
		}
		kept := s.Mounts[:0]
		for _, m := range s.Mounts {
			if m.Destination != "/run" {
				kept = append(kept, m)
			}
		}
		s.Mounts = kept
		return nil
	}
}
