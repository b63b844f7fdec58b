package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
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
// can serve several roots).
func blobsDir(root, url string) (string, error) {
	if url == "" {
		return filepath.Join(root, "blobs"), nil
	}
	p, ok := strings.CutPrefix(url, "dir://")
	if !ok || !filepath.IsAbs(p) {
		return "", invalidf("blob store URL %q: want dir:///ABSOLUTE/PATH", url)
	}
	return filepath.Clean(p), nil
}
