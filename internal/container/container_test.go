package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func rootfs(t *testing.T, passwd string) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func namespaceTypes(s *specs.Spec) []specs.LinuxNamespaceType {
	var out []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		out = append(out, ns.Type)
	}
	return out
}

func TestSpecDefaults(t *testing.T) {
	root := rootfs(t, "root:x:0:0:root:/root:/bin/sh\n")
	s, err := Spec(context.Background(), "spillway-docs-1", Process{RootFS: root, Args: []string{"sh", "-c", "true"}, Hostname: "docs"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.MountNamespace, specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace} {
		if !slices.Contains(namespaceTypes(s), want) {
			t.Errorf("no %s namespace in %v", want, namespaceTypes(s))
		}
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("no default seccomp profile: %+v", s.Linux.Seccomp)
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") || !s.Process.NoNewPrivileges {
		t.Errorf("capabilities %v, no new privileges %v", s.Process.Capabilities.Bounding, s.Process.NoNewPrivileges)
	}
	// Docker's default set less CAP_MKNOD, in every set (docs/run.md).
	kept := []string{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if got := slices.Sorted(slices.Values(set)); !slices.Equal(got, kept) {
			t.Errorf("%s capabilities %v, want %v", name, got, kept)
		}
	}
	if slices.Contains(c.Inheritable, "CAP_MKNOD") || slices.Contains(c.Ambient, "CAP_MKNOD") {
		t.Errorf("CAP_MKNOD inheritable %v or ambient %v", c.Inheritable, c.Ambient)
	}
	if s.Root.Path != root || s.Hostname != "docs" || s.Process.Terminal || s.Process.Cwd != "/" {
		t.Errorf("root %q hostname %q terminal %v cwd %q", s.Root.Path, s.Hostname, s.Process.Terminal, s.Process.Cwd)
	}
	if !slices.Contains(s.Process.Env, "HOME=/root") {
		t.Errorf("env %v", s.Process.Env)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/run" {
			t.Errorf("a /run mount although the image has no /run: the runtime would create it in the sandbox")
		}
	}
}

func TestSpecHostNetworkAndTTY(t *testing.T) {
	s, err := Spec(context.Background(), "x", Process{RootFS: rootfs(t, ""), Args: []string{"sh"}, Net: NetHost, TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(namespaceTypes(s), specs.NetworkNamespace) {
		t.Errorf("--net host kept a network namespace: %v", namespaceTypes(s))
	}
	if !s.Process.Terminal {
		t.Error("no terminal")
	}
	if _, err := Spec(context.Background(), "x", Process{RootFS: rootfs(t, ""), Args: []string{"sh"}, Net: "bridge"}); err == nil {
		t.Error("unknown network mode accepted")
	}
}

func TestSpecUser(t *testing.T) {
	root := rootfs(t, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1001:u:/home/user:/bin/sh\n")
	for _, c := range []struct {
		user          string
		uid, gid      uint32
		home, wantErr string
	}{
		{"", 0, 0, "/root", ""},
		{"1000", 1000, 1001, "/home/user", ""},
		{"1000:7", 1000, 7, "/home/user", ""},
		{"4242", 4242, 0, "/", ""},
		{"bob", 0, 0, "", `invalid user "bob"`},
		{"1:x", 0, 0, "", `invalid user "1:x"`},
	} {
		s, err := Spec(context.Background(), "x", Process{RootFS: root, Args: []string{"id"}, User: c.user})
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("user %q: error %v, want %q", c.user, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("user %q: %v", c.user, err)
		}
		u := s.Process.User
		if u.UID != c.uid || u.GID != c.gid || !slices.Contains(s.Process.Env, "HOME="+c.home) {
			t.Errorf("user %q: uid %d gid %d env %v, want %d %d %s", c.user, u.UID, u.GID, s.Process.Env, c.uid, c.gid, c.home)
		}
	}
}

// The sandbox owns its /etc/passwd: a FIFO there must not hang spillway,
// and a link out of the root must not be followed.
func TestSpecHostilePasswd(t *testing.T) {
	root := rootfs(t, "")
	if err := unix.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Spec(context.Background(), "x", Process{RootFS: root, Args: []string{"id"}, User: "1000"})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Spec blocked on a FIFO at /etc/passwd")
	}

	root = rootfs(t, "")
	outside := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(outside, []byte("host:x:1000:99:h:/host:/bin/sh\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	s, err := Spec(context.Background(), "x", Process{RootFS: root, Args: []string{"id"}, User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.User.GID == 99 {
		t.Fatal("read /etc/passwd through a link out of the sandbox")
	}
}

func TestBookRegisterAndStale(t *testing.T) {
	ctx := context.Background()
	b := &Book{Dir: t.TempDir(), Runtime: "/nonexistent/runc"}
	e1, err := b.Register(ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	e2, err := b.Register(ctx, "docs")
	if err != nil {
		t.Fatal(err)
	}
	o, err := b.Register(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if e1.ID != "spillway-docs-1" || e2.ID != "spillway-docs-2" || o.ID != "spillway-other-1" {
		t.Fatalf("ids %s %s %s", e1.ID, e2.ID, o.ID)
	}
	live, err := b.Live(ctx, "docs")
	if err != nil || len(live) != 2 || live[0].ID != e1.ID || live[0].PID != os.Getpid() {
		t.Fatalf("live %+v, %v", live, err)
	}

	// The owner of e1 is gone (a pid of a process that has exited): e1 is
	// stale, and cleaned; its id is free again.
	stale := *e1
	stale.PIDStart++
	data, _ := json.Marshal(&stale)
	if err := os.WriteFile(b.entryPath(e1), data, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(b.bundle(e1), 0o700)
	live, err = b.Live(ctx, "docs")
	if err != nil || len(live) != 1 || live[0].ID != e2.ID {
		t.Fatalf("live %+v, %v", live, err)
	}
	if _, err := os.Lstat(b.bundle(e1)); !os.IsNotExist(err) {
		t.Fatalf("stale bundle left: %v", err)
	}
	e3, err := b.Register(ctx, "docs")
	if err != nil || e3.ID != "spillway-docs-1" {
		t.Fatalf("id %v, %v", e3, err)
	}
	for _, e := range []*Entry{e2, e3, o} {
		if err := b.Done(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if live, err := b.Live(ctx, "docs"); err != nil || len(live) != 0 {
		t.Fatalf("live %+v, %v", live, err)
	}
}
