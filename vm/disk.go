package vm

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// LowerDisk returns an erofs image of a committed snapshot directory (the
// image or a persisted layer), building it with mkfs.erofs on first use and
// caching it under <root>/vm/disks by the directory's identity. Nothing is
// mounted: mkfs.erofs reads the tree with lstat, never following links,
// and keeps owners, modes, whiteouts and overlay xattrs.
func LowerDisk(stateRoot, dir string) (path string, built bool, err error) {
	key, err := diskKey(dir)
	if err != nil {
		return "", false, fmt.Errorf("vm: disk of %s: %w", dir, err)
	}
	sum := sha256.Sum256([]byte(key))
	disks := filepath.Join(Dir(stateRoot), "disks")
	path = filepath.Join(disks, fmt.Sprintf("%x.erofs", sum[:12]))
	if _, err := os.Stat(path); err == nil {
		return path, false, nil
	}
	if err := os.MkdirAll(disks, 0o700); err != nil {
		return "", false, err
	}
	if err := buildErofs(path, dir); err != nil {
		return "", false, err
	}
	// The key beside the disk lets PruneDisks tell when its layer is gone.
	return path, true, writeAtomic(strings.TrimSuffix(path, ".erofs")+".key", []byte(key))
}

// diskKey is a snapshot directory's identity: its path, device, inode and
// change time. A removed and re-created snapshot gets another key.
func diskKey(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s\x00%d\x00%d\x00%d.%d", dir, st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// PruneDisks removes the cached disks whose snapshot directory is gone or
// is no longer the one they were built from (a closed session's layer).
func PruneDisks(stateRoot string) error {
	keys, err := filepath.Glob(filepath.Join(Dir(stateRoot), "disks", "*.key"))
	if err != nil {
		return err
	}
	for _, k := range keys {
		data, err := os.ReadFile(k)
		if err != nil {
			continue
		}
		dir, _, _ := strings.Cut(string(data), "\x00")
		if now, err := diskKey(dir); err == nil && now == string(data) {
			continue
		}
		os.Remove(strings.TrimSuffix(k, ".key") + ".erofs")
		os.Remove(k)
	}
	return nil
}

// TreeDisk builds an uncached erofs image of dir at dst (an open sandbox's
// upper layer, which changes between runs).
func TreeDisk(dst, dir string) error { return buildErofs(dst, dir) }

func buildErofs(dst, dir string) error {
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return errors.New("mkfs.erofs not found: install erofs-utils (apt-get install erofs-utils)")
	}
	tmp := dst + ".tmp"
	os.Remove(tmp)
	// mkfs.erofs (1.5) fails on a name of 255 bytes, which the host's
	// filesystems allow: such a file (a guest may have made one, and it
	// may persist) is left out of the disk, so that it does not stop every
	// later run --vm of its sandbox; the guest does not see it.
	out, err := exec.Command(mkfs, "--quiet", "--exclude-regex=[^/]{255}", tmp, dir).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("vm: mkfs.erofs %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, dst)
}

// ScratchDisk creates the sparse scratch disk the guest writes its upper
// layer to, formatted ext4 on the host while it is still empty (the host
// never mounts or checks it after the guest ran).
func ScratchDisk(path string, size int64) error {
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		return errors.New("mke2fs not found: install e2fsprogs")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-E", "lazy_journal_init=1", "-L", "scratch", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("vm: mke2fs scratch: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// isEmptyDir says whether dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, fs.ErrNotExist) || len(names) == 0 {
		return true, nil
	}
	return false, nil
}
