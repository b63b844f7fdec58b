package persist

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// blobsDirFile records where a state directory keeps its blobs, written
// at its first use once the ledger opened: "blobs" for its own blobs/,
// else the absolute path --blobs named. A later command that names
// another directory, or leaves out --blobs on a root that had it (a
// shell without SPILLWAY_BLOBS), would write blobs other hosts cannot
// read and look for the shared ones where they are not: it is refused.
// A blob directory that moved is told by writing its new path into the
// file.
const blobsDirFile = "blobs-dir"

// checkBlobsDir records dir, the blob directory of this command (given
// as url, "" for the root's own), at the root's first use, and refuses
// one other than the recorded.
func (e *Env) checkBlobsDir(dir, url string) error {
	rec := dir
	if dir == filepath.Join(e.root, "blobs") {
		rec = "blobs"
	}
	b, err := readPrivate(filepath.Join(e.root, blobsDirFile))
	if errors.Is(err, os.ErrNotExist) {
		return writePrivate(e.root, blobsDirFile, []byte(rec+"\n"))
	}
	if err != nil {
		return err
	}
	want := strings.TrimSpace(string(b))
	if want == rec || (want != "blobs" && resolved(want) == resolved(rec)) {
		return nil
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
	return &InputError{Input: "blobs", Problem: problem + ", but the state directory " + e.root + " keeps its blobs in " + where +
		" (recorded in " + file + " at its first use): " + fix + "; if the blobs moved, write their directory into " + file}
}
