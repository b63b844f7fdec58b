package persist

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/atomicfile"
	"github.com/spillway/spillway/internal/change"
	"github.com/spillway/spillway/internal/escape"
	"github.com/spillway/spillway/store"
)

// ExportOne writes one persisted file or symlink at dest, a host path: a
// new entry beside dest renamed over it once complete (every byte matched
// the digest), so a symlink at dest is replaced, never written through, and
// a corrupt blob leaves no dest. An existing dest is replaced only when
// replace is set; else the error matches os.ErrExist. It runs with the
// ledger parked (ParkLedger).
func (e *Env) ExportOne(r *store.Record, dest string, replace bool) (*ExportStats, error) {
	if err := e.ParkLedger(); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(dest); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s is a directory: give the file name to write", escape.Name(dest))
		}
		if !replace {
			return nil, &os.PathError{Op: "export", Path: dest, Err: os.ErrExist}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	how := atomicfile.NoReplace
	if replace {
		how = atomicfile.Replace
	}
	if r.Type == change.TypeSymlink {
		return exportLinkAt(r, dest, how)
	}
	src, err := e.OpenRecord(r)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if _, err := writeWhole(dest, src, os.FileMode(r.Mode&0o777), r.Mtime, how); err != nil {
		return nil, err
	}
	return &ExportStats{Files: 1, Bytes: r.Size}, nil
}

// writeWhole copies src into a new file at dest with mode (and mtime, when
// not zero) through internal/atomicfile: nothing appears at dest unless
// every byte was read without error.
func writeWhole(dest string, src io.Reader, mode os.FileMode, mtime time.Time, how atomicfile.How) (int64, error) {
	prefix := exportTempPrefix(dest)
	clearStaleExportTemps(filepath.Dir(dest), prefix)
	f, err := atomicfile.Create(filepath.Dir(dest), prefix+strconv.Itoa(os.Getpid())+".")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// not the temporary file's name: the directory is missing
			return 0, fmt.Errorf("export to %s: directory %s does not exist", dest, filepath.Dir(dest))
		}
		return 0, err
	}
	defer f.Cleanup()
	n, err := io.Copy(f, src)
	if err != nil {
		return n, err
	}
	if err := f.Chmod(mode); err != nil {
		return n, err
	}
	if !mtime.IsZero() {
		// On the descriptor, not the name: whoever may write DEST's
		// directory could have swapped the name for a symlink.
		// (/proc/self/fd/N names the open file itself, to the nanosecond.)
		ts := unix.NsecToTimespec(mtime.UnixNano())
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), []unix.Timespec{ts, ts}, 0); err != nil {
			return n, &os.PathError{Op: "utimensat", Path: f.Name(), Err: err}
		}
	}
	return n, f.Commit(dest, how)
}

// exportTempPrefix starts the names of the temporary files an export to
// dest writes beside it: the destination's name (at most 100 bytes of it)
// and, after it, the writer's pid.
func exportTempPrefix(dest string) string {
	base := filepath.Base(dest)
	if len(base) > 100 {
		base = base[:100]
	}
	return ".spillway-export-" + base + "."
}

// clearStaleExportTemps removes the temporary files of earlier exports to
// the same destination whose process is gone (a killed export left a
// full-size copy beside it, which no rerun removed).
func clearStaleExportTemps(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, d := range ents {
		rest, ok := strings.CutPrefix(d.Name(), prefix)
		if !ok || !d.Type().IsRegular() {
			continue
		}
		// Ours are PID.RANDOM (os.CreateTemp's digits): a temporary file of
		// an export to NAME.MORE has more fields, and is not this one's.
		pidText, random, ok := strings.Cut(rest, ".")
		if !ok || strings.Contains(random, ".") {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			os.Remove(filepath.Join(dir, d.Name()))
		}
	}
}

// exportLinkAt puts r's symlink at dest, made under a temporary name and
// renamed, never followed.
func exportLinkAt(r *store.Record, dest string, how atomicfile.How) (*ExportStats, error) {
	dir := filepath.Dir(dest)
	tmp := filepath.Join(dir, fmt.Sprintf(".spillway-export-%d-%d", os.Getpid(), r.ID))
	if err := os.Symlink(r.Link, tmp); err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	ts := unix.NsecToTimespec(r.Mtime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, tmp, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	var err error
	if how == atomicfile.NoReplace {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			err = &os.PathError{Op: "export", Path: dest, Err: os.ErrExist}
		}
	} else {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		return nil, err
	}
	return &ExportStats{Links: 1}, atomicfile.SyncDir(dir)
}
