package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// applier writes checked tar entries into a fresh directory through
// descriptors: every name is resolved one component at a time from the
// root's descriptor with O_NOFOLLOW, every node is created with an *at call
// (O_CREAT|O_EXCL|O_NOFOLLOW for files), and no host-side path string is
// ever joined and followed. Regular files are written sparse: a hole of a
// sparse entry, or an all-zero block, is skipped, not written.
//
// MaxBytes is charged, before writing, with the data the source carries
// for its files (zero or not: a gzip bomb of zeros stops there too); holes
// of sparse entries are free.
type applier struct {
	root   int // O_PATH descriptor of the tree
	asRoot bool
	lim    Limits
	// dataRead tells how many bytes of file data the source has read so
	// far: a read of file content that added none was all hole.
	dataRead func() int64

	written, logical, entries int64
	dirs                      []dirMeta
	dirIndex                  map[string]int
	buf                       []byte

	// The parent directory of the last entry, kept open: archives list
	// a directory's entries together.
	lastDir   string
	lastDirFd int
}

// dirMeta is a directory's metadata, applied when every entry is written
// (its children would change its mtime, and a read-only mode would stop
// them).
type dirMeta struct {
	name string
	hdr  *tar.Header
}

// blockSize is the unit of hole detection in written data.
const blockSize = 4096

var zeroBlock [blockSize]byte

// countingReader counts the bytes read from the archive stream. The tar
// reader reads file data straight from it and fills holes of sparse entries
// itself, so a read that consumed nothing from here was all hole.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func newApplier(root string, asRoot bool, lim Limits, dataRead func() int64) (*applier, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &applier{root: fd, asRoot: asRoot, lim: lim, dataRead: dataRead, dirIndex: map[string]int{}, buf: make([]byte, 1<<20), lastDirFd: -1}, nil
}

// end finishes the tree once every entry is applied: the directories'
// metadata, then every chain of symlinks that v recorded.
func (a *applier) end(v *validator) error {
	if err := a.finish(); err != nil {
		return err
	}
	if name, why := escaping(v.symlinks); name != "" {
		return &EntryError{Name: name, Reason: fmt.Sprintf("symlink to %q %s", v.symlinks[name], why)}
	}
	return nil
}

func (a *applier) close() {
	a.forgetDir()
	unix.Close(a.root)
}

func (a *applier) forgetDir() {
	if a.lastDirFd >= 0 {
		unix.Close(a.lastDirFd)
	}
	a.lastDir, a.lastDirFd = "", -1
}

// metaBlock is what a directory, link or node is charged against MaxBytes:
// one filesystem block.
const metaBlock = 4096

// count charges one entry, what its metadata takes and, for a regular
// file, its logical size.
func (a *applier) count(hdr *tar.Header, name string) error {
	a.entries++
	if a.lim.MaxFiles >= 0 && a.entries > a.lim.MaxFiles {
		return &LimitError{Name: name, Limit: "MaxFiles", Value: a.lim.MaxFiles}
	}
	// What is not file data still takes room: a block for a directory,
	// link or node, and the bytes of its extended attributes.
	meta := int64(0)
	if !isRegular(hdr.Typeflag) {
		meta = metaBlock
	}
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			meta += int64(len(k) + len(v))
		}
	}
	if err := a.charge(meta, name); err != nil {
		return err
	}
	if isRegular(hdr.Typeflag) {
		a.logical += hdr.Size
		if a.lim.MaxLogical >= 0 && (hdr.Size < 0 || a.logical > a.lim.MaxLogical || a.logical < 0) {
			return &LimitError{Name: name, Limit: "logical size", Value: a.lim.MaxLogical}
		}
	}
	return nil
}

func isRegular(t byte) bool { return t == tar.TypeReg || t == tar.TypeGNUSparse }

// apply writes one entry, checked by the validator; name is clean and
// relative. r reads the entry's content.
func (a *applier) apply(ctx context.Context, hdr *tar.Header, name string, r io.Reader) error {
	if err := a.count(hdr, name); err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return &EntryError{Name: name, Reason: "only a directory can stand for the image root"}
		}
		a.keepDir(name, hdr)
		return nil
	}
	dir, base := splitName(name)
	dfd, err := a.openDir(dir, true)
	if err != nil {
		return entryErr(name, err)
	}
	isDir := hdr.Typeflag == tar.TypeDir
	kept, err := a.clear(dfd, base, isDir)
	if err != nil {
		return entryErr(name, err)
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !kept {
			if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
				return entryErr(name, err)
			}
		}
		a.keepDir(name, hdr)
		return nil
	case tar.TypeReg, tar.TypeGNUSparse:
		if err := a.writeFile(ctx, dfd, base, name, hdr, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
			return entryErr(name, err)
		}
	case tar.TypeLink:
		tdir, tbase := splitName(hdr.Linkname) // clean: the validator made it so
		tfd, err := a.openPath(tdir)
		if err != nil {
			return entryErr(name, fmt.Errorf("hard link target %q: %w", hdr.Linkname, err))
		}
		err = unix.Linkat(tfd, tbase, dfd, base, 0) // links a symlink itself, never its target
		unix.Close(tfd)
		if err != nil {
			return entryErr(name, fmt.Errorf("hard link to %q: %w", hdr.Linkname, err))
		}
		// Each name of a file is read (and hashed) on its own later, so
		// it costs its size against the logical cap: a few KB of links
		// to one large file would read for hours.
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return entryErr(name, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			a.logical += st.Size
			if a.lim.MaxLogical >= 0 && (a.logical > a.lim.MaxLogical || a.logical < 0) {
				return &LimitError{Name: name, Limit: "logical size", Value: a.lim.MaxLogical}
			}
		}
		return nil // a second name: the inode's metadata is the first one's
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(dfd, base, kind|0o600, int(dev)); err != nil {
			return entryErr(name, err)
		}
	default:
		return &EntryError{Name: name, Reason: fmt.Sprintf("unsupported entry type %q", string(hdr.Typeflag))}
	}
	if err := a.meta(dfd, base, hdr, mode); err != nil {
		return entryErr(name, err)
	}
	return nil
}

// writeFile creates base in dfd and writes the content sparse.
func (a *applier) writeFile(ctx context.Context, dfd int, base, name string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return entryErr(name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var off int64
	for off < hdr.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		before := a.dataRead()
		n, err := r.Read(a.buf[:min(int64(len(a.buf)), hdr.Size-off)])
		if data := a.dataRead() - before; n > 0 && data > 0 {
			// Data, perhaps with holes around it: write the blocks
			// that are not all zero.
			if cerr := a.charge(data, name); cerr != nil {
				return cerr
			}
			if werr := a.writeData(f, a.buf[:n], off, name); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
	}
	if off != hdr.Size {
		return fmt.Errorf("reading the archive: %w", io.ErrUnexpectedEOF)
	}
	if err := f.Truncate(hdr.Size); err != nil { // the size, trailing hole included
		return entryErr(name, err)
	}
	if a.asRoot {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return entryErr(name, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil { // after chown, which drops setuid
		return entryErr(name, err)
	}
	if err := setXattrs(fd, hdr); err != nil {
		return entryErr(name, err)
	}
	return entryErr(name, f.Close())
}

// charge counts n bytes against MaxBytes.
func (a *applier) charge(n int64, name string) error {
	a.written += n
	if a.lim.MaxBytes >= 0 && a.written > a.lim.MaxBytes {
		return &LimitError{Name: name, Limit: "MaxBytes", Value: a.lim.MaxBytes}
	}
	return nil
}

// writeData writes b at off, skipping blocks (aligned on the file) that
// are all zero.
func (a *applier) writeData(f *os.File, b []byte, off int64, name string) error {
	flush := func(run []byte, at int64) error {
		if len(run) == 0 {
			return nil
		}
		if _, err := f.WriteAt(run, at); err != nil {
			return entryErr(name, err)
		}
		return nil
	}
	start := -1 // start of the pending run of non-zero blocks
	for i := 0; i < len(b); {
		end := min(len(b), i+blockSize-int((off+int64(i))%blockSize))
		if bytes.Equal(b[i:end], zeroBlock[:end-i]) {
			if start >= 0 {
				if err := flush(b[start:i], off+int64(start)); err != nil {
					return err
				}
				start = -1
			}
		} else if start < 0 {
			start = i
		}
		i = end
	}
	if start >= 0 {
		return flush(b[start:], off+int64(start))
	}
	return nil
}
