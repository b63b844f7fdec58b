package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/openfile"
)

// OpenImportSource opens the badger ledger of a single-host root that
// fleet import reads, without trusting its directory: whoever prepared
// the root (a local user, or a sandbox that wrote into it) may have put a
// symlink to a host file, a FIFO or a device among its files, and badger
// follows names, reads FIFOs, and truncates the memtable and value-log
// files it replays (a symlinked NNNNN.mem pointing at a host file
// truncated that file to nothing). So the ledger's files are copied, by
// their bytes, into scratch (a new directory only this process writes),
// each opened from dirfd (the source's store/ directory, opened without
// following a symlink) never through a symlink, checked to be a regular
// file with one link, and checked again after its copy; then the
// copy's tables are checked under recover (badger panics in a goroutine
// of its own on a corrupt table, which no caller could catch), and the
// copy is opened (migrated when an older spillway wrote it; refused when
// a newer one did). The source is never written. name is the source's
// directory as the errors name it. The caller closes the store, then
// removes scratch.
func OpenImportSource(dirfd int, name, scratch string) (*Store, error) {
	if err := copyLedgerFiles(dirfd, name, scratch); err != nil {
		return nil, err
	}
	if err := checkTables(scratch, name); err != nil {
		return nil, err
	}
	s, err := Open(scratch)
	if err != nil {
		return nil, &sourceError{msg: strings.ReplaceAll(err.Error(), scratch, name), err: err}
	}
	return s, nil
}

// sourceError is an error about the copy of a source's ledger, with the
// copy's path replaced by the source's in its message.
type sourceError struct {
	msg string
	err error
}

func (e *sourceError) Error() string { return e.msg }
func (e *sourceError) Unwrap() error { return e.err }

// skipSourceFile says whether a file of a ledger's directory is left out
// of the copy: the free-space ballast, badger's lock file, the backups a
// migration made, temporary files.
func skipSourceFile(n string) bool {
	return n == ballastName || n == "LOCK" || strings.HasPrefix(n, "migration-v") || strings.Contains(n, ".tmp-")
}

// copyLedgerFiles copies the regular files of the directory dirfd into
// scratch (which must exist and be empty), data extents only: badger's
// value-log and memtable files are sparse.
func copyLedgerFiles(dirfd int, name, scratch string) error {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), name)
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("the source's ledger %s: %w", name, err)
	}
	// Sizes first, by fstatat, for the free-space check; then each file
	// opened, checked and copied in turn (a source of many files holds
	// no more than one descriptor at a time).
	var names []string
	var need int64
	for _, ent := range entries {
		n := ent.Name()
		if skipSourceFile(n) && (ent.Type().IsRegular() || ent.Type()&os.ModeSymlink != 0) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("the source's ledger: %s: %w; nothing imported", filepath.Join(name, n), err)
		}
		names = append(names, n)
		need += st.Blocks * 512
	}
	if free, err := FreeBytes(scratch); err == nil && free-need < 2*Reserve {
		return fmt.Errorf("%w: copying the source's ledger %s takes %d MiB, %s has %d MiB free: nothing imported", ErrNoSpace, name, need>>20, scratch, free>>20)
	}
	for _, n := range names {
		f, err := openSourceFile(dirfd, filepath.Join(name, n), n)
		if err != nil {
			return err
		}
		err = f.copyTo(filepath.Join(scratch, n))
		unix.Close(f.fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// sourceFile is a file of a source's ledger, opened and checked.
type sourceFile struct {
	fd   int
	path string // as errors name it
	base string
	st   unix.Stat_t
}

// openSourceFile opens base in dirfd without following a symlink and
// without opening anything but a regular file (openfile.RegularAt), and
// checks it is a regular file with one link.
func openSourceFile(dirfd int, path, base string) (sourceFile, error) {
	fd, st, err := openfile.RegularAt(dirfd, base)
	f := sourceFile{fd: fd, path: path, base: base, st: st}
	switch {
	case errors.Is(err, openfile.ErrSymlink):
		return sourceFile{}, fmt.Errorf("the source's ledger holds %s, a symlink: a ledger's files are regular files; nothing imported", path)
	case errors.Is(err, openfile.ErrNotRegular):
		if rerr := f.regular(); rerr != nil {
			return sourceFile{}, rerr
		}
		return sourceFile{}, fmt.Errorf("the source's ledger: %s was replaced while it was opened: nothing imported", path)
	case err != nil:
		return sourceFile{}, fmt.Errorf("the source's ledger: open %s: %w; nothing imported", path, err)
	}
	if err := f.regular(); err != nil {
		unix.Close(fd)
		return sourceFile{}, err
	}
	return f, nil
}

// regular refuses a file that is not a regular file of one link.
func (f *sourceFile) regular() error {
	switch {
	case f.st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return fmt.Errorf("the source's ledger holds %s, a directory: a ledger's files are regular files; nothing imported", f.path)
	case f.st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("the source's ledger holds %s, which is not a regular file (a FIFO, device or socket): nothing imported", f.path)
	case f.st.Nlink != 1:
		return fmt.Errorf("the source's ledger holds %s, a file with %d links (another name elsewhere shares its content): nothing imported", f.path, f.st.Nlink)
	}
	return nil
}

// copyTo copies the file's data extents into a new file dest (holes stay
// holes) and checks the source did not change meanwhile.
func (f *sourceFile) copyTo(dest string) error {
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	size := f.st.Size
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(f.fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // a hole up to the end
		}
		if err != nil {
			return fmt.Errorf("the source's ledger: read %s: %w", f.path, err)
		}
		hole, err := unix.Seek(f.fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("the source's ledger: read %s: %w", f.path, err)
		}
		hole = min(hole, size)
		for p := data; p < hole; {
			n, err := unix.Pread(f.fd, buf[:min(int64(len(buf)), hole-p)], p)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("the source's ledger: read %s: %w", f.path, err)
			}
			if n == 0 {
				return fmt.Errorf("the source's ledger: %s shrank while it was copied: nothing imported", f.path)
			}
			if _, err := out.WriteAt(buf[:n], p); err != nil {
				return err
			}
			p += int64(n)
		}
		off = hole
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return err
	}
	if st.Size != f.st.Size || st.Mtim != f.st.Mtim || st.Ctim != f.st.Ctim {
		return fmt.Errorf("the source's ledger: %s changed while it was copied (is a spillway command running on the source?): nothing imported", f.path)
	}
	return out.Close()
}

// checkTables opens every table (.sst) of the ledger copied into dir and
// verifies its checksums, turning what would be a panic in badger's own
// goroutine into an error naming the source's file.
func checkTables(dir, name string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	def := badger.DefaultOptions(dir)
	for _, ent := range entries {
		if !strings.HasSuffix(ent.Name(), ".sst") {
			continue
		}
		if err := checkTable(filepath.Join(dir, ent.Name()), def); err != nil {
			return fmt.Errorf("the source's ledger is corrupt: table %s: %v; nothing imported", filepath.Join(name, ent.Name()), err)
		}
	}
	return nil
}

func checkTable(p string, def badger.Options) (err error) {
	if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
		return errors.New("empty file")
	}
	mf, err := z.OpenMmapFile(p, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			mf.Close(-1)
			err = fmt.Errorf("unreadable (%v)", firstLine(fmt.Sprint(r)))
		}
	}()
	_, err = table.OpenTable(mf, table.Options{
		ReadOnly: true, ChkMode: options.OnTableRead, BlockSize: def.BlockSize,
		Compression: def.Compression, TableSize: uint64(def.BaseTableSize), BloomFalsePositive: def.BloomFalsePositive,
	})
	if err != nil {
		return err // OpenTable closed mf
	}
	return mf.Close(-1)
}

// firstLine is the first non-empty line of s.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return s
}
