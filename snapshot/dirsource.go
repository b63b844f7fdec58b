package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/progress"
)

// dirSource applies a host directory through the same validator and
// applier as an archive, reading it through descriptors: each directory
// and file is opened from its parent's descriptor with O_NOFOLLOW and
// checked to be the inode that was listed, symlinks are copied, never
// followed, and sockets are skipped (as tar does). A regular file is read
// by its data extents (SEEK_DATA/SEEK_HOLE): its holes are handed over as
// zeros without reading, so they stay holes and are not charged.
type dirSource struct {
	a     *applier
	v     *validator
	links map[[2]uint64]string // (dev, inode) of files with several names → first name
	data  int64                // bytes read from data extents
}

// applyDir applies the directory dir (already free of symlinks) to root.
func applyDir(ctx context.Context, root, dir string, lim Limits, p progress.Progress, asRoot bool) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	d := &dirSource{links: map[[2]uint64]string{}}
	d.a, err = newApplier(root, asRoot, lim, func() int64 { return d.data })
	if err != nil {
		return err
	}
	defer d.a.close()
	d.v = &validator{symlinks: map[string]string{}, asRoot: asRoot, progress: progress.Or(p)}
	// The top's own metadata is not copied (nor was it by tar): the
	// image root keeps the snapshot's.
	if err := d.walk(ctx, fd, ""); err != nil {
		return err
	}
	return d.a.end(d.v)
}

// walk applies the entries of the directory open at fd, named rel ("" for
// the top).
func (d *dirSource) walk(ctx context.Context, fd int, rel string) error {
	dup, err := unix.Dup(fd) // an *os.File closes its descriptor
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dup), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading directory %q: %w", rel, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := n
		if rel != "" {
			name = rel + "/" + n
		}
		if err := d.child(ctx, fd, n, name); err != nil {
			return err
		}
	}
	return nil
}

// child applies the entry n of the directory open at fd; name is its path
// below the top.
func (d *dirSource) child(ctx context.Context, fd int, n, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return nil
	case unix.S_IFLNK:
		target, err := readlinkAt(fd, n)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		h := header(name, &st, tar.TypeSymlink)
		h.Linkname = target
		return d.entry(ctx, name, h, -1, nil)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		typ := map[uint32]byte{unix.S_IFCHR: tar.TypeChar, unix.S_IFBLK: tar.TypeBlock, unix.S_IFIFO: tar.TypeFifo}[st.Mode&unix.S_IFMT]
		h := header(name, &st, typ)
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		return d.entry(ctx, name, h, -1, nil)
	case unix.S_IFDIR:
		cfd, err := openSame(fd, n, unix.O_RDONLY|unix.O_DIRECTORY, &st)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer unix.Close(cfd)
		if err := d.entry(ctx, name, header(name, &st, tar.TypeDir), cfd, nil); err != nil {
			return err
		}
		return d.walk(ctx, cfd, name)
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := d.links[key]; ok {
			h := header(name, &st, tar.TypeLink)
			h.Linkname = first
			return d.entry(ctx, name, h, -1, nil)
		}
		if st.Nlink > 1 {
			d.links[key] = name
		}
		cfd, err := openSame(fd, n, unix.O_RDONLY|unix.O_NONBLOCK, &st)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer unix.Close(cfd)
		h := header(name, &st, tar.TypeReg)
		h.Size = st.Size
		return d.entry(ctx, name, h, cfd, &extentReader{fd: cfd, size: st.Size, data: &d.data})
	}
	return fmt.Errorf("%s: unsupported file type %#o", name, st.Mode&unix.S_IFMT)
}

// entry checks and applies one entry; xfd, when not -1, is where its
// extended attributes are read.
func (d *dirSource) entry(ctx context.Context, name string, h *tar.Header, xfd int, r io.Reader) error {
	if xfd >= 0 {
		if err := readXattrs(xfd, h); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	ok, err := d.v.check(h)
	if err != nil || !ok {
		return err
	}
	return d.a.apply(ctx, h, name, r)
}

// openSame opens n in dirfd without following a link and checks that it is
// the inode want describes.
func openSame(dirfd int, n string, flags int, want *unix.Stat_t) (int, error) {
	fd, err := unix.Openat(dirfd, n, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Dev != want.Dev || st.Ino != want.Ino {
		unix.Close(fd)
		return -1, errors.New("changed while it was read")
	}
	return fd, nil
}

func header(name string, st *unix.Stat_t, typ byte) *tar.Header {
	return &tar.Header{
		Name: name, Typeflag: typ, Mode: int64(st.Mode & 0o7777),
		Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime:    time.Unix(st.Mtim.Unix()),
		AccessTime: time.Unix(st.Atim.Unix()),
	}
}

func readlinkAt(fd int, n string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		k, err := unix.Readlinkat(fd, n, buf)
		if err != nil {
			return "", err
		}
		if k < size {
			return string(buf[:k]), nil
		}
	}
}

// readXattrs puts the extended attributes of fd into h as PAX records.
func readXattrs(fd int, h *tar.Header) error {
	sz, err := unix.Flistxattr(fd, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return err
	}
	buf := make([]byte, sz)
	sz, err = unix.Flistxattr(fd, buf)
	if err != nil {
		return err
	}
	for _, k := range splitNul(buf[:sz]) {
		vsz, err := unix.Fgetxattr(fd, k, nil)
		if err != nil {
			continue // gone, or not ours to read
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Fgetxattr(fd, k, v); err != nil {
			continue
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = string(v[:vsz])
	}
	return nil
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		b = b[min(i+1, len(b)):]
	}
	return out
}

// extentReader reads a file's first size bytes by its data extents: a hole
// reads as zeros without a read(2) and without adding to *data.
type extentReader struct {
	fd         int
	size, pos  int64
	dataEnd    int64 // the current data extent ends here (pos < dataEnd: in data)
	holeEnd    int64 // the current hole ends here (pos < holeEnd: in a hole)
	data       *int64
	noSeekData bool
}

func (r *extentReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.pos)]
	if r.pos >= r.dataEnd && r.pos >= r.holeEnd {
		r.locate()
	}
	if r.pos < r.holeEnd {
		k := min(int64(len(p)), r.holeEnd-r.pos)
		clear(p[:k])
		r.pos += k
		return int(k), nil
	}
	p = p[:min(int64(len(p)), r.dataEnd-r.pos)]
	n, err := unix.Pread(r.fd, p, r.pos)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("file shrank while it was read: %w", io.ErrUnexpectedEOF)
	}
	r.pos += int64(n)
	*r.data += int64(n)
	return n, nil
}

// locate finds whether pos is in data or in a hole, and where that ends.
func (r *extentReader) locate() {
	if !r.noSeekData {
		d, err := unix.Seek(r.fd, r.pos, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // no data after pos: a hole to the end
			r.holeEnd = r.size
			return
		case err == nil && d > r.pos:
			r.holeEnd = min(d, r.size)
			return
		case err == nil:
			if h, err := unix.Seek(r.fd, r.pos, unix.SEEK_HOLE); err == nil && h > r.pos {
				r.dataEnd = min(h, r.size)
				return
			}
		}
		r.noSeekData = true // not supported here: read it all as data
	}
	r.dataEnd = r.size
}
