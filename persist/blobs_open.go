package persist

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/spillway/spillway/internal/errclass"
	"github.com/spillway/spillway/internal/statedir"
)

// openBlobFile opens the file of a blob for reading, never through a
// symlink (the state directory's rule, internal/statedir) and only when it
// is a regular file: a FIFO or device planted in blobs/ neither blocks nor
// is read.
func openBlobFile(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("blob file %s is a symlink", p)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("blob file %s is not a regular file", p)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// blobsDir returns the directory of the blob store that url names: "" is
// blobs/ in root, dir:///PATH is PATH (absolute; on a shared filesystem it
// can serve several roots). PATH may not be a system directory other
// programs use ("/", "/tmp", …), nor lie inside the state directory (whose
// tmp/ gc empties) other than as its own blobs/, nor hold it.
func blobsDir(root, url string) (string, error) {
	own := filepath.Join(root, "blobs")
	if url == "" {
		return own, nil
	}
	p, ok := strings.CutPrefix(url, "dir://")
	if !ok || !filepath.IsAbs(p) {
		return "", invalidf("blob store URL %q: want dir:///ABSOLUTE/PATH", url)
	}
	p = filepath.Clean(p)
	for _, q := range []string{p, resolved(p)} {
		if systemDirs[q] {
			return "", invalidf("blob store URL %q names %s, a system directory other programs use: give the blob store a directory of its own, e.g. dir:///srv/spillway-blobs", url, q)
		}
	}
	if p == own || resolved(p) == resolved(own) {
		return p, nil
	}
	for _, r := range []string{root, resolved(root)} {
		for _, q := range []string{p, resolved(p)} {
			switch {
			case within(q, r):
				return "", invalidf("blob store URL %q names %s, inside the state directory %s: give a directory outside it (or none: the state directory's own is %s)", url, q, r, own)
			case within(r, q):
				return "", invalidf("blob store URL %q names %s, which holds the state directory %s: give the blob store a directory of its own", url, q, r)
			}
		}
	}
	return p, nil
}

// systemDirs are directories other programs share, never a blob store:
// gc removes old temp files from the store's tmp/ (dir:/// would make it
// the system's /tmp).
var systemDirs = map[string]bool{
	"/": true, "/tmp": true, "/var/tmp": true, "/dev/shm": true, "/run": true,
	"/home": true, "/root": true, "/etc": true, "/usr": true, "/var": true,
	"/var/lib": true, "/proc": true, "/sys": true, "/dev": true, "/boot": true,
	"/bin": true, "/sbin": true, "/lib": true, "/lib64": true,
}

// within says whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// blobMarker is the file that makes a directory a spillway blob store.
// NewBlobs writes it when it creates the store, and when it adopts an empty
// directory or a store an earlier version made without it (see
// adoptBlobDir); any other directory is refused. gc removes files only in
// a store that has it, and there only the names spillway gives
// (isBlobName, isBlobTempName).
const blobMarker = "spillway-blobs"

const blobMarkerText = `This directory is a spillway blob store: sha256/ holds the blobs, tmp/
the blobs being written. spillway gc removes unreferenced blobs and old
temporary files here (only the names spillway gives them); keep other
files out of it. Written by spillway; do not remove it.
`

// The names of spillway's temporary files in a store's tmp/, to which
// os.CreateTemp appends a decimal number: blobs being written (Blobs.Put)
// and fleet init's write check. gc removes no other name there.
const (
	blobTempPrefix      = "blob-"
	fleetInitTempPrefix = "fleet-init-"
)

var blobTempPrefixes = []string{blobTempPrefix, fleetInitTempPrefix}

// isBlobTempName says whether name is one spillway gives a temporary file
// in a store's tmp/.
func isBlobTempName(name string) bool {
	for _, p := range blobTempPrefixes {
		if rest, ok := strings.CutPrefix(name, p); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return false
}

// isBlobName says whether name is one spillway gives a blob in sha256/:
// 64 lowercase hex digits.
func isBlobName(name string) bool {
	return len(name) == 64 && strings.Trim(name, "0123456789abcdef") == ""
}

// prepareBlobDir makes dir a blob store: it creates it, or checks it
// carries the marker, or adopts it (adoptBlobDir); then it makes sure
// sha256/ and tmp/ are there.
func prepareBlobDir(dir string) error {
	// Who may rename its entries must be no one but root and the caller:
	// the owner of the directory (or of one above it) could swap sha256/
	// for a symlink between any check and a close's rename, and spillway
	// would write sandbox bytes, named by hex digits, wherever it leads
	// (/etc/cron.d takes such names).
	if err := statedir.PrepareDir("blob directory", dir); err != nil {
		return err
	}
	fi, err := os.Lstat(filepath.Join(dir, blobMarker))
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return notBlobStore(dir, blobMarker+" (not a regular file)")
	case errors.Is(err, os.ErrNotExist):
		if err := adoptBlobDir(dir); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("blob directory %s: %w", dir, err)
	}
	for _, d := range []string{filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return checkBlobDirs(dir)
}

// checkBlobDirs refuses a blob store that a local user could have
// prepared to mislead spillway: sha256/ or tmp/ a symlink (Put would write
// and gc remove through it, elsewhere), not a directory, or any of the
// three directories writable by every user (anyone could plant, swap or
// remove blobs: readers detect a swapped blob, but its content is lost).
func checkBlobDirs(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		stat := os.Lstat
		if d == dir {
			stat = os.Stat // the directory --blobs names may be a symlink its admin made
		}
		fi, err := stat(d)
		switch {
		case err != nil:
			return fmt.Errorf("blob directory: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "blob directory: %s is a symlink: spillway did not put it there, and would write and remove files through it; remove it (spillway makes a directory in its place)", d)
		case !fi.IsDir():
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "blob directory: %s is not a directory: spillway did not put it there; remove it (spillway makes a directory in its place)", d)
		case fi.Mode().Perm()&0o002 != 0:
			return errclass.Errorf(errdefs.ErrFailedPrecondition, "blob directory: %s is writable by every user (mode %04o): anyone could plant or replace blobs there; run chmod o-w %s", d, fi.Mode().Perm(), d)
		}
		if d != dir {
			// Only its owner (the caller) may rename what is in it.
			if err := statedir.CheckPrivateDir("blob directory", dir, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// adoptBlobDir writes the marker in dir, creating dir if needed, when dir
// holds nothing spillway did not create: it is empty (a filesystem's
// lost+found aside), or a store of an earlier version (sha256/ of blobs,
// tmp/ of spillway's temporary files). A store of an earlier version on a
// read-only filesystem is used unmarked.
func adoptBlobDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	foreign, err := foreignEntries(dir)
	if err != nil {
		return fmt.Errorf("blob directory %s: %w", dir, err)
	}
	if len(foreign) > 0 {
		return notBlobStore(dir, foreign...)
	}
	f, err := os.OpenFile(filepath.Join(dir, blobMarker), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	switch {
	case errors.Is(err, os.ErrExist):
		return nil // another host adopted it meanwhile; the next open checks the marker
	case errors.Is(err, unix.EROFS):
		return nil
	case err != nil:
		return fmt.Errorf("blob directory %s: mark it as spillway's: %w", dir, err)
	}
	_, werr := f.WriteString(blobMarkerText)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("blob directory %s: mark it as spillway's: %w", dir, err)
	}
	return nil
}

// foreignEntries returns up to 3 entries of dir (relative to it) that
// spillway would not have created in a blob store.
func foreignEntries(dir string) ([]string, error) {
	const enough = 3
	var foreign []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, ent := range entries {
		name := ent.Name()
		var ok func(fs.DirEntry) bool
		switch {
		case name == "lost+found" && ent.IsDir():
			continue
		case name == "sha256" && ent.IsDir():
			ok = func(d fs.DirEntry) bool { return isBlobName(d.Name()) }
		case name == "tmp" && ent.IsDir():
			ok = func(d fs.DirEntry) bool { return isBlobTempName(d.Name()) && d.Type().IsRegular() }
		default:
			foreign = append(foreign, name)
			continue
		}
		bad, err := entriesNot(filepath.Join(dir, name), ok, enough-len(foreign))
		if err != nil {
			return nil, err
		}
		for _, b := range bad {
			foreign = append(foreign, filepath.Join(name, b))
		}
		if len(foreign) >= enough {
			break
		}
	}
	sort.Strings(foreign)
	return foreign, nil
}

// entriesNot returns up to n names of the entries of dir that ok refuses,
// reading dir a batch at a time (sha256/ may hold millions).
func entriesNot(dir string, ok func(fs.DirEntry) bool, n int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bad []string
	for len(bad) < n {
		batch, err := f.ReadDir(4096)
		for _, d := range batch {
			if !ok(d) && len(bad) < n {
				bad = append(bad, d.Name())
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return bad, nil
}

// notBlobStore refuses dir, which holds what spillway did not create.
func notBlobStore(dir string, foreign ...string) error {
	return errclass.Errorf(errdefs.ErrFailedPrecondition,
		"blob directory %s is not a spillway blob store: it holds %s, which spillway did not create; give a new or empty directory (spillway marks it with a %s file), or move those files out of it",
		dir, strings.Join(foreign, ", "), blobMarker)
}
