package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// countTree counts the non-directories and the bytes of regular files under
// root, a tree Import just wrote, without following symlinks, and digests
// it (ImportStats.Digest): every entry's path, type and mode, owner, size,
// device number, link target and content, in path order. Two hosts that
// import the same source get the same digest; a source that differs in any
// byte of content or metadata other than times and extended attributes
// gets another.
func countTree(ctx context.Context, root string) (ImportStats, error) {
	var st ImportStats
	r, err := os.OpenRoot(root)
	if err != nil {
		return st, fmt.Errorf("counting the imported files: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // an interrupt stops the count too
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := digestEntry(h, r, rel, fi); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		st.Files++
		if d.Type().IsRegular() {
			st.Bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return ImportStats{}, fmt.Errorf("counting the imported files: %w", err)
	}
	st.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// digestEntry adds one entry of the tree (rel, as Lstat saw it) to h.
func digestEntry(h hash.Hash, r *os.Root, rel string, fi fs.FileInfo) error {
	var uid, gid uint32
	var rdev uint64
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid, rdev = s.Uid, s.Gid, s.Rdev
	}
	var extra string
	switch {
	case fi.Mode().IsRegular():
		f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		extra, err = contentDigest(f, fi.Size())
		f.Close()
		if err != nil {
			return err
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := r.Readlink(rel)
		if err != nil {
			return err
		}
		extra = t
	}
	// Lengths first: no path or target can pass for another's fields.
	_, err := fmt.Fprintf(h, "%d:%s %o %d %d %d %d %d:%s\n", len(rel), rel, uint32(fi.Mode()), uid, gid, fi.Size()*btoi(!fi.IsDir()), rdev, len(extra), extra)
	return err
}

// btoi is 1 for true: a directory's size depends on the filesystem, not
// on what it holds.
func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// digestBlock is the block contentDigest hashes content in.
const digestBlock = 1 << 20

// contentDigest digests size bytes of f: the sha256 of the sha256 of each
// block of digestBlock bytes (the last one shorter). A block that lies in
// a hole is not read: its digest is that of as many zeros, which is what
// reading it would give, so a sparse file and the same bytes written out
// digest alike, and a sparse image of terabytes costs no more than its data.
func contentDigest(f *os.File, size int64) (string, error) {
	fd := int(f.Fd())
	all := sha256.New()
	buf := make([]byte, digestBlock)
	zeros := map[int64][]byte{}
	var data, dataEnd int64 = -1, -1 // the data extent at or after the offset
	for off := int64(0); off < size; off += digestBlock {
		n := min(int64(digestBlock), size-off)
		if off >= dataEnd && data < size {
			var err error
			if data, dataEnd, err = nextData(fd, off, size); err != nil {
				return "", err
			}
		}
		if data >= off+n {
			z, ok := zeros[n]
			if !ok {
				s := sha256.Sum256(make([]byte, n))
				z = s[:]
				zeros[n] = z
			}
			all.Write(z)
			continue
		}
		if _, err := io.ReadFull(io.NewSectionReader(f, off, n), buf[:n]); err != nil {
			return "", fmt.Errorf("%s: %w", f.Name(), err)
		}
		s := sha256.Sum256(buf[:n])
		all.Write(s[:])
	}
	return hex.EncodeToString(all.Sum(nil)), nil
}

// nextData returns the extent of data at or after off (SEEK_DATA,
// SEEK_HOLE); past the data, both are size. A filesystem without holes
// answers with the whole rest of the file.
func nextData(fd int, off, size int64) (int64, int64, error) {
	d, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil
	}
	if err != nil {
		return off, size, nil // no SEEK_DATA here: read everything
	}
	h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
	if err != nil {
		return d, size, nil
	}
	return d, h, nil
}
