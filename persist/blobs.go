package persist

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/sparse"
)

// Blobs is a content store of files named by their sha256 digest.
type Blobs struct {
	dir string // holds sha256/<hex> and tmp/
}

// NewBlobs returns the content store under dir, creating it if needed. A
// directory that exists must be a store already (it has the marker file
// blobMarker, or is one an earlier version made) or empty; any other is
// refused (errdefs.ErrFailedPrecondition): gc removes what it finds there.
func NewBlobs(dir string) (*Blobs, error) {
	if err := prepareBlobDir(dir); err != nil {
		return nil, err
	}
	return &Blobs{dir: dir}, nil
}

// marked says whether the store's directory carries blobMarker.
func (b *Blobs) marked() bool {
	fi, err := os.Lstat(filepath.Join(b.dir, blobMarker))
	return err == nil && fi.Mode().IsRegular()
}

// Path is the file of a digest ("sha256:<hex>").
func (b *Blobs) Path(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexPart) != 64 {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	return filepath.Join(b.dir, "sha256", hexPart), nil
}

// Put copies r into the store and returns its digest and size. The same
// content is stored once. The blob is in place when Put returns but durable
// only after Sync: callers Sync once before committing anything that names
// the blobs (one syncfs instead of an fsync per file: closing 10,000 files
// costs seconds, not minutes).
func (b *Blobs) Put(r io.Reader) (digest string, size int64, err error) {
	// Small contents are hashed in memory first, so that content already
	// stored costs no temp file at all.
	small := make([]byte, smallBlob+1)
	n, err := io.ReadFull(r, small)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		sum := sha256.Sum256(small[:n])
		digest = "sha256:" + hex.EncodeToString(sum[:])
		if b.holds(digest, int64(n), small[:n]) {
			if err := b.reused(digest); !errors.Is(err, fs.ErrNotExist) {
				return digest, int64(n), err
			}
			// another host's gc took it since holds looked (gcBlobAside):
			// written anew below
		}
		r = bytes.NewReader(small[:n])
	case err != nil:
		return "", 0, err
	default:
		r = io.MultiReader(bytes.NewReader(small[:n]), r)
	}
	// Lazy: the blob store is flushed once per close (Sync), not per blob.
	tmp, err := atomicfile.Create(filepath.Join(b.dir, "tmp"), blobTempPrefix)
	if err != nil {
		return "", 0, err
	}
	tmp.Lazy = true
	defer tmp.Cleanup()
	h := sha256.New()
	sw := sparse.NewWriter(tmp.File) // a sandbox's sparse file stays sparse
	size, err = io.Copy(io.MultiWriter(sw, h), r)
	if err == nil {
		err = sw.Finish()
	}
	if err != nil {
		return "", 0, err
	}
	digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	final, _ := b.Path(digest)
	// An existing blob of the right size and content is reused; any other
	// is replaced: a blob renamed into place before a power cut but never
	// synced may be shorter, or (written sparse, its size set last by
	// ftruncate) of its size with ranges that read as zeros, and other
	// bytes of the same size were put there by someone else: holds
	// compares the content, not only the size.
	if b.holds(digest, size, nil) {
		if err := b.reused(digest); !errors.Is(err, fs.ErrNotExist) {
			return digest, size, err
		}
		// taken by another host's gc since holds looked: committed anew
	}
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
		// rename(2) replaces anything else, never a directory.
		return "", 0, fmt.Errorf("blob %s: %s is not a regular file (a directory): spillway did not put it there; remove it", digest, final)
	}
	if err := tmp.Commit(final, atomicfile.Replace); err != nil {
		return "", 0, err
	}
	return digest, size, nil
}

// reused renews the modification time of a blob Put found in place: gc
// keeps an unreferenced blob for a grace period from its modification
// time, and on a blob directory several hosts share, another host's gc
// must not take a blob this host is about to name in a record because
// its first write was long ago (its last record pruned since). An error
// matching fs.ErrNotExist says another host's gc has taken the blob since
// it was found: the caller writes it anew (gcBlobAside puts back a blob
// whose time was renewed before it was taken).
func (b *Blobs) reused(digest string) error {
	p, err := b.Path(digest)
	if err != nil {
		return err
	}
	// Through a descriptor, then checked at the name: a time renewed by
	// path may land on a file gc moved aside and removed after the
	// lookup (gc_blob_aside.go).
	f, err := openBlobFile(p)
	if err != nil {
		return fmt.Errorf("blob %s: renew its time: %w", digest, err)
	}
	defer f.Close()
	if testHookBlobReused != nil {
		testHookBlobReused(digest)
	}
	now := time.Now()
	ts := unix.NsecToTimespec(now.UnixNano())
	err = unix.UtimesNanoAt(int(f.Fd()), "", []unix.Timespec{ts, ts}, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EINVAL) { // a kernel before 5.8: by /proc/self/fd
		tv := unix.NsecToTimeval(now.UnixNano())
		err = unix.Futimes(int(f.Fd()), []unix.Timeval{tv, tv})
	}
	if err != nil && !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("blob %s: renew its time: %w", digest, err)
	}
	// Opened again by name rather than lstat: on NFS an open looks the
	// name up afresh, a stat may answer from a cached lookup.
	again, err := openBlobFile(p)
	if err != nil {
		return fmt.Errorf("blob %s: taken by gc while its time was renewed: %w", digest, fs.ErrNotExist)
	}
	defer again.Close()
	var mine, at unix.Stat_t
	if err := errors.Join(unix.Fstat(int(f.Fd()), &mine), unix.Fstat(int(again.Fd()), &at)); err != nil {
		return fmt.Errorf("blob %s: renew its time: %w", digest, err)
	}
	if at.Dev != mine.Dev || at.Ino != mine.Ino {
		return fmt.Errorf("blob %s: taken by gc while its time was renewed: %w", digest, fs.ErrNotExist)
	}
	return nil
}

// holds says whether the blob of digest is in place with the given size
// and content. The size alone does not tell: whoever may write the blob
// directory (another host of a fleet) could have put other bytes of the
// same size under the name, and a close that reused them would persist
// nothing of its own. want is the content when Put holds it in memory (a
// small blob: one read to compare); else the file is hashed, a read as
// long as the write it saves.
func (b *Blobs) holds(digest string, size int64, want []byte) bool {
	if !b.has(digest, size) {
		return false
	}
	p, err := b.Path(digest)
	if err != nil {
		return false
	}
	f, err := openBlobFile(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if want != nil {
		got := make([]byte, len(want)+1)
		n, err := io.ReadFull(f, got)
		return (err == io.EOF || err == io.ErrUnexpectedEOF) && bytes.Equal(got[:n], want)
	}
	got, err := hashHex(f)
	return err == nil && "sha256:"+got == digest
}

// smallBlob is the size up to which Put hashes content before writing it.
const smallBlob = 64 << 10

// has says whether the blob of digest is in place with the given size.
func (b *Blobs) has(digest string, size int64) bool {
	p, err := b.Path(digest)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// Open opens the blob of a digest.
func (b *Blobs) Open(digest string) (*os.File, error) {
	p, err := b.Path(digest)
	if err != nil {
		return nil, err
	}
	f, err := openBlobFile(p)
	if errors.Is(err, os.ErrNotExist) && b.restoreAsideBlob(filepath.Base(p)) {
		f, err = openBlobFile(p) // a killed gc had left it aside
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, missingBlob(digest)
	}
	return f, err
}

// missingBlob says a blob is not in the store; errdefs.IsDataLoss matches it.
type missingBlob string

func (m missingBlob) Error() string {
	return fmt.Sprintf("blob %s is missing from the content store", string(m))
}

// DataLoss marks the error for errdefs.IsDataLoss.
func (missingBlob) DataLoss() {}

// Verify rehashes a blob and says whether it matches its digest.
func (b *Blobs) Verify(digest string) error {
	f, err := b.Open(digest)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := hashHex(f)
	if err != nil {
		return err
	}
	if "sha256:"+got != digest {
		return fmt.Errorf("blob %s hashes to sha256:%s", digest, got)
	}
	return nil
}

// List returns the digests of every stored blob; entries of sha256/ not
// named as spillway names blobs are none of its business.
func (b *Blobs) List() ([]string, error) {
	d, err := b.openSubdir("sha256")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var out []string
	for _, e := range entries {
		if isBlobName(e.Name()) {
			out = append(out, "sha256:"+e.Name())
		}
	}
	return out, nil
}

// openSubdir opens sha256/ or tmp/ of the store, never through a
// symlink (one planted there since NewBlobs checked is refused).
func (b *Blobs) openSubdir(name string) (*os.File, error) {
	p := filepath.Join(b.dir, name)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		if fi, lerr := os.Lstat(p); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("blob directory: %s is a symlink: spillway did not put it there, and would remove files through it; remove it", p)
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Remove deletes a blob; a missing one is not an error.
func (b *Blobs) Remove(digest string) error {
	p, err := b.Path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Sync makes every blob written so far durable (syncfs of the filesystem
// holding the store).
func (b *Blobs) Sync() error { return syncFS(b.dir) }

// syncFS flushes the whole filesystem holding dir to disk.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}
