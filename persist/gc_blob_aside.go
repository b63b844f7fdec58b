package persist

import (
	"errors"
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
// first moves the blob aside, into the directory's tmp/ as gc-HEX, and
// looks at its time again there: renewed, it goes back; else it is
// removed. The move orders the two: a renewal before it shows in the
// second look, and one after it finds no blob, and the close writes the
// blob anew. A reader of the blob in the moment it is aside (another
// host building a layer) fails and can run again; a gc killed in that
// moment leaves gc-HEX, which the next gc puts back (restoreBlobsAside).

// asidePrefix names a blob gc moved aside in tmp/.
const asidePrefix = "gc-"

// testHookGCBlob, when set, runs at each step of gc's removal of a blob
// ("checked": it looked old, not yet removed or moved; "aside": moved,
// not yet looked at again).
var testHookGCBlob func(step, name string)

// testHookBlobReused, when set, runs in Blobs.reused before the blob's
// time is renewed.
var testHookBlobReused func(digest string)

// gcBlobAside removes blob name of sha256/ (d) by way of tmp/ (tmp) and
// says whether it did; a blob whose time a close renewed meanwhile is put
// back.
func (e *Env) gcBlobAside(d, tmp *os.File, name string) (bool, error) {
	aside := asidePrefix + name
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
		return false, nil // another host's gc put it back (restoreBlobsAside)
	case err != nil:
		return false, &os.PathError{Op: "stat", Path: filepath.Join(tmp.Name(), aside), Err: err}
	}
	if e.tooYoungAt(st) {
		return false, putBlobBack(d, tmp, aside)
	}
	if err := unix.Unlinkat(int(tmp.Fd()), aside, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, &os.PathError{Op: "remove", Path: filepath.Join(tmp.Name(), aside), Err: err}
	}
	return true, nil
}

// putBlobBack moves tmp/aside back into sha256/ (d). A blob written there
// anew meanwhile has the same bytes (its name is their hash) and stays;
// the one aside is removed.
func putBlobBack(d, tmp *os.File, aside string) error {
	name := strings.TrimPrefix(aside, asidePrefix)
	err := unix.Renameat2(int(tmp.Fd()), aside, int(d.Fd()), name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		err = unix.Unlinkat(int(tmp.Fd()), aside, 0)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "put back", Path: filepath.Join(tmp.Name(), aside), Err: err}
	}
	return nil
}

// restoreBlobsAside puts back every blob a killed gc left aside in tmp/:
// a close may have named it. gcBlobs then judges it again.
func restoreBlobsAside(d, tmp *os.File) error {
	entries, err := tmp.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		name, ok := strings.CutPrefix(ent.Name(), asidePrefix)
		if !ok || !isBlobName(name) || !ent.Type().IsRegular() {
			continue
		}
		if err := putBlobBack(d, tmp, ent.Name()); err != nil {
			return err
		}
	}
	return nil
}
