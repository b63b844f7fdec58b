package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// On a blob directory several hosts share, gc removes an unreferenced
// blob that looked old in two steps, so that no close on another host
// names a blob gc then removes. Between gc's look at the blob's time and
// its removal, such a close may find the blob in place (Blobs.Put),
// renew its time (Blobs.reused) and commit a record that names it. So gc
// first moves the blob aside, into the directory's tmp/ under a name of
// its own (gc-HEX.N), and looks at its time again there: renewed, it
// goes back; else it is removed. A close renews the time through a
// descriptor and then checks that the blob is still at its name: if so,
// the renewal came before any move and gc's second look sees it; if not,
// the close writes the blob anew. A reader of the blob in the moment it
// is aside (another host building a layer) finds it back or fails and
// can run again. A gc killed in that moment leaves gc-HEX.N, which the
// next gc, or the first command that misses the blob, puts back.

// asidePrefix begins the name of a blob gc moved aside in tmp/.
const asidePrefix = "gc-"

// testHookGCBlob, when set, runs at each step of gc's removal of a blob
// ("checked": it looked old, not yet removed or moved; "aside": moved;
// "judged": looked at again, not yet removed or put back).
var testHookGCBlob func(step, name string)

// testHookBlobReused, when set, runs in Blobs.reused between the blob's
// open and the renewal of its time.
var testHookBlobReused func(digest string)

// asideName is a new name in tmp/ for blob name moved aside.
func asideName(name string) string {
	return fmt.Sprintf("%s%s.%d", asidePrefix, name, rand.Uint64())
}

// asideBlob returns the blob name (64 hex digits) of a name gc gives a
// blob it moved aside.
func asideBlob(aside string) (string, bool) {
	rest, ok := strings.CutPrefix(aside, asidePrefix)
	name, n, dot := strings.Cut(rest, ".")
	if !ok || !dot || !isBlobName(name) || n == "" || strings.Trim(n, "0123456789") != "" {
		return "", false
	}
	return name, true
}

// gcBlobAside removes blob name of sha256/ (d) by way of tmp/ (tmp) and
// says whether it did; a blob whose time a close renewed meanwhile is put
// back.
func (e *Env) gcBlobAside(d, tmp *os.File, name string) (bool, error) {
	// A plain rename, atomic on NFS too, to a name nobody else uses (a
	// move by link and unlink could unlink a blob another close put at
	// the name between the two).
	aside := asideName(name)
	switch err := unix.Renameat(int(d.Fd()), name, int(tmp.Fd()), aside); {
	case errors.Is(err, unix.ENOENT):
		return false, nil // another gc took it
	case err != nil:
		return false, &os.PathError{Op: "move aside", Path: filepath.Join(d.Name(), name), Err: err}
	}
	if testHookGCBlob != nil {
		testHookGCBlob("aside", name)
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(int(tmp.Fd()), aside, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
		return false, nil // another command put it back (restoreAside)
	case err != nil:
		return false, errors.Join(&os.PathError{Op: "stat", Path: filepath.Join(tmp.Name(), aside), Err: err}, e.blobs.putBack(d, tmp, aside))
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return false, e.blobs.putBack(d, tmp, aside) // swapped in after gc looked: not a blob
	}
	if testHookGCBlob != nil {
		testHookGCBlob("judged", name)
	}
	if e.tooYoungAt(st) {
		return false, e.blobs.putBack(d, tmp, aside)
	}
	switch err := unix.Unlinkat(int(tmp.Fd()), aside, 0); {
	case errors.Is(err, unix.ENOENT):
		return false, nil // put back meanwhile: judged again by the next gc
	case err != nil:
		return false, &os.PathError{Op: "remove", Path: filepath.Join(tmp.Name(), aside), Err: err}
	}
	return true, nil
}

// renameNoReplace is renameat2 with RENAME_NOREPLACE (a variable for the
// tests of moveNoReplace's other way).
var renameNoReplace = func(fromDir int, from string, toDir int, to string) error {
	return unix.Renameat2(fromDir, from, toDir, to, unix.RENAME_NOREPLACE)
}

// moveNoReplace renames from (in fromDir) to to (in toDir), failing with
// EEXIST when to exists. NFS takes no rename flags (EINVAL): there it
// links the file under the new name, which fails on an existing one, then
// removes the old name; in between the one file has both names. The old
// name must be one nobody else puts a file at (a copy aside).
func moveNoReplace(fromDir *os.File, from string, toDir *os.File, to string) error {
	err := renameNoReplace(int(fromDir.Fd()), from, int(toDir.Fd()), to)
	if !errors.Is(err, unix.EINVAL) {
		return err
	}
	if err := unix.Linkat(int(fromDir.Fd()), from, int(toDir.Fd()), to, 0); err != nil {
		return err
	}
	if err := unix.Unlinkat(int(fromDir.Fd()), from, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// putBack moves tmp/aside back into sha256/ (d). When something is in
// place there already, settleAside decides.
func (b *Blobs) putBack(d, tmp *os.File, aside string) error {
	name, ok := asideBlob(aside)
	if !ok {
		return nil
	}
	err := moveNoReplace(tmp, aside, d, name)
	if errors.Is(err, unix.EEXIST) {
		err = settleAside(d, tmp, aside, name)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "put back", Path: filepath.Join(tmp.Name(), aside), Err: err}
	}
	return nil
}

// settleAside resolves a put-back that found blob name in place: the copy
// whose bytes hash to its name stays (one renamed in but never synced
// before a power cut may be short). When both names are one file, the
// aside name goes: the blob is in place, and a put-back by link of this
// name under way finds it gone (ENOENT) at its unlink. Left as it would
// be, it could stay forever: moved by link, one file can have two aside
// names (linked back from gc-HEX.1, moved again to gc-HEX.2 before the
// unlink of gc-HEX.1), and the put-back of one waits on nobody. The aside
// copy is left as it is when what is in place is not a regular file, or
// when a copy cannot be read: the next gc, or a reader missing the blob,
// looks again.
func settleAside(d, tmp *os.File, aside, name string) error {
	var in, out unix.Stat_t
	if unix.Fstatat(int(d.Fd()), name, &in, unix.AT_SYMLINK_NOFOLLOW) != nil ||
		unix.Fstatat(int(tmp.Fd()), aside, &out, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return nil
	}
	if in.Dev == out.Dev && in.Ino == out.Ino {
		return unix.Unlinkat(int(tmp.Fd()), aside, 0)
	}
	if in.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	switch good, err := hashesTo(d, name, name); {
	case err != nil:
		return nil
	case good:
		return unix.Unlinkat(int(tmp.Fd()), aside, 0)
	}
	if good, err := hashesTo(tmp, aside, name); err != nil || !good {
		return nil
	}
	return unix.Renameat(int(tmp.Fd()), aside, int(d.Fd()), name)
}

// hashesTo says whether the regular file name of dir hashes to hexSum.
func hashesTo(dir *os.File, name, hexSum string) (bool, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%s is not a regular file", name)
	}
	got, err := hashHex(f)
	return got == hexSum, err
}

// hashHex is the sha256 of what r holds, in hex.
func hashHex(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// restoreAside puts back every blob (only: that one, "" all) a killed gc
// left aside in tmp/, since a close may have named it. It goes on past
// an entry it cannot put back and returns what failed.
func (b *Blobs) restoreAside(d, tmp *os.File, only string) error {
	entries, err := tmp.ReadDir(-1)
	if err != nil {
		return err
	}
	var errs []error
	for _, ent := range entries {
		name, ok := asideBlob(ent.Name())
		if !ok || !ent.Type().IsRegular() || only != "" && name != only {
			continue
		}
		errs = append(errs, b.putBack(d, tmp, ent.Name()))
	}
	return errors.Join(errs...)
}

// restoreAsideBlob puts back blob name if a killed gc left it aside and
// says whether the blob is in place after that.
func (b *Blobs) restoreAsideBlob(name string) bool {
	d, tmp, err := b.openAsideDirs()
	if err != nil {
		return false
	}
	defer d.Close()
	defer tmp.Close()
	_ = b.restoreAside(d, tmp, name) // what it cannot put back stays missing
	var st unix.Stat_t
	return unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// openAsideDirs opens sha256/ and tmp/, between which gc moves blobs
// aside and back.
func (b *Blobs) openAsideDirs() (d, tmp *os.File, err error) {
	if d, err = b.openSubdir("sha256"); err != nil {
		return nil, nil, err
	}
	if tmp, err = b.openSubdir("tmp"); err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, tmp, nil
}
