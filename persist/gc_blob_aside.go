package persist

import (
	"errors"
	"fmt"
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
	aside := asideName(name)
	switch err := unix.Renameat2(int(d.Fd()), name, int(tmp.Fd()), aside, unix.RENAME_NOREPLACE); {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EEXIST):
		return false, nil // another gc took it; or something sits at our name: left alone
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

// putBack moves tmp/aside back into sha256/ (d). When a blob is in place
// there already (written anew meanwhile), the one with the right bytes
// stays: a blob renamed into place but never synced before a power cut
// may be short.
func (b *Blobs) putBack(d, tmp *os.File, aside string) error {
	name, ok := asideBlob(aside)
	if !ok {
		return nil
	}
	err := unix.Renameat2(int(tmp.Fd()), aside, int(d.Fd()), name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		if b.Verify("sha256:"+name) == nil {
			err = unix.Unlinkat(int(tmp.Fd()), aside, 0)
		} else {
			err = unix.Renameat(int(tmp.Fd()), aside, int(d.Fd()), name)
		}
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "put back", Path: filepath.Join(tmp.Name(), aside), Err: err}
	}
	return nil
}

// restoreAside puts back every blob (only: that one, "" all) a killed gc
// left aside in tmp/, since a close may have named it.
func (b *Blobs) restoreAside(d, tmp *os.File, only string) error {
	entries, err := tmp.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		name, ok := asideBlob(ent.Name())
		if !ok || !ent.Type().IsRegular() || only != "" && name != only {
			continue
		}
		if err := b.putBack(d, tmp, ent.Name()); err != nil {
			return err
		}
	}
	return nil
}

// restoreAsideBlob puts back blob name if a killed gc left it aside and
// says whether the blob is in place after that.
func (b *Blobs) restoreAsideBlob(name string) bool {
	d, err := b.openSubdir("sha256")
	if err != nil {
		return false
	}
	defer d.Close()
	tmp, err := b.openSubdir("tmp")
	if err != nil {
		return false
	}
	defer tmp.Close()
	if b.restoreAside(d, tmp, name) != nil {
		return false
	}
	var st unix.Stat_t
	return unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}
