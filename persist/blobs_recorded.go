package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spillway/spillway/internal/errclass"
)

// blobsDirFile records where a state directory keeps its blobs: "blobs"
// for its own blobs/, else the absolute path --blobs named. A new root
// records it at its first command, once the ledger opened and the blob
// directory was accepted; a root made before it was recorded, at its next
// fleet init. A later command that names another directory, or leaves out
// --blobs on a root that had it (a shell without SPILLWAY_BLOBS), would
// write blobs other hosts cannot read and look for the shared ones where
// they are not: it is refused. A blob directory that moved is told by
// writing its new path into the file.
const blobsDirFile = "blobs-dir"

// blobsDirRecord is what blobsDirFile says of dir.
func (e *Env) blobsDirRecord(dir string) string {
	if dir == filepath.Join(e.root, "blobs") {
		return "blobs"
	}
	return dir
}

// checkBlobsDir refuses dir, the blob directory of this command (given as
// url, "" for the root's own), when the root recorded another; record
// says the root has none recorded and is new (this command made its ids),
// so that dir is to be recorded once accepted (recordBlobsDir).
func (e *Env) checkBlobsDir(dir, url string) (record bool, err error) {
	rec := e.blobsDirRecord(dir)
	b, err := readPrivate(filepath.Join(e.root, blobsDirFile))
	if errors.Is(err, os.ErrNotExist) {
		return slices.Contains(e.idsWritten, rootIDFile), nil
	}
	if err != nil {
		return false, err
	}
	want := strings.TrimSpace(string(b))
	if want == rec || (want != "blobs" && resolved(want) == resolved(rec)) {
		return false, nil
	}
	where, fix := "dir://"+want, "give --blobs dir://"+want+" (or SPILLWAY_BLOBS)"
	if want == "blobs" {
		where, fix = "its own blobs/", "leave out --blobs (and SPILLWAY_BLOBS)"
	}
	problem := "names " + dir
	if url == "" {
		// a shell without SPILLWAY_BLOBS: say what it would have done
		problem = "is not given (the blobs would go to " + dir + ", where no other host reads them)"
	}
	file := filepath.Join(e.root, blobsDirFile)
	return false, &InputError{Input: "blobs", Problem: problem + ", but the state directory " + e.root + " keeps its blobs in " + where +
		" (recorded in " + file + " at its first use): " + fix + "; if the blobs moved, write their directory into " + file}
}

// recordBlobsDir records this Env's blob directory unless the root has
// one recorded. Like the ids, a new root's record is taken back when its
// host id proves taken (heartbeat).
func (e *Env) recordBlobsDir() error {
	p := filepath.Join(e.root, blobsDirFile)
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := writePrivate(e.root, blobsDirFile, []byte(e.blobsDirRecord(e.blobs.dir)+"\n")); err != nil {
		return fmt.Errorf("record the blob directory: %w", err)
	}
	e.idsWritten = append(e.idsWritten, blobsDirFile)
	return nil
}

// checkRecordedStore refuses a shared blob directory this root recorded
// (not new: record false) that is no blob store any more, without the
// marker file: most likely a share that is not mounted, its empty mount
// point in its place. Taking it over as a new store would keep every
// blob written from now on on this host, where no other host reads it.
func (e *Env) checkRecordedStore(dir string, record bool) error {
	file := filepath.Join(e.root, blobsDirFile)
	if record || e.blobsDirRecord(dir) == "blobs" {
		return nil
	}
	if _, err := os.Lstat(file); err != nil {
		return nil // none recorded: a root made before, recorded at fleet init
	}
	if _, err := os.Lstat(filepath.Join(dir, blobMarker)); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return errclass.Errorf(errdefs.ErrFailedPrecondition, "the blob directory %s holds no blob store (no %s file), though this state directory has kept its blobs there since its first use (recorded in %s): is the share that holds it mounted? spillway writes nothing there until it is a blob store again", dir, blobMarker, file)
}
