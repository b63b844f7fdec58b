package persist

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/exceptions"
	"github.com/spillway/spillway/snapshot"
	"github.com/spillway/spillway/store"
)

// smallDisk mounts a fresh 64 MiB ext4 filesystem (no blocks reserved for
// root) from a loop image and returns its mount point.
func smallDisk(t *testing.T) string {
	t.Helper()
	return smallDiskOf(t, 64<<20, "0")
}

// smallDiskOf is smallDisk of size bytes with reserved percent of its
// blocks reserved for root (mkfs.ext4 -m).
func smallDiskOf(t *testing.T, size int64, reserved string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the full-disk test mounts a loop filesystem and needs root (CI runs it as root)")
	}
	d := t.TempDir()
	img, mnt := filepath.Join(d, "fs.img"), filepath.Join(d, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	fimg, err := os.Create(img)
	must(t, err)
	must(t, fimg.Truncate(size))
	must(t, fimg.Close())
	if out, err := exec.Command("mkfs.ext4", "-q", "-m", reserved, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (package e2fsprogs): %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for _, m := range mustMounts(t, mnt) {
			snapshot.Unmount(m)
		}
		// The background removal of a rolled-back root may still be at
		// work inside: wait for it rather than leave the loop mounted.
		for i := 0; exec.Command("umount", mnt).Run() != nil; i++ {
			if i == 100 {
				t.Errorf("%s stays mounted", mnt)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return mnt
}

// fillDisk writes into dir (inside an open sandbox) until the filesystem is
// full: large writes first, then small files for the last blocks.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	must(t, err)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	for i := 0; ; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("fill%d", i)), buf[:4096], 0o644); err != nil {
			break
		}
	}
	if free, _ := store.FreeBytes(dir); free > 64<<10 {
		t.Fatalf("disk not full: %d bytes free", free)
	}
}

// smallDiskFixture is a state directory on a small disk (smallDisk) with
// image base and sandbox docs.
func smallDiskFixture(t *testing.T) *fixture {
	t.Helper()
	return diskFixture(t, smallDisk(t))
}

// diskFixture is smallDiskFixture on the filesystem mounted at mnt.
func diskFixture(t *testing.T, mnt string) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: context.Background(), dir: mnt, canaryPath: filepath.Join(mnt, "canary"), canary: []byte("canary")}
	f.openEnv(snapshot.KindOverlay)
	t.Cleanup(func() {
		if f.e != nil {
			f.e.Close()
		}
	})
	if _, err := f.e.ImportImage(f.ctx, "base", snapshot.Source{Dir: busyboxRootfs(t)}); err != nil {
		t.Fatal(err)
	}
	must(t, f.e.CreateSandbox("docs", "base"))
	return f
}

// A sandbox that fills the filesystem of the state directory: close still
// rolls it back, refusing what it has no room for (no-space), keeping what
// earlier closes committed; the next close works. Without the ballast the
// store refuses to open (an error, not a crash) and close works once space
// is freed.
func TestCloseOnAFullDisk(t *testing.T) {
	f := smallDiskFixture(t)
	f.except(nil, "/home/user/Documents/**")
	docs := "home/user/Documents"

	// Session 1 commits a document.
	root := f.open()
	write(t, root, docs+"/keep.txt", "committed", 0o644)
	if sum := f.close(); !persisted(sum, "/home/user/Documents/keep.txt") {
		t.Fatalf("keep.txt not persisted: %+v", sum)
	}

	// Session 2 fills the disk; the close runs as a new command would.
	root = f.open()
	write(t, root, docs+"/a.txt", "new", 0o644)
	must(t, f.e.Close())
	f.e = nil
	fillDisk(t, filepath.Join(root, docs))
	f.openEnv("")
	sum := f.close()
	if got := refusal(sum, "/home/user/Documents/big.bin"); got != RefuseNoSpace {
		t.Errorf("big.bin: refusal %q, want %s", got, RefuseNoSpace)
	}
	// a.txt fits beside the store's reserve, or not: it is never lost
	// silently.
	if got := refusal(sum, "/home/user/Documents/a.txt"); got != RefuseNoSpace && !persisted(sum, "/home/user/Documents/a.txt") {
		t.Errorf("a.txt neither persisted nor refused no-space: %q", got)
	}
	// The rollback frees the sandbox's space once the background rm of the
	// old root is done.
	waitEmpty(t, f.e.TrashDir())
	// The rollback freed the sandbox's space; what was committed is there.
	root = f.open()
	if b, err := os.ReadFile(filepath.Join(root, docs, "keep.txt")); err != nil || string(b) != "committed" {
		t.Fatalf("keep.txt after the full-disk close: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, docs, "big.bin")); !os.IsNotExist(err) {
		t.Fatalf("big.bin survived the rollback: %v", err)
	}
	write(t, root, docs+"/after.txt", "after", 0o644)
	if sum := f.close(); !persisted(sum, "/home/user/Documents/after.txt") {
		t.Fatalf("the next close persisted nothing: %+v", sum)
	}

	// The next command with room to spare makes the ballast again.
	f.reopenEnv()
	if _, err := os.Lstat(filepath.Join(f.dir, "state", "store", "spillway-ballast")); err != nil {
		t.Fatalf("ballast not made again: %v", err)
	}

	// Without the ballast, a full disk stops the store from opening (badger
	// would die of SIGBUS writing its memtable map): a clear error, the
	// sandbox stays open, and close works once space is freed.
	root = f.open()
	must(t, f.e.Close())
	f.e = nil
	must(t, os.Remove(filepath.Join(f.dir, "state", "store", "spillway-ballast")))
	fillDisk(t, filepath.Join(root, "tmp"))
	_, err := OpenEnv(f.ctx, Options{Root: filepath.Join(f.dir, "state")})
	if !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("open on a full disk without ballast: %v, want ErrNoSpace", err)
	}
	must(t, os.Remove(filepath.Join(root, "tmp", "big.bin")))
	f.openEnv("")
	f.close()
	root = f.open()
	for _, p := range []string{"keep.txt", "after.txt"} {
		if _, err := os.Stat(filepath.Join(root, docs, p)); err != nil {
			t.Fatalf("%s lost: %v", p, err)
		}
	}
	f.close()
}

// waitEmpty waits until dir is empty or gone.
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	for range 300 {
		if ents, err := os.ReadDir(dir); err != nil || len(ents) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not emptied in 30 s", dir)
}

// A sparse file larger than the free space, with a few bytes of data:
// close persists it (its blob takes what the file takes on disk, not its
// size), and the next open has it, as sparse, with its bytes.
func TestCloseSparseFileLargerThanTheDisk(t *testing.T) {
	f := smallDiskFixture(t)
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 1 << 30; x.Limits.MaxBytes = 1 << 30 }, "/home/user/Documents/**")
	root := f.open()
	p := filepath.Join(root, "home/user/Documents/disk.img")
	fd, err := os.Create(p)
	must(t, err)
	must(t, fd.Truncate(256<<20)) // four times the disk
	_, err = fd.WriteAt([]byte("end"), 256<<20-3)
	must(t, err)
	must(t, fd.Close())
	if sum := f.close(); !persisted(sum, "/home/user/Documents/disk.img") {
		t.Fatalf("a 256 MiB sparse file on a 64 MiB disk not persisted: %+v", sum)
	}
	root = f.open()
	b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/disk.img"))
	if err != nil || len(b) != 256<<20 || string(b[len(b)-3:]) != "end" {
		t.Fatalf("the next session's disk.img: %d bytes, %v", len(b), err)
	}
	f.close()
}

// TestOpenOnAFullDiskOpensNothing: an open whose layer has no room for a
// persisted file fails, opens nothing and commits no layer; once space is
// freed the next open has the file. Before, the open succeeded without
// the file (a warning), and every later open of the generation reused
// that layer, even with space again.
func TestOpenOnAFullDiskOpensNothing(t *testing.T) {
	// 128 MiB: the file (24 MiB) is larger than what is left (2 MiB) and
	// the store's ballast (16 MiB) that a reopen of the store frees.
	f := diskFixture(t, smallDiskOf(t, 128<<20, "0"))
	f.except(func(x *exceptions.Exception) { x.Limits.MaxFileSize = 1 << 30; x.Limits.MaxBytes = 1 << 30 }, "/home/user/Documents/**")
	root := f.open()
	data := make([]byte, 24<<20)
	rand.Read(data)
	must(t, os.MkdirAll(filepath.Join(root, "home/user/Documents"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "home/user/Documents/big.bin"), data, 0o644))
	if sum := f.close(); !persisted(sum, "/home/user/Documents/big.bin") {
		t.Fatalf("big.bin not persisted: %+v", sum)
	}
	// The next open builds its layer from the blobs (a cached layer, or
	// the session's upper directory made one, would need no room).
	sb, err := f.e.getSandbox("docs")
	must(t, err)
	must(t, f.e.dropLayers(f.ctx, sb))
	waitEmpty(t, f.e.TrashDir()) // the old root's space comes back in the background
	// Leave the layer 2 MiB: less than the file.
	free, err := store.FreeBytes(f.dir)
	must(t, err)
	filler := filepath.Join(f.dir, "filler")
	must(t, exec.Command("fallocate", "-l", fmt.Sprint(free-2<<20), filler).Run())
	_, err = f.e.OpenSandbox(f.ctx, "docs")
	if err == nil || !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "big.bin") {
		t.Fatalf("open with no room for big.bin: %v, want a no-space error naming it", err)
	}
	if sb, err := f.e.getSandbox("docs"); err != nil || sb.State != store.StateClosed {
		t.Fatalf("after the failed open: %+v, %v; want it closed", sb, err)
	}
	must(t, os.Remove(filler))
	root = f.open()
	b, err := os.ReadFile(filepath.Join(root, "home/user/Documents/big.bin"))
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("big.bin after space was freed: %d bytes, %v", len(b), err)
	}
	f.close()
}

// TestCloseOnAFullDiskWithRootReserve: on ext4 with its default 5%
// reserved for root, a sandbox that fills the disk is still rolled back:
// the store opens in the reserve, which is spillway's (root's) to use.
// Before, the ballast's 16 MiB went back into the reserve, "available"
// stayed 0, and close and rm --force were refused: the only way out was to
// delete files inside the sandbox.
func TestCloseOnAFullDiskWithRootReserve(t *testing.T) {
	f := diskFixture(t, smallDiskOf(t, 400<<20, "5"))
	f.except(nil, "/home/user/Documents/**")
	root := f.open()
	write(t, root, "home/user/Documents/keep.txt", "committed", 0o644)
	must(t, f.e.Close())
	f.e = nil
	fillDisk(t, filepath.Join(root, "tmp"))
	var st unix.Statfs_t
	must(t, unix.Statfs(f.dir, &st))
	if st.Bavail != 0 {
		t.Fatalf("disk not full: %d blocks available", st.Bavail)
	}
	f.openEnv("")
	sum := f.close()
	// Persisted, or refused no-space and kept for recovery: never lost.
	if got := refusal(sum, "/home/user/Documents/keep.txt"); got != RefuseNoSpace && !persisted(sum, "/home/user/Documents/keep.txt") {
		t.Fatalf("keep.txt neither persisted nor refused no-space: %q", got)
	}
	waitEmpty(t, f.e.TrashDir())
	root = f.open()
	if _, err := os.Stat(filepath.Join(root, "tmp", "big.bin")); !os.IsNotExist(err) {
		t.Fatalf("the filler survived the rollback: %v", err)
	}
	write(t, root, "home/user/Documents/after.txt", "after", 0o644)
	if sum := f.close(); !persisted(sum, "/home/user/Documents/after.txt") {
		t.Fatalf("the next close persisted nothing: %+v", sum)
	}
}
