package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var kinds = []string{KindOverlay, KindNative}

// requireRoot fails the test loudly: these tests mount filesystems and run
// the real snapshotters, which needs root. CI runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (real overlay and bind mounts, chown in imports); run it as root")
	}
}

func openManager(t *testing.T, kind string) (*Manager, string) {
	t.Helper()
	requireRoot(t)
	state := t.TempDir()
	m, err := Open(context.Background(), filepath.Join(state, "snapshots", kind), kind, 5*time.Second)
	if err != nil {
		t.Fatalf("Open(%s): %v", kind, err)
	}
	t.Cleanup(func() {
		if mps, _ := MountsUnder(state); len(mps) > 0 {
			for i := len(mps) - 1; i >= 0; i-- {
				_ = Unmount(mps[i])
			}
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m, state
}

func findBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("busybox not found: apt-get install -y busybox-static")
	return ""
}

// busyboxRootfs builds a small real root filesystem: busybox with its
// applets, /etc, a home with Documents, /root, /tmp, an absolute symlink, a
// hard link, a fifo and a setuid file.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	bb := findBusybox(t)
	for _, d := range []string{"bin", "etc", "home/user/Documents", "root", "tmp", "proc", "dev", "usr/bin", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Chmod(filepath.Join(root, "root"), 0o700))
	must(t, os.Chmod(filepath.Join(root, "tmp"), 0o777|fs.ModeSticky))
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755))
	out, err := exec.Command(bb, "--list").Output()
	must(t, err)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		must(t, os.Symlink("busybox", filepath.Join(root, "bin", applet)))
	}
	files := map[string]string{
		"etc/passwd":                       "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":                        "root:x:0:\nuser:x:1000:\n",
		"etc/hostname":                     "sandbox\n",
		"home/user/Documents/notes.txt":    "my notes\n",
		"home/user/Documents/report.md":    strings.Repeat("report line\n", 1000),
		"home/user/.profile":               "export PS1='$ '\n",
		"usr/bin/setuid-tool":              "#!/bin/sh\n",
		"var/log/empty.log":                "",
		"home/user/Documents/sub/deep.txt": "deep\n",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
	must(t, os.Chmod(filepath.Join(root, "usr/bin/setuid-tool"), 0o755|fs.ModeSetuid))
	must(t, os.Chown(filepath.Join(root, "home/user"), 1000, 1000))
	must(t, os.Chown(filepath.Join(root, "home/user/Documents/notes.txt"), 1000, 1000))
	must(t, os.Symlink("/proc/mounts", filepath.Join(root, "etc/mtab")))
	must(t, os.Symlink("../../bin/busybox", filepath.Join(root, "usr/bin/env")))
	must(t, os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hostname.link")))
	must(t, syscall.Mkfifo(filepath.Join(root, "var/log/fifo"), 0o600))
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tarOf writes dir as a tar in the style of GNU tar ("./" names, hard links
// as links), gzip-compressed when gz.
func tarOf(t *testing.T, dir string, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	seen := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if rel == "." {
			hdr.Name = "./"
		} else if fi.IsDir() {
			hdr.Name += "/"
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := seen[st.Ino]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				hdr.Size = 0
			} else {
				seen[st.Ino] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	must(t, err)
	must(t, tw.Close())
	if zw != nil {
		must(t, zw.Close())
	}
	return buf.Bytes()
}

// treeHash describes every entry under root (not root itself): name, mode,
// owner, and the symlink target, device number or content hash.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", l)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %d %x", len(data), sha256.Sum256(data))
		case fi.Mode()&fs.ModeDevice != 0:
			fmt.Fprintf(&b, " dev %d", st.Rdev)
		}
		b.WriteByte('\n')
		return nil
	})
	must(t, err)
	return b.String()
}

func sameTree(t *testing.T, what, want, got string) {
	t.Helper()
	if want == got {
		return
	}
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Fatalf("%s: trees differ at line %d:\nwant %q\n got %q", what, i, w, g)
		}
	}
}

// chrootSh runs a busybox shell command inside root.
func chrootSh(t *testing.T, root, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/usr/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: sh -c %q: %v\n%s", root, script, err, out)
	}
	return string(out)
}
