// Package testrootfs builds a small real busybox root filesystem for tests.
package testrootfs

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Busybox is where Debian's busybox-static installs the static binary.
const Busybox = "/bin/busybox"

// Build writes a busybox rootfs into dir: /bin/busybox with a symlink per
// applet, /etc with passwd, group and hosts, /root with a .profile, /home/user
// with Documents and a .bashrc, /tmp, and /docs -> /home/user/Documents. It fails with a hint when busybox-static
// is not installed.
func Build(dir string) error {
	if _, err := os.Stat(Busybox); err != nil {
		return fmt.Errorf("%s missing: apt-get install -y busybox-static", Busybox)
	}
	out, err := exec.Command(Busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/user/Documents", "tmp", "proc", "sys", "dev", "var/log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		return err
	}
	if err := copyFile(Busybox, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" {
			continue
		}
		p := filepath.Join(dir, applet)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":                     "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":                      "root:x:0:\nuser:x:1000:\n",
		"etc/hosts":                      "127.0.0.1 localhost\n",
		"etc/hostname":                   "sandbox\n",
		"root/.profile":                  "export PS1='# '\n",
		"home/user/.bashrc":              "# user shell start-up\n",
		"home/user/Documents/readme.txt": "A document that came with the image.\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	// A directory symlink, as images have (/home -> /var/home and the like).
	if err := os.Symlink("/home/user/Documents", filepath.Join(dir, "docs")); err != nil && !os.IsExist(err) {
		return err
	}
	return os.Chown(filepath.Join(dir, "home/user"), 1000, 1000)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
