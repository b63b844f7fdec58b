package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
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

// count charges one entry and, for a regular file, its logical size.
func (a *applier) count(hdr *tar.Header, name string) error {
	a.entries++
	if a.lim.MaxFiles >= 0 && a.entries > a.lim.MaxFiles {
		return &LimitError{Name: name, Limit: "--max-files", Value: a.lim.MaxFiles}
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
		return &LimitError{Name: name, Limit: "--max-bytes", Value: a.lim.MaxBytes}
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

// meta sets owner, mode and times of a non-directory just made (not a
// regular file's mode and owner, set on its descriptor already).
func (a *applier) meta(dfd int, base string, hdr *tar.Header, mode uint32) error {
	special := hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeFifo
	if a.asRoot && !isRegular(hdr.Typeflag) {
		if err := unix.Fchownat(dfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if special {
		// The node was made here a moment ago and is no symlink.
		if err := unix.Fchmodat(dfd, base, mode, 0); err != nil {
			return err
		}
	}
	return setTimes(dfd, base, hdr)
}

func setTimes(dfd int, base string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	return nil
}

// setXattrs sets the entry's extended attributes on fd, less overlay's own;
// attributes the filesystem or the user cannot hold are skipped.
func setXattrs(fd int, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || isOverlayXattr(attr) {
			continue
		}
		if err := unix.Fsetxattr(fd, attr, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("extended attribute %s: %w", attr, err)
		}
	}
	return nil
}

func isOverlayXattr(attr string) bool {
	return strings.HasPrefix(attr, "trusted.overlay.") || strings.HasPrefix(attr, "user.overlay.")
}

// keepDir records a directory's metadata for finish; a later entry of the
// same directory replaces it.
func (a *applier) keepDir(name string, hdr *tar.Header) {
	if i, ok := a.dirIndex[name]; ok {
		a.dirs[i].hdr = hdr
		return
	}
	a.dirIndex[name] = len(a.dirs)
	a.dirs = append(a.dirs, dirMeta{name: name, hdr: hdr})
}

// finish sets the directories' metadata, deepest (latest) first. A
// directory that a later entry replaced is skipped.
func (a *applier) finish() error {
	a.forgetDir()
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		dir, base := ".", "."
		if d.name != "." {
			dir, base = splitName(d.name)
		}
		dfd, err := a.openPath(dir)
		if isGone(err) {
			continue
		}
		if err != nil {
			return entryErr(d.name, err)
		}
		err = a.dirMeta(dfd, base, d.hdr)
		unix.Close(dfd)
		if isGone(err) {
			continue
		}
		if err != nil {
			return entryErr(d.name, err)
		}
	}
	return nil
}

func (a *applier) dirMeta(dfd int, base string, hdr *tar.Header) error {
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setXattrs(fd, hdr); err != nil {
		return err
	}
	if a.asRoot {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return err
	}
	return setTimes(dfd, base, hdr)
}

func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}

// openDir returns a descriptor of the directory dir ("." for the root),
// creating missing components (mode 0755) when create is set. The
// descriptor belongs to the applier: do not close it.
func (a *applier) openDir(dir string, create bool) (int, error) {
	if a.lastDirFd >= 0 && a.lastDir == dir {
		return a.lastDirFd, nil
	}
	fd, err := a.walk(dir, create)
	if err != nil {
		return -1, err
	}
	a.forgetDir()
	a.lastDir, a.lastDirFd = dir, fd
	return fd, nil
}

// openPath returns a new O_PATH descriptor of the existing directory dir;
// the caller closes it.
func (a *applier) openPath(dir string) (int, error) { return a.walk(dir, false) }

// walk opens dir one component at a time from the root, never through a
// symlink.
func (a *applier) walk(dir string, create bool) (int, error) {
	cur, err := unix.Openat(a.root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if dir == "." {
		return cur, nil
	}
	for _, c := range strings.Split(dir, "/") {
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(cur, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if err != nil {
			var st unix.Stat_t
			if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = fmt.Errorf("%s goes through a symlink: %w", dir, unix.ELOOP)
			}
			unix.Close(cur)
			return -1, err
		}
		unix.Close(cur)
		cur = next
	}
	return cur, nil
}

// clear makes room for a new entry base in dfd: an existing directory stays
// when the new entry is a directory too; anything else there is removed.
func (a *applier) clear(dfd int, base string, isDir bool) (kept bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, unix.Unlinkat(dfd, base, 0)
	}
	if isDir {
		return true, nil
	}
	a.forgetDir() // it may be inside what goes
	return false, removeAllAt(dfd, base)
}

// removeAllAt removes the directory base in dfd and everything in it,
// never following a symlink.
func removeAllAt(dfd int, base string) error {
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			var st unix.Stat_t
			if err = unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				break
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = removeAllAt(fd, n)
			} else {
				err = unix.Unlinkat(fd, n, 0)
			}
			if err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR)
}

// splitName splits a clean relative name into its directory ("." at the
// top) and its last component.
func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

// entryErr wraps a system error of one entry; nil stays nil, and errors
// that already name their entry pass through.
func entryErr(name string, err error) error {
	if err == nil {
		return nil
	}
	var ee *EntryError
	var le *LimitError
	if errors.As(err, &ee) || errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("tar entry %q: %w", name, err)
}
