package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/spillway/spillway/internal/progress"
)

// Source is what an image is imported from: exactly one of Dir (a host
// directory, copied without following any symlink in it) and Tar (a tar
// stream, plain or gzip-compressed).
type Source struct {
	Dir string
	Tar io.Reader
	// Limits bound what the import writes; zero fields take defaults.
	Limits Limits
	// Park, when set, is called once the snapshot is prepared, before it
	// is filled: the caller may park the Manager (and what else it holds)
	// for the long copy; the commit reopens it.
	Park func() error
}

// ImportStats describes an imported image.
type ImportStats struct {
	Files int64 // non-directories
	Bytes int64 // sum of the sizes of regular files
	// Dir is the committed snapshot's directory, the image tree itself,
	// for reading it later without a mount. It is set whenever the
	// snapshotter keeps a parentless snapshot as a plain directory (native
	// always; overlayfs too, as its "fs" directory): never write to it.
	Dir string
	// Digest is the tree's digest (countTree): the same for every host
	// that imports the same source.
	Digest string
}

// EntryError is an archive entry refused by Import.
type EntryError struct {
	Name   string // the entry's name, cleaned
	Reason string
}

func (e *EntryError) Error() string { return fmt.Sprintf("tar entry %q: %s", e.Name, e.Reason) }

// importSuffix names the active snapshot an import fills.
const importSuffix = "/import"

// Import builds the committed snapshot key from src. It prepares
// key+"/import" (removing the leftover of a crashed import first), fills it,
// and commits it. On any error it removes everything it made: nothing is
// ever half-imported. progress, when not nil, is called now and then with
// the files and bytes so far, and once at the end with the totals.
//
// Archives are hostile: an absolute name, a name that leaves the tree with
// "..", a name that goes through a symlink, a symlink whose relative target
// (or chain of links) leaves the tree, a hard link to outside the tree, or
// a device node when not running as root make the import fail with an
// *EntryError; going past src.Limits, with a *LimitError. Symlinks with
// absolute targets are kept (they are read inside the root). Sparse
// entries stay sparse. Overlay extended attributes (trusted.overlay.*,
// user.overlay.*) are dropped. Whiteout-named entries (.wh.*) are kept as
// plain files: an image is a whole tree, not a layer diff. A directory
// source goes through the same rules, as a tar stream. docs/design.md
// ("Importing hostile images") tells the limits.
func (m *Manager) Import(ctx context.Context, key string, src Source, p progress.Progress) (_ ImportStats, retErr error) {
	p = progress.Or(p)
	if (src.Dir == "") == (src.Tar == nil) {
		return ImportStats{}, errors.New("image import: give exactly one of a directory and a tar stream")
	}
	if key == "" {
		return ImportStats{}, errors.New("image import: empty snapshot key")
	}
	exists, err := m.Exists(ctx, key)
	if err != nil {
		return ImportStats{}, fmt.Errorf("image import: %w", err)
	}
	if exists {
		return ImportStats{}, fmt.Errorf("image import: snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}

	active := key + importSuffix
	mnt := m.importMountpoint(key)
	if err := m.discardImport(ctx, active, mnt); err != nil {
		return ImportStats{}, fmt.Errorf("image import: removing a crashed import: %w", err)
	}
	// The default limits count the free space once a crashed import's
	// files are gone: before, its leftover made the rerun fail with a
	// --max-bytes error, and only the run after that worked.
	lim, err := src.Limits.resolve(m.dir)
	if err != nil {
		return ImportStats{}, fmt.Errorf("image import: %w", err)
	}
	mounts, err := m.Prepare(ctx, active, "")
	if err != nil {
		return ImportStats{}, fmt.Errorf("image import: %w", err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		// Clean up even when ctx was cancelled.
		if err := m.discardImport(context.WithoutCancel(ctx), active, mnt); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("image import: cleaning up: %w", err))
		}
	}()

	// A parentless active snapshot is a bind of a plain directory (both
	// snapshotters): write it directly. Otherwise mount it.
	root, direct := BindSource(mounts)
	if !direct {
		if err := MountAll(mounts, mnt); err != nil {
			return ImportStats{}, fmt.Errorf("image import: %w", err)
		}
		root = mnt
	}

	if src.Park != nil {
		if err := src.Park(); err != nil {
			return ImportStats{}, fmt.Errorf("image import: %w", err)
		}
	}
	fillErr := fill(ctx, root, src, lim, p)
	var st ImportStats
	if fillErr == nil {
		st, fillErr = countTree(ctx, root)
	}
	if !direct {
		if err := Unmount(mnt); err != nil {
			return ImportStats{}, fmt.Errorf("image import: %w", errors.Join(fillErr, err))
		}
		if err := os.Remove(mnt); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return ImportStats{}, fmt.Errorf("image import: %w", errors.Join(fillErr, err))
		}
	}
	if fillErr != nil {
		return ImportStats{}, fmt.Errorf("image import: %w", fillErr)
	}
	if err := m.Commit(ctx, key, active); err != nil {
		return ImportStats{}, fmt.Errorf("image import: %w", err)
	}
	if direct {
		// Both snapshotters keep the snapshot's id, and so its
		// directory, across Commit.
		st.Dir = root
	}
	p.Update(importStatus(st.Files, st.Bytes))
	return st, nil
}

// importStatus is the progress of an import: files and bytes so far.
func importStatus(files, bytes int64) progress.Status {
	return progress.Status{Items: files, Unit: "files", Bytes: bytes}
}

// importMountpoint is where an import that cannot write its snapshot
// directly mounts it. It is derived from the key so that a crashed import's
// mount is found and undone by the next one.
func (m *Manager) importMountpoint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(m.dir, "import", hex.EncodeToString(sum[:8]))
}

// discardImport undoes an import of active: the mount, the mountpoint and
// the snapshot. Idempotent.
func (m *Manager) discardImport(ctx context.Context, active, mnt string) error {
	if err := Unmount(mnt); err != nil {
		return err
	}
	if err := os.Remove(mnt); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return m.Remove(ctx, active)
}

// fill writes src into root.
func fill(ctx context.Context, root string, src Source, lim Limits, p progress.Progress) error {
	if src.Tar != nil {
		return applyTar(ctx, root, src.Tar, lim, p, os.Geteuid() == 0)
	}
	dir, err := filepath.EvalSymlinks(src.Dir) // the argument itself may be a link
	if err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", src.Dir)
	}
	return applyDir(ctx, root, dir, lim, p, os.Geteuid() == 0)
}

// applyTar applies the (possibly gzip-compressed) tar r to the empty
// directory root through an applier, refusing hostile entries, and checks
// every chain of symlinks before it returns.
func applyTar(ctx context.Context, root string, r io.Reader, lim Limits, p progress.Progress, asRoot bool) error {
	stream, err := decompress(r)
	if err != nil {
		return err
	}
	cr := &countingReader{r: stream}
	tr := tar.NewReader(cr)
	a, err := newApplier(root, asRoot, lim, func() int64 { return cr.n })
	if err != nil {
		return err
	}
	defer a.close()
	v := &validator{symlinks: map[string]string{}, asRoot: asRoot, progress: progress.Or(p)}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		ok, err := v.check(hdr)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := a.apply(ctx, hdr, filepath.Clean(hdr.Name), tr); err != nil {
			return err
		}
	}
	if err := a.end(v); err != nil {
		return err
	}
	// Read what follows the end of the archive (padding): a gzip stream
	// checks its CRC only at its end, and a writer on a pipe should not
	// die of SIGPIPE. Much more than padding is refused, not expanded.
	n, err := io.CopyN(io.Discard, stream, maxTrailer+1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("reading the archive: %w", err)
	}
	if n > maxTrailer {
		return fmt.Errorf("reading the archive: more than %d bytes follow its end", maxTrailer)
	}
	return nil
}

// maxTrailer is how much may follow the end of a tar archive: tar pads to
// its record size (10 KiB by default).
const maxTrailer = 1 << 20

// decompress detects gzip by its magic number; other compressions get a
// clear error; anything else is read as a plain tar.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	switch {
	case len(magic) == 0:
		return nil, errors.New("empty archive")
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reading the gzip archive: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return nil, errors.New("zstd-compressed archives are not supported: give a .tar or .tar.gz")
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, errors.New("xz-compressed archives are not supported: give a .tar or .tar.gz")
	case bytes.HasPrefix(magic, []byte("BZh")):
		return nil, errors.New("bzip2-compressed archives are not supported: give a .tar or .tar.gz")
	}
	return br, nil
}

// validator checks each tar header before the applier acts on it.
type validator struct {
	// symlinks maps the names (clean, relative) that are symlinks so far
	// to their targets. The root starts empty, so every symlink in it
	// came from this archive: refusing names through these refuses every
	// name through a symlink, and resolving them finds chains that leave
	// the tree.
	symlinks map[string]string
	asRoot   bool

	progress     progress.Progress
	files, bytes int64
	entries      int
	lastReport   time.Time
}

// Limits on names in an archive: the host's PATH_MAX, and the depth that
// close's reader accepts (persist/hostile.MaxDepth).
const (
	maxNameLen   = 4096
	maxNameDepth = 256
)

// check says whether to apply hdr (false: skip it) or why to refuse it.
func (v *validator) check(hdr *tar.Header) (bool, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return false, nil // metadata only; Apply would otherwise treat its name as a path
	}
	name := filepath.Clean(hdr.Name)
	refuse := func(reason string) (bool, error) {
		return false, &EntryError{Name: name, Reason: reason}
	}
	if filepath.IsAbs(name) {
		return refuse("absolute path")
	}
	// A name the host cannot hold as a path, or deeper than spillway
	// reads at close, makes trees that path-based tools (and the native
	// snapshotter's copy) cannot handle, and costs directories for free.
	if len(name) >= maxNameLen {
		return refuse(fmt.Sprintf("path longer than %d bytes", maxNameLen-1))
	}
	if strings.Count(name, "/") >= maxNameDepth {
		return refuse(fmt.Sprintf("path deeper than %d directories", maxNameDepth))
	}
	if len(hdr.Linkname) >= maxNameLen {
		return refuse(fmt.Sprintf("link target longer than %d bytes", maxNameLen-1))
	}
	if escapes(name) {
		return refuse("path escapes the image")
	}
	if p := v.throughSymlink(name); p != "" {
		return refuse(fmt.Sprintf("path goes through the symlink %q", p))
	}

	isLink, linkTarget := false, ""
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeFifo: // tar.Reader turns the old TypeRegA into TypeReg
	case tar.TypeChar, tar.TypeBlock:
		if !v.asRoot {
			return refuse("device node (devices can be imported only as root)")
		}
	case tar.TypeSymlink:
		target := hdr.Linkname
		if target == "" {
			return refuse("symlink with an empty target")
		}
		if !filepath.IsAbs(target) && escapes(filepath.Join(filepath.Dir(name), target)) {
			return refuse(fmt.Sprintf("symlink target %q leads outside the image", target))
		}
		isLink, linkTarget = true, target
	case tar.TypeLink:
		target := filepath.Clean(hdr.Linkname)
		if hdr.Linkname == "" || filepath.IsAbs(target) || escapes(target) || target == "." {
			return refuse(fmt.Sprintf("hard link target %q leads outside the image", hdr.Linkname))
		}
		if p := v.throughSymlink(target); p != "" {
			return refuse(fmt.Sprintf("hard link target %q goes through the symlink %q", hdr.Linkname, p))
		}
		hdr.Linkname = target // the applier links the clean name
		// link(2) links a symlink itself: the new name is a symlink too,
		// its target read from the new name's directory.
		linkTarget, isLink = v.symlinks[target]
	default:
		return refuse(fmt.Sprintf("unsupported entry type %q", string(hdr.Typeflag)))
	}
	if isLink {
		v.symlinks[name] = linkTarget
	} else {
		delete(v.symlinks, name)
	}

	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.trusted.overlay.") || strings.HasPrefix(k, "SCHILY.xattr.user.overlay.") {
			delete(hdr.PAXRecords, k)
		}
	}

	v.entries++
	if hdr.Typeflag != tar.TypeDir {
		v.files++
	}
	if isRegular(hdr.Typeflag) {
		v.bytes += hdr.Size
	}
	if v.entries%256 == 0 {
		if now := time.Now(); now.Sub(v.lastReport) >= 100*time.Millisecond {
			v.lastReport = now
			v.progress.Update(importStatus(v.files, v.bytes))
		}
	}
	return true, nil
}

// throughSymlink returns the first proper ancestor of name that is a
// symlink, or "".
func (v *validator) throughSymlink(name string) string {
	if len(v.symlinks) == 0 {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		if _, ok := v.symlinks[name[:i]]; ok {
			return name[:i]
		}
	}
	return ""
}

// escapes reports whether the clean relative path p leaves its root.
func escapes(p string) bool {
	p = filepath.Clean(p)
	return p == ".." || strings.HasPrefix(p, "../")
}
