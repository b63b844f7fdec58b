package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/vm/proto"
)

const (
	newRoot = "/newroot"
	scratch = "/scratch"
)

// mountScratch mounts the scratch disk, which the host formatted empty.
func mountScratch() error {
	dev, err := disk(proto.SerialScratch)
	if err != nil {
		return err
	}
	os.MkdirAll(scratch, 0o755)
	if err := unix.Mount(dev, scratch, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount scratch disk: %v", err)
	}
	return nil
}

// mountRoot stacks the read-only lower disks and the scratch disk's upper
// layer with overlay at /newroot, or mounts the virtiofs share there.
func (g *guest) mountRoot() error {
	os.MkdirAll(newRoot, 0o755)
	if g.req.Share == proto.ShareVirtiofs {
		var err error
		for i := 0; i < 200; i++ {
			if err = unix.Mount(proto.VirtiofsTag, newRoot, "virtiofs", 0, ""); err == nil {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return fmt.Errorf("mount virtiofs: %v", err)
	}
	if err := mountScratch(); err != nil {
		return err
	}
	var lowers []string
	for i := 0; i < g.req.Lowers; i++ {
		serial := fmt.Sprintf("%s%d", proto.SerialLower, i)
		dev, err := disk(serial)
		if err != nil {
			return err
		}
		dir := "/lower/" + serial
		os.MkdirAll(dir, 0o755)
		if err := mountRO(dev, dir); err != nil {
			return fmt.Errorf("mount %s: %v", serial, err)
		}
		lowers = append(lowers, dir)
	}
	if len(lowers) == 0 {
		os.MkdirAll("/lower/empty", 0o755)
		lowers = []string{"/lower/empty"}
	}
	for _, d := range []string{scratch + "/upper", scratch + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + scratch + "/upper,workdir=" + scratch + "/work" +
		",redirect_dir=off,index=off,metacopy=off,xino=off"
	if err := unix.Mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay: %v", err)
	}
	// The lowers stacked alone, for diff (overlay needs two to stack).
	view := lowers[0]
	if len(lowers) > 1 {
		os.MkdirAll(lowerView, 0o755)
		if err := unix.Mount("overlay", lowerView, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")+",redirect_dir=off,index=off,metacopy=off,xino=off"); err == nil {
			view = lowerView
		}
	}
	g.openDiff(view)
	return nil
}

// mountRO mounts a lower disk read-only: erofs, or ext4 as a fallback.
func mountRO(dev, dir string) error {
	err := unix.Mount(dev, dir, "erofs", unix.MS_RDONLY, "")
	if err != nil {
		if err2 := unix.Mount(dev, dir, "ext4", unix.MS_RDONLY, "noload"); err2 == nil {
			return nil
		}
	}
	return err
}

// mountInner gives the root /proc, /sys and a minimal /dev: no disks, no
// ports, only the usual character devices and a devpts.
func mountInner() error {
	for _, d := range []string{"proc", "sys", "dev", "tmp"} {
		os.Mkdir(newRoot+"/"+d, 0o755)
	}
	if err := unix.Mount("proc", newRoot+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %v", err)
	}
	if err := unix.Mount("sys", newRoot+"/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount /sys: %v", err)
	}
	dev := newRoot + "/dev"
	if err := unix.Mount("dev", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount /dev: %v", err)
	}
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		unix.Mknod(dev+"/"+n.name, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor)))
		unix.Chmod(dev+"/"+n.name, 0o666)
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"} {
		os.Symlink(target, dev+"/"+name)
	}
	os.Mkdir(dev+"/pts", 0o755)
	os.Mkdir(dev+"/shm", 0o1777)
	if err := unix.Mount("devpts", dev+"/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mount /dev/pts: %v", err)
	}
	return nil
}

// unmountRoot undoes mountRoot and mountInner; what CMD mounted goes too.
func unmountRoot() error {
	mounts, _ := os.ReadFile("/proc/self/mounts")
	var below []string
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.HasPrefix(f[1], newRoot+"/") {
			below = append(below, f[1])
		}
	}
	for i := len(below) - 1; i >= 0; i-- {
		unix.Unmount(below[i], unix.MNT_DETACH)
	}
	return unix.Unmount(newRoot, 0)
}
